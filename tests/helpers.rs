//! Integration tests of the mount helpers: `mount -t fuse.sitefs` (mount(8)
//! → mount.fuse3 → `sitefs SOURCE MOUNTPOINT -o OPTS`), fstab, autofs (the
//! program map and a real automount daemon), systemd (`Type=notify` and
//! `systemd-analyze verify` of the example units), the installer, mount
//! namespaces as containers use them, and mounting as an unprivileged user.
//!
//! Needs root, /dev/fuse, fuse3 (mount.fuse3, fusermount3), util-linux
//! (unshare, nsenter, setpriv) and python3. The autofs test needs `automount`
//! (package autofs) and is skipped, saying so, without it.
//!
//! mount(8) runs helpers with PATH removed (measured: libmount drops PATH,
//! HOME and SHELL), and mount.fuse3 then runs `/bin/sh -c 'sitefs ...'`, so
//! the binary is found only on /bin/sh's default PATH. Tests that go through
//! mount(8) therefore install a symlink /usr/local/bin/sitefs -> the binary
//! under test for their duration ([`SystemBinary`]), serialized across
//! threads and processes by a file lock, restoring whatever was there.
//!
//! Everything asynchronous is polled with a deadline; every mount, daemon,
//! namespace and automount process is owned by a guard that cleans up on
//! drop, also when the test panics.

mod common;

use common::*;

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one command (python, mount, a command in a namespace) may run.
const PROCESS_LIMIT: Duration = Duration::from_secs(120);

/// The repository root (for mount-helpers/).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Processes, polling, mountinfo
// ---------------------------------------------------------------------------

/// Polls `cond` every 20 ms until it holds; panics naming `what` after
/// `limit`.
fn wait_for_within(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(cmd: &mut Command) -> Output {
    output_within(cmd, PROCESS_LIMIT)
}

/// One parsed line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
struct MountEntry {
    target: PathBuf,
    fstype: String,
    source: String,
    super_options: String,
}

fn mount_entries() -> Vec<MountEntry> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                target: PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(fields.get(4)?))),
                fstype: fields.get(sep + 1)?.to_string(),
                source: String::from_utf8_lossy(&unescape_mountinfo(fields.get(sep + 2)?))
                    .into_owned(),
                super_options: fields.get(sep + 3).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// The (last, i.e. topmost) mount on `p`, if any.
fn mount_at(p: &Path) -> Option<MountEntry> {
    mount_entries().into_iter().rev().find(|e| e.target == p)
}

/// Live processes with an argument naming `dir` or a path below it.
fn processes_with_arg_below(dir: &Path) -> Vec<i32> {
    processes_with_arg_where(|a| Path::new(OsStr::from_bytes(a)).starts_with(dir))
}

/// The daemon serving `mnt` (started with `mnt` on its command line and
/// holding /dev/fuse; its watchdog has the same command line but closed
/// the device). Waits for it to appear.
fn daemon_of(mnt: &Path) -> i32 {
    let mut found = Vec::new();
    wait_for(&format!("the daemon of {}", mnt.display()), || {
        found = processes_with_arg(mnt.as_os_str())
            .into_iter()
            .filter(|&p| holds_dev_fuse(p))
            .collect();
        found.len() == 1
    });
    found[0]
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain syscall on a process this test started.
    unsafe { libc::kill(pid, sig) };
}

/// Kills (TERM, then KILL) every process with one of `args` on its command
/// line, i.e. daemons of this test's temporary paths, when dropped.
struct KillOnDrop(Vec<PathBuf>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pids = || -> Vec<i32> {
            self.0
                .iter()
                .flat_map(|a| processes_with_arg(a.as_os_str()))
                .collect()
        };
        for p in pids() {
            signal(p, libc::SIGTERM);
        }
        let start = Instant::now();
        while !pids().is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in pids() {
            signal(p, libc::SIGKILL);
        }
    }
}

/// The one line of sitefs's `error: ...` in a failed command's stderr.
fn error_line(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got success\nstdout:\n{}\nstderr:\n{}",
        stdout_of(out),
        stderr_of(out)
    );
    let err = stderr_of(out);
    err.lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error: ` line from sitefs in:\n{err}"))
        .to_string()
}

// ---------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------

/// The real interpreter behind `python()` (which may be a pyenv shim).
fn real_python() -> &'static str {
    static EXE: OnceLock<String> = OnceLock::new();
    EXE.get_or_init(|| python_eval(&python(), "import sys; print(sys.executable)"))
}

/// Python code that puts `dir` first on sys.path and imports `module`,
/// printing `module.NAME` and `module.__file__`.
fn import_code(dir: &Path, module: &str) -> String {
    format!(
        "import sys; sys.path.insert(0, {dir:?}); import {module} as m; print(m.NAME, m.__file__)",
        dir = dir.display().to_string()
    )
}

/// `python -E -s -S -c CODE` from `/`, so only `dir` can provide modules.
fn python_import(python: &str, dir: &Path, module: &str) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-E", "-s", "-S", "-c", &import_code(dir, module)])
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .current_dir("/");
    cmd
}

/// Imports `module` from `dir` with the test python; asserts it printed
/// `NAME` and a `__file__` inside `dir`.
fn assert_imports(dir: &Path, module: &str, name: &str) {
    let out = run(&mut python_import(real_python(), dir, module));
    assert_success(&out);
    let expected = format!("{name} {}/{module}/__init__.py", dir.display());
    assert_eq!(stdout_of(&out).trim(), expected);
}

/// A shell-quoted word.
fn sh_quote(s: impl AsRef<OsStr>) -> String {
    let s = s.as_ref().to_string_lossy();
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------
// Fixtures: a store with two single-package dists and their manifests
// ---------------------------------------------------------------------------

/// A temporary directory with a store holding `sfalpha` and `sfbeta`
/// (compiled for `python`), and a manifest for each.
struct Env {
    store: TempStore,
    python: String,
    alpha: PathBuf,
    beta: PathBuf,
}

impl Env {
    fn new() -> Self {
        Self::with_python(&python())
    }

    fn with_python(python: &str) -> Self {
        let store = TempStore::new();
        let wheels = store.dir.path().join("wheels");
        fs::create_dir_all(&wheels).unwrap();
        let a = WheelBuilder::new("sfalpha", "1.0")
            .file("sfalpha/__init__.py", "NAME = 'alpha'\n")
            .write_to(&wheels);
        let b = WheelBuilder::new("sfbeta", "2.0")
            .file("sfbeta/__init__.py", "NAME = 'beta'\n")
            .write_to(&wheels);
        let out = store.store_cmd(
            "add",
            [
                OsStr::new("--python"),
                OsStr::new(python),
                a.as_os_str(),
                b.as_os_str(),
            ],
        );
        assert_success(&out);
        let mut env = Env {
            store,
            python: python.to_string(),
            alpha: PathBuf::new(),
            beta: PathBuf::new(),
        };
        env.alpha = env.manifest_at(&env.work().join("alpha.toml"), "sfalpha");
        env.beta = env.manifest_at(&env.work().join("beta.toml"), "sfbeta");
        env
    }

    fn work(&self) -> &Path {
        self.store.dir.path()
    }

    /// `sitefs manifest new ... -o path spec`.
    fn manifest_at(&self, path: &Path, spec: &str) -> PathBuf {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let out = sitefs_command()
            .args(["manifest", "new", "--store"])
            .arg(&self.store.path)
            .args(["--python", &self.python, "-o"])
            .arg(path)
            .arg(spec)
            .output()
            .unwrap();
        assert_success(&out);
        path.to_path_buf()
    }

    /// A fresh directory (canonical path).
    fn dir(&self, name: &str) -> PathBuf {
        let p = self.work().join(name);
        fs::create_dir_all(&p).unwrap();
        p.canonicalize().unwrap()
    }
}

/// Unmounts `mnt` on drop if it is still mounted: `umount`, then
/// `umount -l` if that did not do it within 5 s.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if !is_mounted(&self.0) {
            return;
        }
        let _ = Command::new("umount").arg(&self.0).output();
        let start = Instant::now();
        while is_mounted(&self.0) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        while is_mounted(&self.0) {
            if !Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success())
            {
                break;
            }
        }
    }
}

/// `sitefs mount manifest mnt -o opts` directly (not through mount(8)).
fn sitefs_mount(manifest: &Path, mnt: &Path, opts: &str) -> Unmount {
    let guard = Unmount(mnt.to_path_buf());
    let out = run(sitefs_command()
        .arg("mount")
        .arg(manifest)
        .arg(mnt)
        .args(["-o", opts]));
    assert_success(&out);
    assert!(is_mounted(mnt), "{} not mounted", mnt.display());
    guard
}

/// Waits until `mnt` is unmounted and no process serves it any more.
fn wait_unmounted_and_daemon_gone(mnt: &Path) {
    wait_for(&format!("{} to be unmounted", mnt.display()), || {
        !is_mounted(mnt)
    });
    wait_processes_gone(mnt);
}

/// Waits until no process has `p` on its command line (a daemon of `p`
/// and its watchdog have exited).
fn wait_processes_gone(p: &Path) {
    wait_for(
        &format!("the processes serving {} to exit", p.display()),
        || processes_with_arg(p.as_os_str()).is_empty(),
    );
}

/// Waits for `child` to exit (deadline); returns its status.
fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let mut status = None;
    wait_for(what, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

/// Imports `module` from `dir` inside the mount namespace of `pid`.
fn import_in_namespace_of(pid: i32, dir: &Path, module: &str) -> Output {
    run(Command::new("nsenter")
        .arg(format!("--mount=/proc/{pid}/ns/mnt"))
        .arg("--")
        .arg(real_python())
        .args(["-E", "-s", "-S", "-c", &import_code(dir, module)])
        .current_dir("/"))
}

// ---------------------------------------------------------------------------
// /usr/local/bin/sitefs for the duration of a test
// ---------------------------------------------------------------------------

const SYSTEM_BIN: &str = "/usr/local/bin/sitefs";
/// What was at SYSTEM_BIN before the test, while the test runs.
const SYSTEM_BIN_BACKUP: &str = "/usr/local/bin/.sitefs.helpers-test-backup";
/// Present while a test's symlink is installed: a crashed test run left it
/// behind, with SYSTEM_BIN still pointing at its binary.
const SYSTEM_BIN_MARK: &str = "/usr/local/bin/.sitefs.helpers-test-installed";
const SYSTEM_BIN_LOCK: &str = "/tmp/sitefs-helpers-test-usr-local-bin.lock";

/// Holds an exclusive lock (threads of this test binary and other test
/// processes alike: flock locks belong to the open file) and a symlink
/// /usr/local/bin/sitefs -> the binary under test; restores what was
/// there on drop.
struct SystemBinary {
    _lock: File,
}

impl SystemBinary {
    fn install() -> SystemBinary {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(SYSTEM_BIN_LOCK)
            .expect("open lock file");
        // SAFETY: flock on a valid descriptor.
        let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
        assert!(
            fs::symlink_metadata("/usr/local/sbin/sitefs").is_err(),
            "/usr/local/sbin/sitefs exists and comes before /usr/local/bin on /bin/sh's \
             default PATH: mount.fuse3 would run it instead of the binary under test"
        );
        Self::recover();
        let bin = sitefs_bin().canonicalize().unwrap();
        if fs::symlink_metadata(SYSTEM_BIN).is_ok() {
            fs::rename(SYSTEM_BIN, SYSTEM_BIN_BACKUP).expect("move the existing sitefs aside");
        }
        fs::write(SYSTEM_BIN_MARK, bin.as_os_str().as_bytes()).unwrap();
        let tmp = format!("{SYSTEM_BIN}.helpers-test-tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&bin, &tmp).unwrap();
        fs::rename(&tmp, SYSTEM_BIN).unwrap();
        SystemBinary { _lock: lock }
    }

    /// Undo an installation whose test died without dropping its guard.
    fn recover() {
        if fs::symlink_metadata(SYSTEM_BIN_MARK).is_err() {
            return;
        }
        if fs::symlink_metadata(SYSTEM_BIN_BACKUP).is_ok() {
            fs::rename(SYSTEM_BIN_BACKUP, SYSTEM_BIN).unwrap();
        } else if fs::read_link(SYSTEM_BIN).ok().map(|t| t.into_os_string())
            == fs::read(SYSTEM_BIN_MARK).ok().map(OsString::from_vec)
        {
            fs::remove_file(SYSTEM_BIN).unwrap();
        }
        fs::remove_file(SYSTEM_BIN_MARK).unwrap();
    }
}

impl Drop for SystemBinary {
    fn drop(&mut self) {
        // The mark is still there, so recover() puts things back.
        Self::recover();
        // The lock is released when the file closes.
    }
}

/// `mount args...` with the caller's PATH starting with a directory whose
/// `sitefs` is a decoy that must never run (mount(8) resets PATH).
fn mount_cmd(decoy_dir: &Path) -> Command {
    let decoy = decoy_dir.join("sitefs");
    if !decoy.exists() {
        let marker = decoy_dir.join("decoy-ran");
        fs::write(
            &decoy,
            format!("#!/bin/sh\ntouch {}\nexit 99\n", sh_quote(&marker)),
        )
        .unwrap();
        fs::set_permissions(&decoy, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = Command::new("mount");
    let path = format!(
        "{}:{}",
        decoy_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path).env_remove("RUST_LOG");
    cmd
}

fn assert_decoy_not_run(decoy_dir: &Path) {
    assert!(
        !decoy_dir.join("decoy-ran").exists(),
        "mount ran the sitefs first on the caller's PATH; expected the one on the default PATH"
    );
}

// ---------------------------------------------------------------------------
// mount(8), fstab
// ---------------------------------------------------------------------------

#[test]
fn mount_t_fuse_sitefs_imports_and_umount_ends_the_daemon() {
    let env = Env::new();
    let mnt = env.dir("mnt");
    let decoy = env.dir("decoy");
    let _bin = SystemBinary::install();
    let _guard = Unmount(mnt.clone());
    let out = run(mount_cmd(&decoy)
        .args(["-t", "fuse.sitefs"])
        .arg(&env.alpha)
        .arg(&mnt)
        .args(["-o", "ro,allow_other"]));
    assert_success(&out);
    assert_decoy_not_run(&decoy);
    let entry = mount_at(&mnt).expect("mount -t fuse.sitefs exited 0 but nothing is mounted");
    // fuser mounts as type "fuse" (the subtype is not recorded); the source
    // is the manifest.
    assert!(entry.fstype.starts_with("fuse"), "{entry:?}");
    assert_eq!(entry.source, env.alpha.display().to_string(), "{entry:?}");
    assert!(entry.super_options.contains("allow_other"), "{entry:?}");
    let daemon = daemon_of(&mnt);
    assert_eq!(
        fs::read_link(format!("/proc/{daemon}/exe")).unwrap(),
        sitefs_bin().canonicalize().unwrap(),
        "the daemon is not the binary under test"
    );
    assert_imports(&mnt, "sfalpha", "alpha");
    // allow_other: another user can read it too.
    fs::set_permissions(env.work(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ls"])
        .arg(mnt.join("sfalpha")));
    assert_success(&out);
    assert_eq!(stdout_of(&out).trim(), "__init__.py\n__pycache__");

    let out = run(Command::new("umount").arg(&mnt));
    assert_success(&out);
    wait_unmounted_and_daemon_gone(&mnt);
    // Its command line empties when its memory is released, before it
    // closes its FUSE and io_uring descriptors and becomes a zombie.
    wait_for("the daemon to exit", || !process_alive(daemon));
}

#[test]
fn fstab_entry_mounts_with_mount_capital_t() {
    let env = Env::new();
    let mnt = env.dir("site");
    let decoy = env.dir("decoy");
    let fstab = env.work().join("fstab");
    fs::write(
        &fstab,
        format!(
            "# test fstab\n{} {} fuse.sitefs ro,nodev,nosuid,allow_other,nofail 0 0\n",
            env.alpha.display(),
            mnt.display()
        ),
    )
    .unwrap();
    let _bin = SystemBinary::install();
    let _guard = Unmount(mnt.clone());
    let out = run(mount_cmd(&decoy).arg("-T").arg(&fstab).arg(&mnt));
    assert_success(&out);
    assert_decoy_not_run(&decoy);
    let entry = mount_at(&mnt).expect("not mounted");
    assert_eq!(entry.source, env.alpha.display().to_string());
    assert_imports(&mnt, "sfalpha", "alpha");
    // Mounting it again is refused by sitefs, with its reason.
    let out = run(mount_cmd(&decoy).arg("-T").arg(&fstab).arg(&mnt));
    let line = error_line(&out);
    assert!(line.contains("is already a mount point"), "{line}");

    let out = run(Command::new("umount").arg(&mnt));
    assert_success(&out);
    wait_unmounted_and_daemon_gone(&mnt);
}

#[test]
fn failing_mounts_exit_nonzero_with_sitefs_reason_on_stderr() {
    let env = Env::new();
    let mnt = env.dir("mnt");
    let decoy = env.dir("decoy");
    let bad = env.work().join("bad.toml");
    fs::write(&bad, "version = \n").unwrap();
    let missing_manifest = env.work().join("nope.toml");
    let missing_mnt = env.work().join("no-such-dir");
    let _bin = SystemBinary::install();
    let _guard = Unmount(mnt.clone());

    let cases: Vec<(&Path, &Path, &str, &str)> = vec![
        (&bad, &mnt, "ro", "manifest"),
        (&missing_manifest, &mnt, "ro", "No such file"),
        (
            &env.alpha,
            &missing_mnt,
            "ro",
            "does not exist: create it with `mkdir -p",
        ),
        (
            &env.alpha,
            &mnt,
            "ro,bogus",
            "unknown mount option \"bogus\"",
        ),
        (
            &env.alpha,
            &mnt,
            "threads=0",
            "threads must be between 1 and 64",
        ),
    ];
    for (manifest, target, opts, reason) in cases {
        let out = run(mount_cmd(&decoy)
            .args(["-t", "fuse.sitefs"])
            .arg(manifest)
            .arg(target)
            .args(["-o", opts]));
        let line = error_line(&out);
        assert!(
            line.contains(reason),
            "mount {} {} -o {opts}: expected {reason:?} in {line:?}",
            manifest.display(),
            target.display()
        );
        assert!(
            !is_mounted(&mnt),
            "a failed mount left {} mounted",
            mnt.display()
        );
        assert!(
            processes_with_arg(target.as_os_str()).is_empty(),
            "a failed mount left a process behind"
        );
    }
    assert_decoy_not_run(&decoy);
}

// ---------------------------------------------------------------------------
// autofs
// ---------------------------------------------------------------------------

fn auto_map(envs: &Path, key: &str) -> Output {
    run(Command::new(repo().join("mount-helpers/auto.sitefs"))
        .arg(key)
        .env("SITEFS_ENVS", envs)
        .env_remove("SITEFS_AUTOFS_OPTS"))
}

#[test]
fn autofs_program_map_answers_only_for_existing_safe_keys() {
    let env = Env::new();
    let envs = env.dir("envs");
    let good = env.manifest_at(&envs.join("good/sitefs.toml"), "sfalpha");
    env.manifest_at(&env.work().join("outside/sitefs.toml"), "sfbeta");
    fs::create_dir_all(envs.join("empty-dir")).unwrap();

    let out = auto_map(&envs, "good");
    assert_success(&out);
    assert_eq!(
        stdout_of(&out),
        format!("-fstype=fuse.sitefs,ro,allow_other :{}\n", good.display())
    );
    // The map's options are ones sitefs accepts.
    assert!(sitefs::mount::options::MountOpts::parse("ro,allow_other").is_ok());

    for key in [
        "unknown",
        "empty-dir",
        "..",
        ".",
        "",
        "../outside",
        "good/..",
        "good/../good",
        "/etc",
        "-fstype=ext4",
        "good x",
        "go*d",
        "good\n",
    ] {
        let out = auto_map(&envs, key);
        assert_eq!(out.status.code(), Some(1), "key {key:?}: {out:?}");
        assert_eq!(stdout_of(&out), "", "key {key:?} printed a map entry");
    }

    // Extra options are appended; the default root is /srv/sitefs/envs.
    let out = run(Command::new(repo().join("mount-helpers/auto.sitefs"))
        .arg("good")
        .env("SITEFS_ENVS", &envs)
        .env("SITEFS_AUTOFS_OPTS", "open=auto,threads=2"));
    assert_success(&out);
    assert_eq!(
        stdout_of(&out),
        format!(
            "-fstype=fuse.sitefs,ro,allow_other,open=auto,threads=2 :{}\n",
            good.display()
        )
    );
    let script = fs::read_to_string(repo().join("mount-helpers/auto.sitefs")).unwrap();
    assert!(script.contains("${SITEFS_ENVS:-/srv/sitefs/envs}"));
    let mode = fs::metadata(repo().join("mount-helpers/auto.sitefs"))
        .unwrap()
        .permissions()
        .mode();
    assert!(
        mode & 0o111 != 0,
        "auto.sitefs must be executable for autofs"
    );
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// A foreground `automount` process with its own master map; on drop it is
/// stopped (TERM, which unmounts what it mounted) and anything left under
/// its directory is killed and lazily unmounted.
struct Automount {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Automount {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn mounts_below(&self) -> Vec<PathBuf> {
        mount_entries()
            .into_iter()
            .map(|e| e.target)
            .filter(|t| t.starts_with(&self.dir))
            .collect()
    }
}

impl Drop for Automount {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.child.id() as i32, libc::SIGTERM);
            let start = Instant::now();
            while self.child.try_wait().ok().flatten().is_none()
                && start.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Mount helpers and a daemon stuck waiting for autofs, then
        // automount itself.
        let _ = self.child.kill();
        for pid in processes_with_arg_below(&self.dir) {
            signal(pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        let mut left = self.mounts_below();
        left.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in left {
            let _ = Command::new("umount").arg("-l").arg(&p).output();
        }
        if std::thread::panicking() {
            eprintln!("automount log:\n{}", self.log());
        }
    }
}

#[test]
fn autofs_mounts_env_on_access_and_expires_it() {
    let Some(automount) = find_program("automount") else {
        cannot_run(
            "autofs_mounts_env_on_access_and_expires_it",
            "`automount` not found (apt-get install autofs); only the program map was tested",
        );
        return;
    };
    if !kernel_has("autofs_mounts_env_on_access_and_expires_it", "autofs") {
        return;
    }
    let env = Env::new();
    let envs = env.dir("envs");
    let good = env.manifest_at(&envs.join("good/sitefs.toml"), "sfalpha");
    let auto = env.dir("auto");
    // The shipped master map entry, with this test's paths and a short
    // idle timeout.
    let shipped =
        fs::read_to_string(repo().join("mount-helpers/auto.master.d/sitefs.autofs")).unwrap();
    let entry: Vec<&str> = shipped
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        entry,
        ["/sitefs  program:/etc/auto.sitefs  --timeout=600"],
        "update this test with the shipped master map entry"
    );
    let master = env.work().join("auto.master");
    fs::write(
        &master,
        entry[0]
            .replace("/sitefs ", &format!("{} ", auto.display()))
            .replace(
                "/etc/auto.sitefs",
                repo().join("mount-helpers/auto.sitefs").to_str().unwrap(),
            )
            .replace("--timeout=600", "--timeout=2")
            + "\n",
    )
    .unwrap();
    let _bin = SystemBinary::install();
    let log = env.work().join("automount.log");
    let child = Command::new(&automount)
        .args(["-f", "-d", "-C", "-p"])
        .arg(env.work().join("automount.pid"))
        .arg(format!("file:{}", master.display()))
        .env("SITEFS_ENVS", &envs)
        .stdin(Stdio::null())
        .stdout(File::create(&log).unwrap())
        .stderr(File::create(&log).unwrap())
        // Its own process group: autofs serves processes in automount's
        // group without triggering mounts, and this test must trigger them.
        .process_group(0)
        .spawn()
        .expect("start automount");
    let am = Automount {
        child,
        dir: auto.clone(),
        log,
    };
    wait_for("the autofs mount", || {
        mount_at(&auto).is_some_and(|e| e.fstype == "autofs")
    });

    // Access mounts the env (python runs with a deadline: a daemon that
    // waits for its own automount hangs here).
    let key = auto.join("good");
    let out = output_within(
        &mut python_import(real_python(), &key, "sfalpha"),
        Duration::from_secs(30),
    );
    assert_success(&out);
    assert_eq!(
        stdout_of(&out).trim(),
        format!("alpha {}/sfalpha/__init__.py", key.display())
    );
    let entry = mount_at(&key).expect("the env is not mounted after access");
    assert!(entry.fstype.starts_with("fuse"), "{entry:?}");
    assert_eq!(entry.source, good.display().to_string());
    assert!(entry.super_options.contains("allow_other"), "{entry:?}");
    let daemon = daemon_of(&key);
    // The daemon and its watchdog.
    let old = processes_with_arg(key.as_os_str());
    assert!(old.contains(&daemon));

    // Unknown and unsafe keys do not exist.
    for bad in ["unknown", "-x"] {
        let err = fs::metadata(auto.join(bad)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{bad}: {err}");
    }

    // Idle for --timeout: automount unmounts it, and the daemon exits.
    wait_for_within("autofs to expire the env", Duration::from_secs(60), || {
        !is_mounted(&key)
    });
    wait_for("the expired env's daemon and watchdog to exit", || {
        old.iter().all(|&p| !process_alive(p))
    });
    // Nothing the old daemon or its watchdog did on the way out may have
    // mounted the env again: they are gone, so any mount they triggered
    // (a stat of the path blocks until automount has mounted it) is done.
    assert!(
        !is_mounted(&key) && processes_with_arg(key.as_os_str()).is_empty(),
        "the env was mounted again after expiry (a process touched {}):\n{:?}\nlog:\n{}",
        key.display(),
        mount_at(&key),
        am.log()
    );

    // Stopping automount removes its mount.
    signal(am.child.id() as i32, libc::SIGTERM);
    wait_for("automount to unmount and stop", || !is_mounted(&auto));
    drop(am);
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

fn notify_roundtrip(socket_name: &str, bind: impl FnOnce(&Path) -> UnixDatagram) {
    let env = Env::new();
    let mnt = env.dir("mnt");
    let sock = bind(&env.work().join("notify.sock"));
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let _guard = Unmount(mnt.clone());
    let mut child = sitefs_command()
        .args(["mount", "-f"])
        .arg(&env.alpha)
        .arg(&mnt)
        .env(
            "NOTIFY_SOCKET",
            if socket_name.is_empty() {
                env.work().join("notify.sock").into_os_string()
            } else {
                OsString::from(socket_name)
            },
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(vec![mnt.clone()]);
    let mut buf = [0u8; 256];
    let n = sock
        .recv(&mut buf)
        .expect("no notification from `sitefs mount -f` within the deadline");
    assert_eq!(&buf[..n], b"READY=1");
    // READY=1 means live: no waiting here.
    assert!(is_mounted(&mnt), "READY=1 before the mount existed");
    assert_imports(&mnt, "sfalpha", "alpha");
    // systemd stops the service with SIGTERM: a clean unmount and exit 0.
    signal(child.id() as i32, libc::SIGTERM);
    let status = wait_exit(&mut child, "sitefs mount -f to exit on SIGTERM");
    assert!(status.success(), "{status:?}");
    wait_unmounted_and_daemon_gone(&mnt);
}

#[test]
fn foreground_mount_sends_ready_to_notify_socket_when_live() {
    notify_roundtrip("", |p| UnixDatagram::bind(p).unwrap());
}

#[test]
fn foreground_mount_sends_ready_to_abstract_notify_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("sitefs-helpers-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    notify_roundtrip(&format!("@{name}"), |_| {
        UnixDatagram::bind_addr(&addr).unwrap()
    });
}

#[test]
fn systemd_example_units_verify() {
    let Some(analyze) = find_program("systemd-analyze") else {
        cannot_run(
            "systemd_example_units_verify",
            "systemd-analyze not found (apt-get install systemd)",
        );
        return;
    };
    let units = repo().join("mount-helpers/systemd");
    let dir = tempfile::tempdir().unwrap();
    for name in ["srv-app-site.mount", "srv-app-site.automount"] {
        fs::copy(units.join(name), dir.path().join(name)).unwrap();
    }
    // A template is verified as an instance.
    fs::copy(
        units.join("sitefs@.service"),
        dir.path().join("sitefs@srv-app-site.service"),
    )
    .unwrap();
    // The mount unit's name is its escaped Where=.
    let out = run(Command::new("systemd-escape").args(["-p", "--suffix=mount", "/srv/app/site"]));
    assert_success(&out);
    assert_eq!(stdout_of(&out).trim(), "srv-app-site.mount");
    let mount_unit = fs::read_to_string(units.join("srv-app-site.mount")).unwrap();
    for line in [
        "What=/srv/app/sitefs.toml",
        "Where=/srv/app/site",
        "Type=fuse.sitefs",
        "Options=ro,nodev,nosuid,allow_other",
    ] {
        assert!(mount_unit.lines().any(|l| l == line), "missing {line}");
    }
    let service = fs::read_to_string(units.join("sitefs@.service")).unwrap();
    assert!(service.lines().any(|l| l == "Type=notify"));
    assert!(service.contains("sitefs -v mount -f ${MANIFEST} %f -o ${OPTIONS}"));
    // The options in the units are accepted by sitefs.
    sitefs::mount::options::MountOpts::parse("ro,nodev,nosuid,allow_other").unwrap();

    // verify checks that ExecStart's binary exists.
    let _bin = SystemBinary::install();
    let names = [
        "srv-app-site.mount",
        "srv-app-site.automount",
        "sitefs@srv-app-site.service",
    ];
    let out = run(Command::new(analyze)
        .args(["verify", "--man=no"])
        .args(names.iter().map(|n| dir.path().join(n))));
    assert!(
        out.status.success() && stderr_of(&out).trim().is_empty(),
        "systemd-analyze verify:\n{}{}",
        stdout_of(&out),
        stderr_of(&out)
    );
}

// ---------------------------------------------------------------------------
// install.sh
// ---------------------------------------------------------------------------

fn install_sh(destdir: &Path, args: &[&str]) -> Output {
    run(Command::new(repo().join("mount-helpers/install.sh"))
        .args(args)
        .env("DESTDIR", destdir)
        .env("SITEFS_BIN", sitefs_bin()))
}

#[test]
fn install_script_is_idempotent_and_uninstalls() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let files = [
        ("usr/local/bin/sitefs", 0o755),
        ("etc/systemd/system/srv-app-site.mount", 0o644),
        ("etc/systemd/system/srv-app-site.automount", 0o644),
        ("etc/systemd/system/sitefs@.service", 0o644),
        ("etc/auto.sitefs", 0o755),
        ("etc/auto.master.d/sitefs.autofs", 0o644),
    ];
    // Only the binary without --systemd / --autofs.
    let out = install_sh(d, &[]);
    assert_success(&out);
    assert!(d.join("usr/local/bin/sitefs").is_file());
    assert!(!d.join("etc").exists());

    let out = install_sh(d, &["--systemd", "--autofs"]);
    assert_success(&out);
    for (f, mode) in files {
        let md = fs::symlink_metadata(d.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(md.is_file(), "{f}");
        assert_eq!(md.mode() & 0o7777, mode, "{f}");
    }
    assert_eq!(
        fs::read(d.join("usr/local/bin/sitefs")).unwrap(),
        fs::read(sitefs_bin()).unwrap()
    );
    assert_eq!(
        fs::read(d.join("etc/auto.sitefs")).unwrap(),
        fs::read(repo().join("mount-helpers/auto.sitefs")).unwrap()
    );
    // Again: nothing changes.
    let out = install_sh(d, &["--systemd", "--autofs"]);
    assert_success(&out);
    let text = stdout_of(&out);
    assert_eq!(text.lines().count(), files.len(), "{text}");
    assert!(text.lines().all(|l| l.starts_with("unchanged ")), "{text}");

    // Another PREFIX: the service runs the binary from there, and the
    // script says that mount.fuse3 will not find it.
    let out = install_sh(d, &["--systemd", "/opt/sitefs"]);
    assert_success(&out);
    let service = fs::read_to_string(d.join("etc/systemd/system/sitefs@.service")).unwrap();
    assert!(
        service.contains("ExecStart=/opt/sitefs/bin/sitefs -v mount -f"),
        "{service}"
    );
    assert!(stderr_of(&out).contains("not on mount.fuse3's PATH"));
    let out = install_sh(d, &["--uninstall", "--systemd", "/opt/sitefs"]);
    assert_success(&out);
    assert!(!d.join("opt/sitefs/bin/sitefs").exists());
    assert!(!d.join("etc/systemd/system/sitefs@.service").exists());

    let out = install_sh(d, &["--uninstall", "--systemd", "--autofs"]);
    assert_success(&out);
    for (f, _) in files {
        assert!(fs::symlink_metadata(d.join(f)).is_err(), "{f} left behind");
    }
    // Uninstalling twice is fine.
    assert_success(&install_sh(d, &["--uninstall", "--systemd", "--autofs"]));
    // Bad arguments.
    assert_eq!(install_sh(d, &["relative/prefix"]).status.code(), Some(2));
    assert_eq!(install_sh(d, &["--frobnicate"]).status.code(), Some(2));
}

// ---------------------------------------------------------------------------
// Mount namespaces (what containers do)
// ---------------------------------------------------------------------------

const RC_MARK: &str = "__sitefs_test_rc=";

/// A long-running shell, optionally in new namespaces (`unshare ARGS sh`),
/// that runs one command per line sent to it and answers with the
/// command's output and exit status. Killed on drop.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    name: String,
}

impl Shell {
    /// `prefix` is e.g. `["unshare", "--mount", "--propagation", "slave"]`
    /// (empty: a plain shell); `setup` runs first and must succeed.
    fn spawn(name: &str, prefix: &[&str], setup: &str) -> Shell {
        let script = format!(
            r#"exec 2>&1
is_mnt() {{ awk -v p="$1" '$5 == p {{ f = 1 }} END {{ exit !f }}' /proc/self/mountinfo; }}
{setup} || {{ echo "setup failed"; exit 1; }}
echo "{RC_MARK}0"
while IFS= read -r line; do
  ( eval "$line" )
  echo "{RC_MARK}$?"
done
"#
        );
        let mut cmd = match prefix.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg("sh");
                c
            }
            None => Command::new("sh"),
        };
        let mut child = cmd
            .arg("-c")
            .arg(script)
            .env_remove("SITEFS_STORE")
            .env_remove("RUST_LOG")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} shell: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sh = Shell {
            child,
            stdin,
            lines,
            name: name.to_string(),
        };
        let (rc, out) = sh.collect(DEADLINE);
        assert_eq!(rc, 0, "{name} shell setup failed:\n{out}");
        sh
    }

    fn collect(&mut self, limit: Duration) -> (i32, String) {
        let start = Instant::now();
        let mut out = String::new();
        loop {
            let left = limit.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => match line.strip_prefix(RC_MARK) {
                    Some(rc) => return (rc.parse().unwrap(), out),
                    None => {
                        out.push_str(&line);
                        out.push('\n');
                    }
                },
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{} shell: no answer within {limit:?}; output so far:\n{out}",
                        self.name
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{} shell exited; output:\n{out}", self.name)
                }
            }
        }
    }

    /// Runs one line of shell; returns (exit status, stdout+stderr).
    fn run(&mut self, line: &str) -> (i32, String) {
        assert!(!line.contains('\n'));
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        self.collect(PROCESS_LIMIT)
    }

    /// Runs `line`, which must succeed; returns its output.
    fn ok(&mut self, line: &str) -> String {
        let (rc, out) = self.run(line);
        assert_eq!(rc, 0, "{} shell: `{line}` exited {rc}:\n{out}", self.name);
        out
    }

    /// Runs `line` every 20 ms until it succeeds (deadline).
    fn wait_until(&mut self, what: &str, line: &str) {
        let start = Instant::now();
        loop {
            let (rc, out) = self.run(line);
            if rc == 0 {
                return;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "{} shell: timed out waiting for {what} (`{line}`: {out})",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PID of the shell (inside the namespaces, when unshared: unshare
    /// execs the shell, so it is the child's PID).
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python -c import` as a shell line.
fn import_line(python: &str, dir: &Path, module: &str) -> String {
    format!(
        "{} -E -s -S -c {}",
        sh_quote(python),
        sh_quote(import_code(dir, module))
    )
}

/// Makes `dir` a shared mount (a bind mount on itself), as a host directory
/// holding mounts for containers must be; undone (lazily) on drop. (On a
/// systemd host everything is already shared; this host's / is private.)
struct SharedDir(PathBuf);

impl SharedDir {
    fn new(dir: &Path) -> SharedDir {
        let guard = SharedDir(dir.to_path_buf());
        assert_success(&run(Command::new("mount").arg("--bind").arg(dir).arg(dir)));
        assert_success(&run(Command::new("mount").arg("--make-shared").arg(dir)));
        guard
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// A container's view of `host`: a shell in a new mount namespace with
/// `host` bind-mounted (recursively) at `root`, with the given
/// propagation: `rslave` (an app container: sees the host's mounts and
/// remounts) or `rshared` (a daemon container: its mounts there reach the
/// host). Docker makes a container's root propagation shared when one of
/// its binds is rshared, else slave; so does this.
fn container(name: &str, host: &Path, root: &Path, propagation: &str) -> Shell {
    let root_propagation = match propagation {
        "rshared" => "unchanged",
        _ => "slave",
    };
    let sh = Shell::spawn(
        name,
        &["unshare", "--mount", "--propagation", root_propagation],
        &format!(
            "mount --rbind {h} {r} && mount --make-{propagation} {r}",
            h = sh_quote(host),
            r = sh_quote(root)
        ),
    );
    assert_ne!(
        fs::read_link(format!("/proc/{}/ns/mnt", sh.pid())).unwrap(),
        fs::read_link("/proc/self/ns/mnt").unwrap(),
        "the {name} shell is not in its own mount namespace"
    );
    sh
}

/// `<work>/host`, made a shared mount, with an empty `site` directory in
/// it: where the host mounts envs for containers.
fn shared_host_dir(env: &Env) -> (SharedDir, PathBuf) {
    let host = env.dir("host");
    let site = host.join("site");
    fs::create_dir(&site).unwrap();
    (SharedDir::new(&host), site)
}

#[test]
fn container_with_rslave_bind_sees_host_remounts() {
    let env = Env::new();
    let (shared, site) = shared_host_dir(&env);
    let ns_dir = env.dir("container-root");
    let ns_site = ns_dir.join("site");
    let _kill = KillOnDrop(vec![site.clone()]);
    let mount_a = sitefs_mount(&env.alpha, &site, "ro,allow_other");

    // The container: a new mount namespace whose mounts are slaves of the
    // host's, with the host directory bind-mounted rslave (docker/compose
    // `propagation: rslave`).
    let mut ns = container("container", &shared.0, &ns_dir, "rslave");
    let py = real_python().to_string();
    let out = ns.ok(&import_line(&py, &ns_site, "sfalpha"));
    assert_eq!(
        out.trim(),
        format!("alpha {}/sfalpha/__init__.py", ns_site.display())
    );

    // The host unmounts the env: the container's copy goes too, and the
    // daemon exits (no copy keeps it alive).
    assert_success(&run(sitefs_command().arg("umount").arg(&site)));
    wait_unmounted_and_daemon_gone(&site);
    drop(mount_a);
    ns.wait_until(
        "the unmount to reach the container",
        &format!("! is_mnt {}", sh_quote(&ns_site)),
    );
    assert_eq!(ns.ok(&format!("ls -A {}", sh_quote(&ns_site))).trim(), "");

    // The host mounts another env there: the container sees it.
    let _mount_b = sitefs_mount(&env.beta, &site, "ro,allow_other");
    ns.wait_until(
        "the new mount to reach the container",
        &format!("is_mnt {}", sh_quote(&ns_site)),
    );
    let out = ns.ok(&import_line(&py, &ns_site, "sfbeta"));
    assert_eq!(
        out.trim(),
        format!("beta {}/sfbeta/__init__.py", ns_site.display())
    );
    let (rc, _) = ns.run(&import_line(&py, &ns_site, "sfalpha"));
    assert_ne!(rc, 0, "the old env is still importable in the container");
}

#[test]
fn daemon_in_its_own_mount_namespace_serves_only_that_namespace() {
    // `docker run --device /dev/fuse --cap-add SYS_ADMIN`: the daemon runs
    // in the container's mount namespace and mounts there.
    let env = Env::new();
    let mnt = env.dir("mnt");
    let _kill = KillOnDrop(vec![mnt.clone()]);
    let out = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(sitefs_bin())
        .arg("mount")
        .arg(&env.alpha)
        .arg(&mnt)
        .args(["-o", "allow_other"])
        .env_remove("SITEFS_STORE")
        .env_remove("RUST_LOG"));
    assert_success(&out);
    assert!(
        !is_mounted(&mnt),
        "the namespace's mount leaked to the host"
    );
    let daemon = daemon_of(&mnt);
    let ns = format!("--mount=/proc/{daemon}/ns/mnt");
    assert_ne!(
        fs::read_link(format!("/proc/{daemon}/ns/mnt")).unwrap(),
        fs::read_link("/proc/self/ns/mnt").unwrap()
    );
    let out = import_in_namespace_of(daemon, &mnt, "sfalpha");
    assert_success(&out);
    assert_eq!(
        stdout_of(&out).trim(),
        format!("alpha {}/sfalpha/__init__.py", mnt.display())
    );
    let out = run(Command::new("nsenter")
        .arg(&ns)
        .arg("--")
        .arg("umount")
        .arg(&mnt));
    assert_success(&out);
    wait_processes_gone(&mnt);
}

#[test]
fn daemon_as_pid_1_of_a_container_stops_cleanly_on_sigterm() {
    // The compose example runs `sitefs mount -f` as the container's PID 1,
    // and `docker stop` sends it SIGTERM. PID 1 gets only signals it
    // handles or blocks (sitefs blocks and sigwaits), and when it exits the
    // kernel kills the rest of the PID namespace, watchdog included: the
    // unmount must be done by then.
    let env = Env::new();
    let mnt = env.dir("mnt");
    let _kill = KillOnDrop(vec![mnt.clone()]);
    let mut unshare = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--propagation",
            "private",
            "--",
        ])
        .arg(sitefs_bin())
        .args(["mount", "-f"])
        .arg(&env.alpha)
        .arg(&mnt)
        .args(["-o", "ro,allow_other"])
        .env_remove("SITEFS_STORE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let daemon = daemon_of(&mnt);
    let status = fs::read_to_string(format!("/proc/{daemon}/status")).unwrap();
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .unwrap_or_default()
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        nspid, "1",
        "the daemon is not PID 1 of its namespace:\n{status}"
    );
    let mountinfo = format!("/proc/{daemon}/mountinfo");
    wait_for("the mount in the container", || {
        fs::read_to_string(&mountinfo)
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(mnt.to_str().unwrap()))
    });
    assert_success(&import_in_namespace_of(daemon, &mnt, "sfalpha"));
    assert!(!is_mounted(&mnt));

    signal(daemon, libc::SIGTERM);
    let status = wait_exit(&mut unshare, "PID 1 to exit on SIGTERM");
    let mut err = String::new();
    unshare
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status:?}: {err}");
    wait_processes_gone(&mnt);
}

#[test]
fn daemon_container_with_rshared_bind_serves_host_and_app_container() {
    // examples/compose.yaml: a daemon container mounts into a host directory
    // bound `propagation: rshared`; the host and an app container bound
    // `rslave` see the env; stopping the daemon container's mount removes
    // it everywhere.
    let env = Env::new();
    let (shared, site) = shared_host_dir(&env);
    let daemon_root = env.dir("daemon-root");
    let app_root = env.dir("app-root");
    let _unmount = Unmount(site.clone());
    let daemon_site = daemon_root.join("site");
    let _kill = KillOnDrop(vec![daemon_site.clone()]);

    // The daemon container's bind is a peer of the host directory.
    let mut daemon_ns = container("daemon container", &shared.0, &daemon_root, "rshared");
    let mut app_ns = container("app container", &shared.0, &app_root, "rslave");
    daemon_ns.ok(&format!(
        "{} mount {} {} -o ro,allow_other",
        sh_quote(sitefs_bin()),
        sh_quote(&env.alpha),
        sh_quote(&daemon_site)
    ));
    wait_for("the daemon container's mount to reach the host", || {
        is_mounted(&site)
    });
    assert_imports(&site, "sfalpha", "alpha");
    let app_site = app_root.join("site");
    app_ns.wait_until(
        "the mount to reach the app container",
        &format!("is_mnt {}", sh_quote(&app_site)),
    );
    let out = app_ns.ok(&import_line(real_python(), &app_site, "sfalpha"));
    assert_eq!(
        out.trim(),
        format!("alpha {}/sfalpha/__init__.py", app_site.display())
    );

    daemon_ns.ok(&format!(
        "{} umount {}",
        sh_quote(sitefs_bin()),
        sh_quote(&daemon_site)
    ));
    wait_for("the unmount to reach the host", || !is_mounted(&site));
    app_ns.wait_until(
        "the unmount to reach the app container",
        &format!("! is_mnt {}", sh_quote(&app_site)),
    );
    wait_processes_gone(&daemon_site);
}

// ---------------------------------------------------------------------------
// Unprivileged users
// ---------------------------------------------------------------------------

const NOBODY: &str = "setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/";

/// Whether `cmd` (a shell line) succeeds as uid/gid 65534.
fn nobody_can(cmd: &str) -> bool {
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("{NOBODY} sh -c {}", sh_quote(cmd))))
    .status
    .success()
}

/// An interpreter the unprivileged user can run: the test python if it can,
/// else the system python3.
fn python_for_nobody() -> Option<String> {
    [real_python(), "/usr/bin/python3"]
        .into_iter()
        .find(|py| nobody_can(&format!("{} -c pass", sh_quote(py))))
        .map(str::to_string)
}

fn user_allow_other_enabled() -> bool {
    fs::read_to_string("/etc/fuse.conf")
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim() == "user_allow_other")
}

/// Prepares a store, manifests and mountpoints owned by 65534 with 0755
/// parents, and a shell in which that user can reach /dev/fuse: this
/// host's shell if /dev/fuse is open to everyone (as the fuse3 udev rule
/// makes it, 0666), else one in a private mount namespace with a 0666 node
/// for the same device bound over /dev/fuse (hosts without udev, such as
/// containers and this test machine, leave it 0600). Either way, the mount
/// itself goes through the setuid fusermount3, as for any user.
fn unprivileged_setup(test: &str) -> Option<(Env, Shell)> {
    if !nobody_can(&format!("{} --version", sh_quote(sitefs_bin()))) {
        cannot_run(
            test,
            &format!(
                "uid 65534 cannot run {} (a parent directory is not world-searchable; \
                 set CARGO_TARGET_DIR elsewhere)",
                sitefs_bin().display()
            ),
        );
        return None;
    }
    let Some(py) = python_for_nobody() else {
        cannot_run(test, "no python3 that uid 65534 can run");
        return None;
    };
    let env = Env::with_python(&py);
    for d in ["mnt", "mnt2"] {
        env.dir(d);
    }
    fs::set_permissions(env.work(), fs::Permissions::from_mode(0o755)).unwrap();
    assert_success(&run(Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(env.work())));
    let shell = if nobody_can("exec 3<>/dev/fuse") {
        Shell::spawn("host", &[], "true")
    } else {
        let node = env.work().join("fuse-0666");
        Shell::spawn(
            "private namespace",
            &["unshare", "--mount", "--propagation", "private"],
            &format!(
                "mknod -m 0666 {n} c $((0x$(stat -c %t /dev/fuse))) $((0x$(stat -c %T /dev/fuse))) \
                 && mount --bind {n} /dev/fuse",
                n = sh_quote(&node)
            ),
        )
    };
    Some((env, shell))
}

#[test]
fn unprivileged_user_mounts_through_fusermount3_and_imports() {
    let Some((env, mut sh)) =
        unprivileged_setup("unprivileged_user_mounts_through_fusermount3_and_imports")
    else {
        return;
    };
    let mnt = env.work().canonicalize().unwrap().join("mnt");
    let _kill = KillOnDrop(vec![mnt.clone()]);
    let bin = sh_quote(sitefs_bin());
    sh.ok(&format!(
        "{NOBODY} {bin} mount {} {}",
        sh_quote(&env.alpha),
        sh_quote(&mnt)
    ));
    // Mounted by fusermount3 on behalf of uid 65534.
    let line = sh.ok(&format!(
        "awk -v p={} '$5 == p' /proc/self/mountinfo",
        sh_quote(&mnt)
    ));
    assert!(line.contains("user_id=65534"), "{line}");
    assert!(!line.contains("allow_other"), "{line}");
    let daemon = daemon_of(&mnt);
    let status = fs::read_to_string(format!("/proc/{daemon}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534")),
        "the daemon does not run as 65534:\n{status}"
    );
    let out = sh.ok(&format!(
        "{NOBODY} {}",
        import_line(&env.python, &mnt, "sfalpha")
    ));
    assert_eq!(
        out.trim(),
        format!("alpha {}/sfalpha/__init__.py", mnt.display())
    );
    // Without allow_other, not even root may look inside.
    let (rc, out) = sh.run(&format!("ls {}", sh_quote(&mnt)));
    assert_ne!(rc, 0, "root could list a mount without allow_other: {out}");
    assert!(out.contains("Permission denied"), "{out}");
    // `sitefs umount` as the user goes through `fusermount3 -u`.
    sh.ok(&format!("{NOBODY} {bin} umount {}", sh_quote(&mnt)));
    sh.wait_until("the unmount", &format!("! is_mnt {}", sh_quote(&mnt)));
    wait_processes_gone(&mnt);
}

#[test]
fn unprivileged_allow_other_needs_user_allow_other() {
    if user_allow_other_enabled() {
        cannot_run(
            "unprivileged_allow_other_needs_user_allow_other",
            "/etc/fuse.conf enables user_allow_other",
        );
        return;
    }
    let Some((env, mut sh)) = unprivileged_setup("unprivileged_allow_other_needs_user_allow_other")
    else {
        return;
    };
    let mnt = env.work().canonicalize().unwrap().join("mnt2");
    let _kill = KillOnDrop(vec![mnt.clone()]);
    let (rc, out) = sh.run(&format!(
        "{NOBODY} {} mount {} {} -o ro,allow_other",
        sh_quote(sitefs_bin()),
        sh_quote(&env.alpha),
        sh_quote(&mnt)
    ));
    assert_eq!(rc, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {out}"));
    assert!(
        line.contains("user_allow_other") && line.contains("/etc/fuse.conf"),
        "{line}"
    );
    let (rc, _) = sh.run(&format!("is_mnt {}", sh_quote(&mnt)));
    assert_ne!(rc, 0, "a failed mount is mounted");
    assert!(processes_with_arg(mnt.as_os_str()).is_empty());
}

// ---------------------------------------------------------------------------
// examples/compose.yaml
// ---------------------------------------------------------------------------

#[test]
fn compose_example_has_what_the_namespace_tests_exercise() {
    // No Docker engine here: the namespace tests above are the mechanism
    // test; this keeps the example in step with them.
    let text = fs::read_to_string(repo().join("examples/compose.yaml")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim())
        .collect();
    for want in [
        "- /dev/fuse",
        "- SYS_ADMIN",
        "- apparmor:unconfined",
        "propagation: rshared",
        "propagation: rslave",
        "stop_signal: SIGTERM",
    ] {
        assert!(
            lines.contains(&want),
            "examples/compose.yaml lacks `{want}`"
        );
    }
    assert!(text.contains(
        "sitefs -v mount -f /srv/sitefs/envs/app/sitefs.toml /mnt/sitefs/app -o ro,allow_other"
    ));
    sitefs::mount::options::MountOpts::parse("ro,allow_other").unwrap();
}
