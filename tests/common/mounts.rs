//! Mount-state helpers shared by the FUSE tests: read mountinfo
//! independently of sitefs, and poll a condition with a deadline.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `cond` every 20 ms until it holds; panics naming `what` after
/// [`DEADLINE`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The mountinfo lines whose mount point is `p` (a canonical path).
pub fn mountinfo_entries(p: &Path) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| unescape_mountinfo(m) == p.as_os_str().as_bytes())
        })
        .map(str::to_string)
        .collect()
}

pub fn is_mounted(p: &Path) -> bool {
    !mountinfo_entries(p).is_empty()
}

/// The one file in `dir`, once there is exactly one.
pub fn the_file_in(dir: &Path) -> PathBuf {
    let files = || -> Vec<PathBuf> {
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .collect()
    };
    wait_for(&format!("one file in {}", dir.display()), || {
        files().len() == 1
    });
    files().remove(0)
}
