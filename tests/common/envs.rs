//! Venvs for end-to-end tests: the test interpreter, clean processes,
//! a [`Venv`] guard that unmounts whatever a test mounted, and a [`Work`]
//! directory holding a test's store, wheels and venvs.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{
    assert_success, failed_stderr, is_mounted, python, python_eval, sitefs_command, stdout_of,
    WheelBuilder,
};

/// How long one command (sitefs, python, pip) may run before the test
/// fails instead of hanging. Generous: two cores are shared by parallel
/// tests, and `env create` compiles bytecode for pip's 500 files.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------
// The interpreter
// ---------------------------------------------------------------------------

/// The real interpreter behind `python()` (a pyenv shim here).
pub fn real_python() -> &'static str {
    static EXE: OnceLock<String> = OnceLock::new();
    EXE.get_or_init(|| python_eval(&python(), "import sys; print(sys.executable)"))
}

/// `X.Y` of the test interpreter.
pub fn py_xy() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        python_eval(
            real_python(),
            "import sys; print('%d.%d' % sys.version_info[:2])",
        )
    })
}

/// The most specific wheel tag of the test interpreter, e.g.
/// `cp311-cp311-linux_x86_64`.
pub fn native_tag() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| {
        python_eval(
            real_python(),
            "import sys, sysconfig; v = 'cp%d%d' % sys.version_info[:2]; \
             print(v + '-' + v + '-' + sysconfig.get_platform().replace('-', '_').replace('.', '_'))",
        )
    })
}

/// pip's wheel as CPython bundles it for ensurepip, if this interpreter
/// has one (3.11 ships pip 23.2.1).
pub fn pip_wheel() -> Option<PathBuf> {
    static W: OnceLock<Option<PathBuf>> = OnceLock::new();
    W.get_or_init(|| {
        if let Some(w) = std::env::var_os("SITEFS_TEST_PIP_WHEEL") {
            return Some(PathBuf::from(w));
        }
        let found = python_eval(
            real_python(),
            "import ensurepip, glob, os\n\
             w = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl')))\n\
             print(w[-1] if w else '')",
        );
        (!found.is_empty()).then(|| PathBuf::from(found))
    })
    .clone()
}

pub fn site_packages(venv: &Path) -> PathBuf {
    venv.join(format!("lib/python{}/site-packages", py_xy()))
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A command with nothing inherited that would change what it sees:
/// no PYTHONPATH/PYTHONHOME/VIRTUAL_ENV, bytecode writing on (as on a
/// user's machine), no pip find-links from the environment, cwd `/` (so
/// `-c` code cannot import from the test's directory).
pub fn clean(mut cmd: Command) -> Command {
    for var in [
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONSAFEPATH",
        "VIRTUAL_ENV",
        "PIP_FIND_LINKS",
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "SITEFS_STORE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .current_dir("/");
    cmd
}

/// Runs `cmd` within [`PROCESS_LIMIT`] (see `common::output_within`).
pub fn run_limited(mut cmd: Command) -> Output {
    super::output_within(&mut cmd, PROCESS_LIMIT)
}

/// `sitefs args...` (no SITEFS_STORE/RUST_LOG from the environment).
pub fn sitefs<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = sitefs_command();
    cmd.args(args);
    run_limited(cmd)
}

/// Runs a program of a venv (`bin/<prog>`) with `args`.
pub fn venv_run(venv: &Path, prog: &str, args: &[&str]) -> Output {
    let mut cmd = clean(Command::new(venv.join("bin").join(prog)));
    cmd.args(args);
    run_limited(cmd)
}

/// `VENV/bin/python -c code`.
pub fn vpy(venv: &Path, code: &str) -> Output {
    venv_run(venv, "python", &["-c", code])
}

/// `VENV/bin/python -c code`, which must succeed; its stdout.
pub fn vpy_ok(venv: &Path, code: &str) -> String {
    let out = vpy(venv, code);
    assert_success(&out);
    stdout_of(&out)
}

/// The stderr of a command that must have failed with exit 1, with an
/// `error: ` first line.
pub fn failure(out: &Output) -> String {
    let err = failed_stderr(out);
    assert!(
        err.starts_with("error: "),
        "stderr does not start with `error: `:\n{err}"
    );
    err
}

// ---------------------------------------------------------------------------
// Mounts and the venv guard
// ---------------------------------------------------------------------------

/// A venv path that this test may mount. On drop: `sitefs env rm`, and
/// `umount -l` if its site-packages is still mounted after that.
pub struct Venv {
    pub path: PathBuf,
}

impl Venv {
    /// The guard for `path`; create it before anything may mount there.
    pub fn guard(path: &Path) -> Venv {
        Venv {
            path: path.to_path_buf(),
        }
    }

    pub fn sp(&self) -> PathBuf {
        site_packages(&self.path)
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.path.join("bin").join(name)
    }
}

impl Drop for Venv {
    fn drop(&mut self) {
        let sp = self.sp();
        if !is_mounted(&sp) {
            return;
        }
        // No output capture and no panics here: this may run while a
        // test is already panicking.
        let _ = sitefs_command()
            .args(["env", "rm"])
            .arg(&self.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while is_mounted(&sp) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_mounted(&sp) {
            let _ = Command::new("umount").arg("-l").arg(&sp).status();
        }
    }
}

/// A test's temporary directory: the store, the wheels, the venvs.
pub struct Work {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Work {
    pub fn new() -> Work {
        let dir = tempfile::Builder::new()
            .prefix("sitefs-env-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().canonicalize().unwrap();
        Work { _dir: dir, root }
    }

    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// `<root>/<rel>`, its parent directories created.
    pub fn path(&self, rel: &str) -> PathBuf {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    pub fn wheel_dir(&self) -> PathBuf {
        let d = self.root.join("wheels");
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// Writes `w` into `<root>/wheels` and returns its path.
    pub fn wheel(&self, w: &WheelBuilder) -> PathBuf {
        w.write_to(self.wheel_dir())
    }

    /// `sitefs env create VENV --store S --python PY args...`.
    pub fn create_cmd(&self, venv: &Path, args: &[&OsStr]) -> Output {
        let mut all: Vec<OsString> = vec!["env".into(), "create".into(), venv.into()];
        all.extend([
            "--store".into(),
            self.store().into(),
            "--python".into(),
            real_python().into(),
        ]);
        all.extend(args.iter().map(|a| a.to_os_string()));
        sitefs(all)
    }

    /// `sitefs store add --store S --python PY WHEEL`.
    pub fn store_add(&self, wheel: &Path) -> Output {
        let store = self.store();
        sitefs([
            OsStr::new("store"),
            OsStr::new("add"),
            OsStr::new("--store"),
            store.as_os_str(),
            OsStr::new("--python"),
            OsStr::new(real_python()),
            wheel.as_os_str(),
        ])
    }

    /// Creates a venv that must succeed and be mounted; returns its guard.
    pub fn create(&self, venv: &Path, args: &[&OsStr]) -> Venv {
        let guard = Venv::guard(venv);
        let out = self.create_cmd(venv, args);
        assert_success(&out);
        assert!(
            is_mounted(&guard.sp()),
            "env create exited 0 but {} is not in mountinfo",
            guard.sp().display()
        );
        guard
    }
}

/// The names in a directory, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .mode()
        & 0o7777
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}
