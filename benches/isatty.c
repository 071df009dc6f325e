/* Latency of isatty() on an open file: the ioctl CPython (before 3.14)
 * issues on every open(), i.e. once per imported module. On a local
 * filesystem the kernel answers it; on a FUSE mount it is a round trip to
 * the daemon, whose cost depends on how quickly an idle CPU wakes up.
 * usage: isatty FILE CALLS GAP_US
 * Between calls the CPU stays busy for GAP_US microseconds (0: back to
 * back), as Python does between imports; prints the mean microseconds
 * per call, the gaps not counted. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s FILE CALLS GAP_US\n", argv[0]); return 2; }
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0) { perror(argv[1]); return 1; }
    int calls = atoi(argv[2]);
    double gap = atof(argv[3]), total = 0;
    for (int i = 0; i < calls; i++) {
        double t0 = now_us();
        if (isatty(fd)) { fprintf(stderr, "%s is a terminal?\n", argv[1]); return 1; }
        total += now_us() - t0;
        double g0 = now_us();
        while (now_us() - g0 < gap) {}
    }
    printf("%.2f\n", total / calls);
    return 0;
}
