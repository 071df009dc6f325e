//! Child and daemon processes in tests: bounded runs and /proc lookups.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::common::mounts::DEADLINE;

/// Runs `cmd` (stdin from /dev/null) to completion, failing the test if it
/// takes longer than `limit`, or if something it started (a mount daemon)
/// keeps its stdout/stderr open afterwards.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            let _ = tx.send(v);
        });
        rx
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let collect = |rx: Receiver<Vec<u8>>, what: &str| {
        rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            panic!("{cmd:?} exited but its {what} stayed open (a daemon kept the pipe?)")
        })
    };
    Output {
        status,
        stdout: collect(out, "stdout"),
        stderr: collect(err, "stderr"),
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Live processes one of whose command-line arguments satisfies `pred`.
pub fn processes_with_arg_where(pred: impl Fn(&[u8]) -> bool) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmdline.split(|&b| b == 0).any(&pred) && process_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Live processes with `arg` as one of their command-line arguments.
pub fn processes_with_arg(arg: &OsStr) -> Vec<i32> {
    processes_with_arg_where(|a| a == arg.as_bytes())
}

/// Where the open descriptors of `pid` point.
pub fn fd_targets(pid: i32) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .collect()
}

/// Whether `pid` holds an open `/dev/fuse` descriptor.
pub fn holds_dev_fuse(pid: i32) -> bool {
    fd_targets(pid).iter().any(|t| t == Path::new("/dev/fuse"))
}
