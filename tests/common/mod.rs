//! Shared fixtures for sitefs integration tests.
//!
//! Use from a test file with `mod common;` and `use common::*;`. Each test
//! binary uses a different subset, hence `allow(dead_code)`.
#![allow(dead_code, unused_imports)]

pub mod bomb;
pub mod envs;
pub mod ext;
pub mod mounts;
pub mod process;
pub mod rawzip;
pub mod wheel;

pub use envs::*;
pub use ext::{build_extension_module, ext_suffix, python_eval, EXT_MAGIC};
pub use mounts::{
    is_mounted, mountinfo_entries, the_file_in, unescape_mountinfo, wait_for, DEADLINE,
};
pub use process::{
    fd_targets, holds_dev_fuse, output_within, process_alive, processes_with_arg,
    processes_with_arg_where,
};
pub use wheel::{record_hash, WheelBuilder};

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// Whether this run is CI's (`CI=true`), which installs everything the
/// tests need, so nothing may be skipped there.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Report that (part of) `test` cannot run on this machine: a failure
/// under CI, a loud skip elsewhere, never a silent pass.
pub fn cannot_run(test: &str, why: &str) {
    assert!(
        !under_ci(),
        "{test} cannot run under CI=true: {why} (.ci/run must install it)"
    );
    eprintln!("SKIPPED {test}: {why}");
}

/// Whether the running kernel has filesystem `fs` (`/proc/filesystems`).
/// Kernels differ between machines of this project, and a missing
/// filesystem cannot be installed by `.ci/run`: it checks the same list
/// and names each one it lacks in `SITEFS_CI_KERNEL_LACKS`, which it
/// prints, so the test is reported as not run rather than failing CI for
/// the kernel's sake, and never passes silently.
pub fn kernel_has(test: &str, fs: &str) -> bool {
    let listed = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fs));
    if listed {
        return true;
    }
    let declared = std::env::var("SITEFS_CI_KERNEL_LACKS")
        .is_ok_and(|v| v.split_whitespace().any(|f| f == fs));
    if declared {
        eprintln!("NOT TESTED {test}: this kernel has no {fs} (declared by .ci/run)");
    } else {
        cannot_run(test, &format!("this kernel has no {fs} filesystem"));
    }
    false
}

/// The `sitefs` binary cargo built for this test run.
pub fn sitefs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sitefs"))
}

/// A `sitefs` command with the environment tests must not inherit: a
/// developer's SITEFS_STORE would send writes to their real store, and
/// RUST_LOG would change stderr, which tests parse.
pub fn sitefs_command() -> Command {
    let mut cmd = Command::new(sitefs_bin());
    cmd.env_remove("SITEFS_STORE").env_remove("RUST_LOG");
    cmd
}

/// Runs `sitefs args...` to completion (see `sitefs_command`).
pub fn run_sitefs<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    sitefs_command()
        .args(args)
        .output()
        .expect("cannot run sitefs")
}

/// The interpreter under test: $SITEFS_TEST_PYTHON, else "python3".
pub fn python() -> String {
    std::env::var("SITEFS_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Stdout as text (lossy), for assertions.
pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr as text (lossy), for assertions.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Panics with both streams unless the command exited 0.
/// The stderr of a command that must have failed with exit code 1.
pub fn failed_stderr(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got success\nstdout:\n{}\nstderr:\n{}",
        stdout_of(out),
        stderr_of(out)
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code; stderr: {}",
        stderr_of(out)
    );
    stderr_of(out)
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout_of(out),
        stderr_of(out)
    );
}

/// The reason in the CLI's `error: <wheel file name>: <reason>` line for
/// `wheel_file_name`, if stderr has one.
pub fn rejection_reason(out: &Output, wheel_file_name: &str) -> Option<String> {
    let prefix = format!("error: {wheel_file_name}: ");
    stderr_of(out)
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_string))
}

/// A store root in a fresh temporary directory, deleted on drop.
pub struct TempStore {
    pub dir: TempDir,
    /// The store root (`--store`); not created until sitefs creates it.
    pub path: PathBuf,
}

impl TempStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store");
        TempStore { dir, path }
    }

    /// Runs `sitefs store <sub> --store <path> args...`.
    pub fn store_cmd<I, S>(&self, sub: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        sitefs_command()
            .args(["store", sub, "--store"])
            .arg(&self.path)
            .args(args)
            .output()
            .expect("cannot run sitefs")
    }

    /// `sitefs store add --store <path> wheels...`.
    pub fn add<P: AsRef<Path>>(&self, wheels: &[P]) -> Output {
        self.store_cmd("add", wheels.iter().map(|p| p.as_ref().as_os_str()))
    }
}

impl Default for TempStore {
    fn default() -> Self {
        Self::new()
    }
}
