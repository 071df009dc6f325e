/* open + read (up to 4 KiB) + close latency over a list of files.
 * usage: openread LISTFILE PASSES
 * One untimed warm-up pass, then PASSES timed passes over every file;
 * prints the mean microseconds per open+read+close. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int pass(char **paths, int n) {
    static char buf[4096];
    for (int i = 0; i < n; i++) {
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) { perror(paths[i]); return -1; }
        if (read(fd, buf, sizeof buf) < 0) { perror(paths[i]); return -1; }
        close(fd);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s LISTFILE PASSES\n", argv[0]); return 2; }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 2; }
    int cap = 1024, n = 0, passes = atoi(argv[2]);
    char **paths = malloc(cap * sizeof *paths), line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!*line) continue;
        if (n == cap) paths = realloc(paths, (cap *= 2) * sizeof *paths);
        paths[n++] = strdup(line);
    }
    if (pass(paths, n)) return 1;
    double t0 = now();
    for (int p = 0; p < passes; p++)
        if (pass(paths, n)) return 1;
    printf("%.3f\n", (now() - t0) * 1e6 / ((double)n * passes));
    return 0;
}
