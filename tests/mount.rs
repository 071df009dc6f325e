//! Integration tests of the FUSE mount: real wheels built here, a real store
//! in a temporary directory, real mounts through `sitefs mount`, and real
//! python3 processes importing from them.
//!
//! Every mount is owned by a [`Mount`] guard that unmounts it on drop (also
//! when the test panics): `sitefs umount`, then `umount -l` as a fallback.
//! Anything that happens asynchronously (a daemon exiting, a dead mount
//! being cleared) is polled with a deadline, never slept on.

mod common;

use common::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Helpers: python, polling, mountinfo, processes
// ---------------------------------------------------------------------------

/// The real interpreter behind `python()` (which may be a pyenv shim):
/// resolved once, so each python run below costs one exec.
fn real_python() -> &'static str {
    static EXE: OnceLock<String> = OnceLock::new();
    EXE.get_or_init(|| python_eval(&python(), "import sys; print(sys.executable)"))
}

fn cache_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| python_eval(&python(), "import sys; print(sys.implementation.cache_tag)"))
}

/// A python command isolated from the environment: `-E` ignores PYTHON*
/// variables (so PYTHONDONTWRITEBYTECODE too: bytecode writing is on, as
/// on a user's machine), `-s -S` keep user and system site-packages off
/// sys.path, and the working directory is `/` so nothing but the mount
/// can provide the test's modules.
fn python_cmd() -> Command {
    let mut cmd = Command::new(real_python());
    cmd.args(["-E", "-s", "-S"])
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .current_dir("/");
    cmd
}

/// Runs `code` with the mount first on sys.path (`sys.argv[1]` is `mnt`).
fn py_at(mnt: &Path, extra_args: &[&str], code: &str) -> Output {
    let mut cmd = python_cmd();
    cmd.args(extra_args)
        .arg("-c")
        .arg(format!(
            "import sys; sys.path.insert(0, sys.argv[1])\n{code}"
        ))
        .arg(mnt);
    output_within(&mut { cmd }, PROCESS_LIMIT)
}

/// How long one python (or pip) run over a mount may take: a filesystem
/// that loops (say, on readdir offsets) fails the test instead of hanging.
const PROCESS_LIMIT: Duration = Duration::from_secs(120);

/// Most entries a directory of these tests may list before a readdir is
/// taken to be looping.
const MAX_DIR_ENTRIES: usize = 20_000;

/// The names in `dir`, failing (instead of looping forever) past
/// [`MAX_DIR_ENTRIES`].
fn list_dir(dir: &Path) -> Vec<String> {
    let names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .take(MAX_DIR_ENTRIES + 1)
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.len() <= MAX_DIR_ENTRIES,
        "readdir of {} does not end",
        dir.display()
    );
    names
}

/// Like [`py_at`], but panics unless python succeeds; returns stdout lines.
fn py_ok(mnt: &Path, code: &str) -> Vec<String> {
    let out = py_at(mnt, &[], code);
    assert_success(&out);
    stdout_of(&out).lines().map(str::to_string).collect()
}

/// `key<TAB>value` lines printed by a python snippet, as a map.
fn kv(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The daemon serving `mnt`: the one process started with `mnt` on its
/// command line that holds the FUSE device (the watchdog it forks has the
/// same command line but closes the device).
fn daemon_pid(mnt: &Path) -> i32 {
    let candidates = processes_with_arg(mnt.as_os_str());
    let daemons: Vec<i32> = candidates
        .iter()
        .copied()
        .filter(|&p| holds_dev_fuse(p))
        .collect();
    assert_eq!(
        daemons.len(),
        1,
        "expected exactly one daemon for {} holding /dev/fuse; processes with it on their command line: {candidates:?}",
        mnt.display()
    );
    daemons[0]
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: plain syscall; pid is a daemon this test mounted.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Every path below `root` (relative, sorted), with its lstat.
fn walk(root: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
            .take(MAX_DIR_ENTRIES + 1)
            .collect::<Vec<_>>();
        assert!(
            entries.len() <= MAX_DIR_ENTRIES,
            "readdir of {} does not end",
            dir.display()
        );
        for e in entries {
            let e = e.unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            assert_eq!(
                e.ino(),
                md.ino(),
                "readdir d_ino and stat st_ino differ for {}",
                e.path().display()
            );
            if md.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path().strip_prefix(root).unwrap().to_path_buf(), md));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The (name, bytes) of every file in a wheel.
fn wheel_entries(wheel: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = fs::read(wheel).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        if f.is_dir() {
            continue;
        }
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

/// Deterministic pseudo-random bytes (so the content check sees no runs).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The one line of stderr of a failed command, which must start `error: `.
fn one_error_line(out: &Output) -> String {
    let err = failed_stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

// ---------------------------------------------------------------------------
// Helpers: wheels, store, manifests, mounts
// ---------------------------------------------------------------------------

/// A pure package with a submodule, a data file, an executable script and
/// a console script.
fn pkg_wheel() -> WheelBuilder {
    WheelBuilder::new("sfpkg", "1.2.3")
        .file(
            "sfpkg/__init__.py",
            "from .core import greet\nVALUE = 'sfpkg-value'\n",
        )
        .file("sfpkg/core.py", "def greet(n):\n    return 'hello ' + n\n")
        .file("sfpkg/cli.py", "def main():\n    print('cli ran')\n")
        .file("sfpkg/data/config.json", "{\"answer\": 42}\n")
        .executable("sfpkg/tool.sh", "#!/bin/sh\necho tool-ran \"$@\"\n")
        .entry_points("[console_scripts]\nsfpkg-tool = sfpkg.cli:main\n")
}

/// A second, unrelated pure dist.
fn other_wheel() -> WheelBuilder {
    WheelBuilder::new("sfother", "2.0")
        .file("sfother/__init__.py", "WHO = 'other'\n")
        .entry_points("[console_scripts]\nsfother-run = sfother:main\n")
}

/// A platlib wheel holding a compiled extension module `sfext`.
fn ext_wheel(work: &Path) -> WheelBuilder {
    let build = work.join("ext-build");
    fs::create_dir_all(&build).unwrap();
    let so = build_extension_module(&python(), "sfext", &build);
    WheelBuilder::new("sfext", "0.1")
        .tag("cp311-cp311-linux_x86_64")
        .root_is_purelib(false)
        .file(&format!("sfext{}", ext_suffix(&python())), so)
}

/// A dist with a 3 MiB file (many FUSE reads) and a few small ones.
fn blob_wheel() -> WheelBuilder {
    WheelBuilder::new("sfblob", "1.0")
        .file("sfblob/__init__.py", "SIZE = 3 * 1024 * 1024 + 17\n")
        .file("sfblob/blob.bin", noise(3 * 1024 * 1024 + 17, 0x5eed))
        .file("sfblob/empty.txt", "")
}

/// A temporary directory holding a store, wheels, manifests and
/// mountpoints. Declare [`Mount`] guards after it so they drop first.
struct Env {
    store: TempStore,
}

impl Env {
    fn new() -> Self {
        Env {
            store: TempStore::new(),
        }
    }

    fn work(&self) -> &Path {
        self.store.dir.path()
    }

    /// Writes the wheels and adds them with bytecode for the test python;
    /// returns the store ids, in order.
    fn add(&self, wheels: &[&WheelBuilder]) -> Vec<String> {
        let dir = self.work().join("wheels");
        fs::create_dir_all(&dir).unwrap();
        let paths: Vec<PathBuf> = wheels.iter().map(|w| w.write_to(&dir)).collect();
        self.add_paths(&paths, true)
    }

    fn add_paths(&self, paths: &[PathBuf], bytecode: bool) -> Vec<String> {
        let mut args: Vec<&OsStr> = Vec::new();
        let py = python();
        if bytecode {
            args.push(OsStr::new("--python"));
            args.push(OsStr::new(&py));
        }
        args.extend(paths.iter().map(|p| p.as_os_str()));
        let out = self.store.store_cmd("add", args);
        assert_success(&out);
        let ids: Vec<String> = stdout_of(&out)
            .lines()
            .filter_map(|l| {
                l.rsplit_once('(')
                    .map(|(_, id)| id.trim_end_matches(')').to_string())
            })
            .collect();
        assert_eq!(ids.len(), paths.len(), "ids in: {}", stdout_of(&out));
        ids
    }

    fn wheel_path(&self, w: &WheelBuilder) -> PathBuf {
        self.work().join("wheels").join(w.file_name())
    }

    /// `sitefs manifest new` for `specs`, written to `<work>/<name>.toml`.
    fn manifest(&self, name: &str, specs: &[&str]) -> PathBuf {
        let path = self.work().join(format!("{name}.toml"));
        let out = sitefs_command()
            .args(["manifest", "new", "--store"])
            .arg(&self.store.path)
            .args(["--python", &python(), "-o"])
            .arg(&path)
            .args(specs)
            .output()
            .unwrap();
        assert_success(&out);
        path
    }

    /// A fresh, empty directory to mount on (canonical path).
    fn mountpoint(&self, name: &str) -> PathBuf {
        let p = self.work().join(name);
        fs::create_dir(&p).unwrap();
        p.canonicalize().unwrap()
    }
}

/// Inserts top-level `line` into manifest text (before the first table).
fn with_top_level(text: &str, line: &str) -> String {
    let at = text.find("\n[").expect("manifest has a table") + 1;
    format!("{}{line}\n{}", &text[..at], &text[at..])
}

/// A mounted manifest; unmounts on drop, whatever happened.
struct Mount {
    mnt: PathBuf,
}

impl Mount {
    /// `sitefs mount manifest mnt -o opts...`, which must succeed and
    /// leave `mnt` mounted.
    fn new(manifest: &Path, mnt: &Path, opts: &[&str]) -> Mount {
        // The guard exists before the mount, so a failing assertion below
        // still unmounts.
        let guard = Mount {
            mnt: mnt.to_path_buf(),
        };
        let out = try_mount(manifest, mnt, opts);
        assert_success(&out);
        assert!(
            is_mounted(mnt),
            "sitefs mount exited 0 but {} is not in mountinfo",
            mnt.display()
        );
        guard
    }

    fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !is_mounted(&self.mnt) {
            return;
        }
        let _ = run_sitefs([OsStr::new("umount"), self.mnt.as_os_str()]);
        let start = Instant::now();
        while is_mounted(&self.mnt) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn try_mount(manifest: &Path, mnt: &Path, opts: &[&str]) -> Output {
    let mut cmd = sitefs_command();
    cmd.arg("mount").arg(manifest).arg(mnt);
    for o in opts {
        cmd.args(["-o", o]);
    }
    // No stdin, and the daemon must not keep our pipes: `output()` only
    // returns once every holder of stdout/stderr has closed them.
    cmd.stdin(Stdio::null()).output().expect("run sitefs mount")
}

/// Store, pkg + other dists, manifest of both, mounted at `<work>/mnt`.
fn mounted_pkg_env(opts: &[&str]) -> (Env, Mount) {
    let env = Env::new();
    env.add(&[&pkg_wheel(), &other_wheel()]);
    let m = env.manifest("env", &["sfpkg", "sfother"]);
    let mnt = env.mountpoint("mnt");
    let mount = Mount::new(&m, &mnt, opts);
    (env, mount)
}

// ---------------------------------------------------------------------------
// Importing
// ---------------------------------------------------------------------------

#[test]
fn pure_package_imports_from_the_mount_with_resources() {
    let (_env, mount) = mounted_pkg_env(&[]);
    let mnt = mount.path();
    let info = kv(&py_ok(
        mnt,
        r#"
import os, sfpkg, sfpkg.core, importlib.resources as r
print("file", sfpkg.__file__, sep="\t")
print("core", sfpkg.core.__file__, sep="\t")
print("realpath", os.path.realpath(sfpkg.__file__), sep="\t")
print("greet", sfpkg.greet("mount"), sep="\t")
print("value", sfpkg.VALUE, sep="\t")
res = r.files("sfpkg").joinpath("data/config.json")
print("resource", res.read_text().strip(), sep="\t")
print("resource_path", str(res), sep="\t")
print("binary", res.read_bytes() == open(os.path.join(sys.argv[1], "sfpkg/data/config.json"), "rb").read(), sep="\t")
import errno, fcntl, termios
with open(sfpkg.__file__, "rb") as f:
    print("isatty", f.isatty(), sep="\t")
    try:
        fcntl.ioctl(f.fileno(), termios.TCGETS, bytes(64))
        print("tcgets", "succeeded", sep="\t")
    except OSError as e:
        print("tcgets", errno.errorcode[e.errno], sep="\t")
"#,
    ));
    let m = mnt.display();
    assert_eq!(info["file"], format!("{m}/sfpkg/__init__.py"));
    assert_eq!(info["core"], format!("{m}/sfpkg/core.py"));
    assert_eq!(
        info["realpath"], info["file"],
        "the served file must be a real file at its path, not a link into the store"
    );
    assert_eq!(info["greet"], "hello mount");
    assert_eq!(info["value"], "sfpkg-value");
    assert_eq!(info["resource"], "{\"answer\": 42}");
    assert_eq!(info["resource_path"], format!("{m}/sfpkg/data/config.json"));
    assert_eq!(info["binary"], "True");
    // CPython asks isatty() on every open(); the daemon answers ENOTTY.
    assert_eq!(info["isatty"], "False");
    assert_eq!(info["tcgets"], "ENOTTY");
    // Without the mount on sys.path the module does not exist: the import
    // above really came from the mount.
    let out = python_cmd().args(["-c", "import sfpkg"]).output().unwrap();
    assert!(!out.status.success(), "sfpkg importable without the mount");
}

#[test]
fn namespace_package_split_across_two_dists_imports_both_halves() {
    let env = Env::new();
    let a = WheelBuilder::new("sfns-a", "1.0").file("sfns/a/__init__.py", "NAME = 'a'\n");
    let b = WheelBuilder::new("sfns-b", "1.0").file("sfns/b/__init__.py", "NAME = 'b'\n");
    env.add(&[&a, &b]);
    let m = env.manifest("ns", &["sfns-a", "sfns-b"]);
    let mount = Mount::new(&m, &env.mountpoint("mnt"), &[]);
    let mnt = mount.path();
    assert!(!mnt.join("sfns/__init__.py").exists());
    let mut names = list_dir(&mnt.join("sfns"));
    names.sort();
    assert_eq!(names, ["a", "b"]);
    let info = kv(&py_ok(
        mnt,
        r#"
import sfns, sfns.a, sfns.b
print("a", sfns.a.NAME, sfns.a.__file__, sep="\t")
print("b", sfns.b.NAME, sfns.b.__file__, sep="\t")
print("path", list(sfns.__path__), sep="\t")
print("file", getattr(sfns, "__file__", None), sep="\t")
"#,
    ));
    let m = mnt.display();
    assert_eq!(info["a"], format!("a\t{m}/sfns/a/__init__.py"));
    assert_eq!(info["b"], format!("b\t{m}/sfns/b/__init__.py"));
    assert_eq!(
        info["path"],
        format!("['{m}/sfns']"),
        "one merged directory"
    );
    assert_eq!(info["file"], "None", "sfns must be a namespace package");
}

#[test]
fn extension_module_imports_and_executables_run() {
    let env = Env::new();
    let ext = ext_wheel(env.work());
    env.add(&[&ext, &pkg_wheel()]);
    let m = env.manifest("ext", &["sfext", "sfpkg"]);
    let mount = Mount::new(&m, &env.mountpoint("mnt"), &[]);
    let mnt = mount.path();
    let so = mnt.join(format!("sfext{}", ext_suffix(&python())));
    let info = kv(&py_ok(
        mnt,
        r#"
import sfext
print("file", sfext.__file__, sep="\t")
print("add", sfext.add(2, 3), sep="\t")
print("magic", sfext.MAGIC, sep="\t")
print("loader", type(sfext.__loader__).__name__, sep="\t")
maps = open("/proc/self/maps").read().splitlines()
print("mapped_x", any(" r-xp " in l and "sfext" in l for l in maps), sep="\t")
"#,
    ));
    assert_eq!(info["file"], so.display().to_string());
    assert_eq!(info["add"], "5");
    assert_eq!(info["magic"], EXT_MAGIC.to_string());
    assert_eq!(info["loader"], "ExtensionFileLoader");
    assert_eq!(
        info["mapped_x"], "True",
        "the .so must be mapped executable"
    );

    // The script kept its 0755 and runs in place; a 0644 file does not.
    let tool = mnt.join("sfpkg/tool.sh");
    assert_eq!(fs::metadata(&tool).unwrap().mode() & 0o7777, 0o755);
    let out = Command::new(&tool).arg("arg1").output().unwrap();
    assert_success(&out);
    assert_eq!(stdout_of(&out), "tool-ran arg1\n");
    let plain = mnt.join("sfpkg/core.py");
    assert_eq!(fs::metadata(&plain).unwrap().mode() & 0o7777, 0o644);
    let err = Command::new(&plain).output().unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EACCES),
        "exec of a 0644 file: {err}"
    );
}

/// By default (`pyc=link`) each pyc is a symlink to the store's pyc, so
/// that an import opens a store file and asks the mount nothing.
#[test]
fn pycs_link_into_the_store_and_are_used() {
    let (env, mount) = mounted_pkg_env(&[]);
    let bytecode = env.store.path.join("bytecode").join(cache_tag());
    for pyc in served_pycs(&mount) {
        let md = fs::symlink_metadata(&pyc).unwrap_or_else(|e| panic!("{pyc}: {e}"));
        assert!(md.file_type().is_symlink(), "{pyc} is not a symlink");
        let target = fs::read_link(&pyc).unwrap();
        assert!(
            target.starts_with(&bytecode),
            "{pyc} -> {}",
            target.display()
        );
        assert_eq!(
            md.len(),
            target.as_os_str().len() as u64,
            "{pyc}: link size"
        );
        assert_eq!(fs::read(&pyc).unwrap(), fs::read(&target).unwrap());
        // Opening it opens the store's file, not one of the mount.
        let opened = fs::File::open(&pyc).unwrap().metadata().unwrap().dev();
        assert_eq!(
            opened,
            fs::metadata(&env.store.path).unwrap().dev(),
            "{pyc}"
        );
        assert_ne!(opened, fs::metadata(mount.path()).unwrap().dev(), "{pyc}");
    }
    pycs_are_used_and_never_rewritten(&mount);
}

/// `pyc=file` serves them as regular files (for clients that cannot see
/// the store), with the same bytes.
#[test]
fn pycs_as_files_are_used() {
    let (env, mount) = mounted_pkg_env(&["pyc=file"]);
    let bytecode = env.store.path.join("bytecode").join(cache_tag());
    for pyc in served_pycs(&mount) {
        let md = fs::symlink_metadata(&pyc).unwrap_or_else(|e| panic!("{pyc}: {e}"));
        assert!(md.is_file(), "{pyc} is not a regular file");
        assert_eq!(md.mode() & 0o7777, 0o644, "{pyc} mode");
        let bytes = fs::read(&pyc).unwrap();
        assert_eq!(
            bytes.len() as u64,
            md.len(),
            "{pyc}: served size vs stat size"
        );
        let digest = sha256_hex(&fs::read(source_of(&pyc)).unwrap());
        let stored = bytecode.join(&digest[..2]).join(format!("{digest}.pyc"));
        assert_eq!(
            bytes,
            fs::read(&stored).unwrap(),
            "{pyc} vs {}",
            stored.display()
        );
    }
    pycs_are_used_and_never_rewritten(&mount);
}

/// The pycs of sfpkg's `__init__` and `core` in the mount.
fn served_pycs(mount: &Mount) -> [String; 2] {
    let (m, tag) = (mount.path().display(), cache_tag());
    ["__init__", "core"].map(|stem| format!("{m}/sfpkg/__pycache__/{stem}.{tag}.pyc"))
}

/// `d/__pycache__/x.TAG.pyc` -> `d/x.py`.
fn source_of(pyc: &str) -> String {
    let (dir, name) = pyc.rsplit_once("/__pycache__/").unwrap();
    format!("{dir}/{}.py", name.split('.').next().unwrap())
}

fn pycs_are_used_and_never_rewritten(mount: &Mount) {
    let mnt = mount.path();
    let m = mnt.display();
    let [init_pyc, core_pyc] = served_pycs(mount);
    // The pyc is a valid pyc for this interpreter and for this very source.
    let check = kv(&py_ok(
        mnt,
        r#"
import importlib.util, os
m = sys.argv[1]
for stem in ("__init__", "core"):
    pyc = open(os.path.join(m, "sfpkg", "__pycache__", f"{stem}.{sys.implementation.cache_tag}.pyc"), "rb").read()
    src = open(os.path.join(m, "sfpkg", f"{stem}.py"), "rb").read()
    print(stem + "_magic", pyc[:4] == importlib.util.MAGIC_NUMBER, sep="\t")
    print(stem + "_flags", int.from_bytes(pyc[4:8], "little"), sep="\t")
    print(stem + "_hash", pyc[8:16] == importlib.util.source_hash(src), sep="\t")
print("dont_write_bytecode", sys.dont_write_bytecode, sep="\t")
"#,
    ));
    for stem in ["__init__", "core"] {
        assert_eq!(check[&format!("{stem}_magic")], "True", "{stem}");
        assert_eq!(check[&format!("{stem}_hash")], "True", "{stem}");
        let flags: u32 = check[&format!("{stem}_flags")].parse().unwrap();
        assert_eq!(flags & 1, 1, "{stem}: not a hash-based pyc (flags {flags})");
    }
    // Bytecode writing is on in these runs, so a rejected pyc would show
    // up as a failed write below.
    assert_eq!(check["dont_write_bytecode"], "False");

    // `-v` shows the import using the served pyc; with hash checking
    // forced, the pyc must still match its source.
    for extra in [
        &["-v"][..],
        &["-v", "--check-hash-based-pycs", "always"][..],
    ] {
        let out = py_at(mnt, extra, "import sfpkg\nprint(sfpkg.greet('v'))");
        assert_success(&out);
        assert_eq!(stdout_of(&out), "hello v\n");
        let err = stderr_of(&out);
        for (pyc, src) in [(&init_pyc, "__init__"), (&core_pyc, "core")] {
            assert!(
                err.contains(&format!("# code object from '{pyc}'")),
                "{extra:?}: no `code object from '{pyc}'` in:\n{err}"
            );
            assert!(
                err.contains(&format!("# {pyc} matches {m}/sfpkg/{src}.py")),
                "{extra:?}: no `{pyc} matches` in:\n{err}"
            );
        }
        assert!(
            !err.contains("could not create"),
            "{extra:?}: python tried to write bytecode:\n{err}"
        );
    }
}

// ---------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------

#[test]
fn importlib_metadata_and_pip_see_the_dists() {
    let (env, mount) = mounted_pkg_env(&[]);
    let mnt = mount.path();
    let lines = py_ok(
        mnt,
        r#"
import importlib.metadata as md
m = sys.argv[1]
print("version", md.version("sfpkg"), sep="\t")
print("version_other", md.version("sfother"), sep="\t")
files = md.files("sfpkg")
print("files", " ".join(sorted(str(f) for f in files)), sep="\t")
init = [f for f in files if str(f) == "sfpkg/__init__.py"][0]
print("locate", init.locate(), sep="\t")
print("read", init.read_text().splitlines()[0], sep="\t")
for ep in md.entry_points(group="console_scripts"):
    print("ep", f"{ep.name}={ep.value}", sep="\t")
d = md.distribution("sfpkg")
print("installer", repr(d.read_text("INSTALLER")), sep="\t")
print("requested", d.read_text("REQUESTED") is not None, sep="\t")
print("dists", sorted(x.metadata["Name"] for x in md.distributions(path=[m])), sep="\t")
"#,
    );
    let eps: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ep\t"))
        .collect();
    let info = kv(&lines);
    let m = mnt.display();
    assert_eq!(info["version"], "1.2.3");
    assert_eq!(info["version_other"], "2.0");
    let files: BTreeSet<&str> = info["files"].split(' ').collect();
    for f in [
        "sfpkg/__init__.py",
        "sfpkg/core.py",
        "sfpkg/data/config.json",
        "sfpkg/tool.sh",
        "sfpkg-1.2.3.dist-info/METADATA",
        "sfpkg-1.2.3.dist-info/RECORD",
    ] {
        assert!(files.contains(f), "files() lacks {f}: {files:?}");
    }
    assert_eq!(info["locate"], format!("{m}/sfpkg/__init__.py"));
    assert_eq!(info["read"], "from .core import greet");
    assert!(eps.contains("sfpkg-tool=sfpkg.cli:main"), "{eps:?}");
    assert!(eps.contains("sfother-run=sfother:main"), "{eps:?}");
    assert_eq!(info["installer"], "'sitefs\\n'");
    assert_eq!(info["requested"], "True");
    assert_eq!(info["dists"], "['sfother', 'sfpkg']");
    assert_eq!(
        fs::read_to_string(mnt.join("sfpkg-1.2.3.dist-info/INSTALLER")).unwrap(),
        "sitefs\n"
    );

    // pip (with its own site-packages, so no -S) lists exactly our dists.
    let pip = |extra: &[&str]| {
        let mut cmd = Command::new(real_python());
        cmd.args(["-m", "pip", "list", "--disable-pip-version-check", "--path"])
            .arg(mnt)
            .args(extra)
            .env_remove("PYTHONPATH")
            .current_dir(env.work());
        let out = output_within(&mut { cmd }, PROCESS_LIMIT);
        assert_success(&out);
        stdout_of(&out)
    };
    let freeze = pip(&["--format=freeze"]);
    let mut listed: Vec<&str> = freeze.lines().collect();
    listed.sort();
    assert_eq!(
        listed,
        ["sfother==2.0", "sfpkg==1.2.3"],
        "pip list:\n{freeze}"
    );
    let json = pip(&["--format=json", "-v"]);
    assert!(
        json.contains(r#""name": "sfpkg", "version": "1.2.3""#),
        "pip list json: {json}"
    );
    assert_eq!(
        json.matches(r#""installer": "sitefs""#).count(),
        2,
        "pip must report sitefs as installer of both dists: {json}"
    );
    assert!(json.contains(&format!(r#""location": "{m}""#)), "{json}");
}

// ---------------------------------------------------------------------------
// Read-only
// ---------------------------------------------------------------------------

#[test]
fn every_write_fails_with_erofs() {
    let (env, mount) = mounted_pkg_env(&[]);
    let mnt = mount.path();
    let lines = py_ok(
        mnt,
        r#"
import errno, os
m = sys.argv[1]
f = os.path.join(m, "sfpkg", "core.py")
ops = {
    "open_w": lambda: open(f, "w"),
    "open_rplus": lambda: open(f, "r+"),
    "open_append": lambda: open(f, "a"),
    "os_open_wronly": lambda: os.open(f, os.O_WRONLY),
    "create": lambda: open(os.path.join(m, "sfpkg", "new.txt"), "x"),
    "create_root": lambda: os.open(os.path.join(m, "new"), os.O_CREAT | os.O_WRONLY, 0o644),
    "create_pyc": lambda: open(os.path.join(m, "sfpkg", "__pycache__", "new.pyc"), "wb"),
    "mkdir": lambda: os.mkdir(os.path.join(m, "newdir")),
    "rename": lambda: os.rename(f, os.path.join(m, "sfpkg", "moved.py")),
    "chmod": lambda: os.chmod(f, 0o600),
    "chown": lambda: os.chown(f, 1, 1),
    "unlink": lambda: os.unlink(f),
    "rmdir": lambda: os.rmdir(os.path.join(m, "sfpkg", "data")),
    "symlink": lambda: os.symlink("x", os.path.join(m, "link")),
    "link": lambda: os.link(f, os.path.join(m, "hard")),
    "truncate": lambda: os.truncate(f, 0),
    "utime": lambda: os.utime(f, (0, 0)),
}
for name, op in ops.items():
    try:
        op()
        print(name, "SUCCEEDED", sep="\t")
    except OSError as e:
        print(name, f"{errno.errorcode.get(e.errno, e.errno)}: {e.strerror}", sep="\t")
"#,
    );
    let results = kv(&lines);
    assert_eq!(results.len(), 17, "{lines:?}");
    for (op, result) in &results {
        assert_eq!(result, "EROFS: Read-only file system", "{op} in the mount");
    }
    // Nothing changed.
    let wheel = env.wheel_path(&pkg_wheel());
    for (name, bytes) in wheel_entries(&wheel) {
        assert_eq!(fs::read(mnt.join(&name)).unwrap(), bytes, "{name}");
    }
    assert_eq!(
        fs::metadata(mnt.join("sfpkg/core.py")).unwrap().mode() & 0o7777,
        0o644
    );
    for absent in [
        "new",
        "newdir",
        "link",
        "hard",
        "sfpkg/new.txt",
        "sfpkg/moved.py",
    ] {
        assert!(!mnt.join(absent).exists(), "{absent} exists");
    }
    // And the kernel knows the mount is read-only, nosuid and nodev.
    let line = mountinfo_entries(mnt).pop().unwrap();
    let fields: Vec<&str> = line.split(' ').collect();
    let opts: BTreeSet<&str> = fields[5].split(',').collect();
    for o in ["ro", "nosuid", "nodev"] {
        assert!(opts.contains(o), "mount options lack {o}: {line}");
    }
    assert!(!opts.contains("noexec"), "{line}");
    let sep = fields.iter().position(|f| *f == "-").unwrap();
    assert!(fields[sep + 1].starts_with("fuse"), "{line}");
    assert_eq!(
        fields[sep + 2],
        env.work().join("env.toml").display().to_string(),
        "the mount source names the manifest: {line}"
    );
}

// ---------------------------------------------------------------------------
// Inodes, mtimes, statfs, readdir
// ---------------------------------------------------------------------------

#[test]
fn inodes_are_unique_per_path_and_stable() {
    let env = Env::new();
    let a = WheelBuilder::new("sfns-a", "1.0").file("sfns/a/__init__.py", "NAME = 'a'\n");
    let b = WheelBuilder::new("sfns-b", "1.0")
        .file("sfns/b/__init__.py", "NAME = 'b'\n")
        // Same bytes as in sfpkg's sibling file of another name: same
        // store object, but two paths, so two inodes.
        .file("sfns/b/same.txt", "{\"answer\": 42}\n");
    env.add(&[&pkg_wheel(), &other_wheel(), &a, &b]);
    let m = env.manifest("ino", &["sfpkg", "sfother", "sfns-a", "sfns-b"]);
    let mount = Mount::new(&m, &env.mountpoint("mnt"), &[]);
    let mnt = mount.path();

    let first = walk(mnt);
    assert!(first.len() > 20, "tree too small: {first:?}");
    let root = fs::metadata(mnt).unwrap();
    let mut by_ino: HashMap<u64, &Path> = HashMap::new();
    by_ino.insert(root.ino(), Path::new(""));
    for (p, md) in &first {
        assert_eq!(md.dev(), root.dev(), "{} on another device", p.display());
        if let Some(other) = by_ino.insert(md.ino(), p) {
            panic!(
                "{} and {} share inode {}",
                other.display(),
                p.display(),
                md.ino()
            );
        }
    }
    // Stat again (a second walk and a separate process): same numbers.
    let second = walk(mnt);
    let inos = |w: &[(PathBuf, fs::Metadata)]| -> Vec<(PathBuf, u64)> {
        w.iter().map(|(p, m)| (p.clone(), m.ino())).collect()
    };
    assert_eq!(inos(&first), inos(&second));
    assert_eq!(fs::metadata(mnt).unwrap().ino(), root.ino());
    let from_python = kv(&py_ok(
        mnt,
        r#"
import os
for p in ("sfpkg/__init__.py", "sfpkg/data/config.json", "sfns/b/same.txt", "sfns"):
    print(p, os.stat(os.path.join(sys.argv[1], p)).st_ino, sep="\t")
"#,
    ));
    for (p, ino) in &from_python {
        let (_, md) = first.iter().find(|(q, _)| q == Path::new(p)).unwrap();
        assert_eq!(ino, &md.ino().to_string(), "{p}");
    }
}

#[test]
fn statfs_counts_blocks_and_files() {
    let (_env, mount) = mounted_pkg_env(&[]);
    let mnt = mount.path();
    let tree = walk(mnt);
    let total_bytes: u64 = tree
        .iter()
        .filter(|(_, m)| m.is_file())
        .map(|(_, m)| m.len())
        .sum();
    let info = kv(&py_ok(
        mnt,
        r#"
import os
s = os.statvfs(sys.argv[1])
for k in ("f_blocks", "f_files", "f_frsize", "f_bsize", "f_namemax"):
    print(k, getattr(s, k), sep="\t")
"#,
    ));
    let n = |k: &str| -> u64 { info[k].parse().unwrap() };
    assert!(n("f_blocks") > 0, "{info:?}");
    assert!(n("f_files") > 0, "{info:?}");
    assert!(
        n("f_blocks") * n("f_frsize") >= total_bytes,
        "{info:?} cannot hold {total_bytes} bytes"
    );
    assert_eq!(
        n("f_files"),
        tree.len() as u64 + 1,
        "f_files should count every file and directory plus the root"
    );
    assert!(n("f_namemax") >= 255, "{info:?}");
}

#[test]
fn directory_mtime_is_stable_across_remounts_and_follows_the_manifest() {
    let env = Env::new();
    env.add(&[&pkg_wheel()]);
    let m = env.manifest("mt", &["sfpkg"]);
    let mnt = env.mountpoint("mnt");
    let dirs = [
        "",
        "sfpkg",
        "sfpkg/data",
        "sfpkg/__pycache__",
        "sfpkg-1.2.3.dist-info",
    ];
    let mtimes = || -> Vec<SystemTime> {
        let mount = Mount::new(&m, &mnt, &[]);
        let t = dirs
            .iter()
            .map(|d| {
                fs::metadata(mount.path().join(d))
                    .unwrap()
                    .modified()
                    .unwrap()
            })
            .collect();
        drop(mount);
        assert!(!is_mounted(&mnt));
        t
    };
    let manifest_mtime = || fs::metadata(&m).unwrap().modified().unwrap();

    let first = mtimes();
    assert!(
        first.iter().all(|t| *t == first[0]),
        "all directories share the env's mtime: {first:?}"
    );
    assert_eq!(first[0], manifest_mtime());
    assert_eq!(mtimes(), first, "remounting the same manifest");

    // Rewrite the manifest (same content, new mtime): directories change.
    let text = fs::read(&m).unwrap();
    fs::write(&m, text).unwrap();
    let new_time = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options()
        .write(true)
        .open(&m)
        .unwrap()
        .set_modified(new_time)
        .unwrap();
    let after = mtimes();
    assert_ne!(
        after[0], first[0],
        "manifest rewritten, directory mtime unchanged"
    );
    assert!(after.iter().all(|t| *t == new_time), "{after:?}");
}

#[test]
fn a_directory_of_5000_entries_lists_completely() {
    let env = Env::new();
    let mut w = WheelBuilder::new("sfbig", "1.0").file("sfbig/__init__.py", "");
    let expected: Vec<String> = (0..5000)
        .map(|i| format!("entry-{i:05}-{}.txt", "x".repeat(i % 40)))
        .collect();
    for (i, name) in expected.iter().enumerate() {
        w = w.file(&format!("sfbig/many/{name}"), format!("{i}\n"));
    }
    env.add(&[&w]);
    let m = env.manifest("big", &["sfbig"]);
    let mount = Mount::new(&m, &env.mountpoint("mnt"), &[]);
    let dir = mount.path().join("sfbig/many");

    // Twice, so the second listing may come from the kernel's dir cache.
    for round in 0..2 {
        let out = py_ok(
            mount.path(),
            "import os\nfor n in os.listdir(os.path.join(sys.argv[1], 'sfbig', 'many')): print(n)",
        );
        assert_eq!(out.len(), 5000, "round {round}: os.listdir count");
        let mut sorted = out.clone();
        sorted.sort();
        assert_eq!(
            sorted, expected,
            "round {round}: names (sorted, duplicates kept)"
        );
    }
    let mut names = list_dir(&dir);
    names.sort();
    assert_eq!(names, expected);
    for i in [0usize, 1234, 4999] {
        assert_eq!(
            fs::read_to_string(dir.join(&expected[i])).unwrap(),
            format!("{i}\n")
        );
    }
}

// ---------------------------------------------------------------------------
// Conflicts and bad input
// ---------------------------------------------------------------------------

#[test]
fn conflicting_files_fail_unless_last_wins() {
    let env = Env::new();
    let a = WheelBuilder::new("sfconfa", "1.0")
        .file("sfshared/data.txt", "from a\n")
        .file("sfshared/mod.py", "WHO = 'a'\n")
        .file("sfconfa_only/__init__.py", "");
    let b = WheelBuilder::new("sfconfb", "1.0")
        .file("sfshared/data.txt", "from b\n")
        .file("sfshared/mod.py", "WHO = 'b'\n")
        .file("sfconfb_only/__init__.py", "");
    env.add(&[&a, &b]);
    let m = env.manifest("conflict", &["sfconfa", "sfconfb"]);
    let mnt = env.mountpoint("mnt");

    let check = run_sitefs([OsStr::new("manifest"), OsStr::new("check"), m.as_os_str()]);
    let mount_out = {
        let _guard = Mount { mnt: mnt.clone() };
        try_mount(&m, &mnt, &[])
    };
    for (what, out) in [("manifest check", &check), ("mount", &mount_out)] {
        let e = one_error_line(out);
        assert!(e.contains("conflict"), "{what}: {e}");
        assert!(
            e.contains("sfshared/data.txt") || e.contains("sfshared/mod.py"),
            "{what} must name the path: {e}"
        );
        assert!(
            e.contains("sfconfa 1.0") && e.contains("sfconfb 1.0"),
            "{what} must name both dists: {e}"
        );
        assert!(
            e.contains("last-wins"),
            "{what} should name the way out: {e}"
        );
    }
    assert!(!is_mounted(&mnt), "failed mount left a mount");
    assert!(
        processes_with_arg(mnt.as_os_str()).is_empty(),
        "failed mount left a process"
    );

    // last-wins: the later dist's files (and their pycs) are served.
    let text = fs::read_to_string(&m).unwrap();
    fs::write(&m, with_top_level(&text, "on_conflict = \"last-wins\"")).unwrap();
    let check = run_sitefs([OsStr::new("manifest"), OsStr::new("check"), m.as_os_str()]);
    assert_success(&check);
    let mount = Mount::new(&m, &mnt, &[]);
    assert_eq!(
        fs::read_to_string(mnt.join("sfshared/data.txt")).unwrap(),
        "from b\n"
    );
    assert!(mnt.join("sfconfa_only/__init__.py").is_file());
    assert!(mnt.join("sfconfb_only/__init__.py").is_file());
    let out = py_at(
        mount.path(),
        &["-v", "--check-hash-based-pycs", "always"],
        "import sfshared.mod\nprint(sfshared.mod.WHO)",
    );
    assert_success(&out);
    assert_eq!(stdout_of(&out), "b\n");
    let pyc = format!(
        "{}/sfshared/__pycache__/mod.{}.pyc",
        mnt.display(),
        cache_tag()
    );
    assert!(
        stderr_of(&out).contains(&format!(
            "# {pyc} matches {}/sfshared/mod.py",
            mnt.display()
        )),
        "the served pyc must be the winner's: {}",
        stderr_of(&out)
    );
}

#[test]
fn bad_manifests_fail_with_one_line_and_mount_nothing() {
    let env = Env::new();
    let ids = env.add(&[&pkg_wheel()]);
    let good_path = env.manifest("good", &["sfpkg"]);
    let good = fs::read_to_string(&good_path).unwrap();
    let id = &ids[0];
    let tag = cache_tag();
    assert!(good.contains(&format!("id = \"{id}\"")), "{good}");
    assert!(good.contains(&format!("cache_tag = \"{tag}\"")), "{good}");
    let mnt = env.mountpoint("mnt");

    // A store without bytecode for the dist.
    let nobc = TempStore::new();
    let out = nobc.add(&[env.wheel_path(&pkg_wheel())]);
    assert_success(&out);

    let store_line = good
        .lines()
        .find(|l| l.starts_with("store = "))
        .unwrap()
        .to_string();
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "unknown key",
            with_top_level(&good, "frobnicate = 1"),
            vec!["unknown field".into(), "frobnicate".into(), "line ".into()],
        ),
        (
            "dist missing from the store",
            good.replace(id.as_str(), "sfpkg-1.2.3-0123456789abcdef"),
            vec![
                "sfpkg 1.2.3".into(),
                "sfpkg-1.2.3-0123456789abcdef".into(),
                "not in the store".into(),
                "sitefs store add".into(),
            ],
        ),
        (
            "id that is not a store id",
            good.replace(id.as_str(), "../../etc"),
            vec!["\"../../etc\" is not a store id".into()],
        ),
        (
            "cache tag without bytecode",
            good.replace(&format!("\"{tag}\""), "\"cpython-399\""),
            vec![
                "no bytecode for cpython-399".into(),
                "sfpkg".into(),
                "sitefs store compile".into(),
            ],
        ),
        (
            "store without bytecode for the interpreter",
            good.replace(
                &store_line,
                &format!("store = {:?}", nobc.path.display().to_string()),
            ),
            vec![
                format!("no bytecode for {tag}"),
                "sitefs store compile".into(),
            ],
        ),
        (
            "unsupported format version",
            good.replacen("version = 1\n", "version = 2\n", 1),
            vec!["format version 2 is not supported".into()],
        ),
        (
            "missing store",
            good.replace(&store_line, "store = \"/nonexistent/sitefs-store\""),
            vec!["/nonexistent/sitefs-store".into(), "does not exist".into()],
        ),
        (
            "dist listed twice",
            {
                let dist = &good[good.find("[[dist]]").unwrap()..];
                format!("{good}\n{dist}")
            },
            vec!["listed twice".into()],
        ),
        (
            "not TOML",
            "version = 1\nstore = [\n".to_string(),
            vec!["line ".into()],
        ),
    ];
    for (i, (what, text, wanted)) in cases.iter().enumerate() {
        assert_ne!(text, &good, "{what}: the case did not change the manifest");
        let path = env.work().join(format!("bad{i}.toml"));
        fs::write(&path, text).unwrap();
        let check = run_sitefs([
            OsStr::new("manifest"),
            OsStr::new("check"),
            path.as_os_str(),
        ]);
        let mount_out = {
            let _guard = Mount { mnt: mnt.clone() };
            try_mount(&path, &mnt, &[])
        };
        for (cmd, out) in [("manifest check", &check), ("mount", &mount_out)] {
            let e = one_error_line(out);
            assert!(
                e.starts_with(&format!("error: manifest {}", path.display())),
                "{what} / {cmd}: should name the manifest: {e}"
            );
            for w in wanted {
                assert!(e.contains(w.as_str()), "{what} / {cmd}: no {w:?} in: {e}");
            }
        }
        assert!(!is_mounted(&mnt), "{what}: something got mounted");
        assert_eq!(fs::read_dir(&mnt).unwrap().count(), 0, "{what}");
    }
    assert!(processes_with_arg(mnt.as_os_str()).is_empty());
    // The good manifest still mounts on the same mountpoint.
    let mount = Mount::new(&good_path, &mnt, &[]);
    assert!(mount.path().join("sfpkg/__init__.py").is_file());
}

#[test]
fn bad_mountpoints_fail_with_one_line() {
    let env = Env::new();
    env.add(&[&pkg_wheel()]);
    let m = env.manifest("env", &["sfpkg"]);

    let missing = env.work().join("no-such-dir");
    let e = one_error_line(&try_mount(&m, &missing, &[]));
    assert!(
        e.contains("does not exist") && e.contains("mkdir -p"),
        "{e}"
    );
    assert!(!missing.exists());

    let file = env.work().join("a-file");
    fs::write(&file, "").unwrap();
    let e = one_error_line(&try_mount(&m, &file, &[]));
    assert!(e.contains("is not a directory"), "{e}");

    let mnt = env.mountpoint("mnt");
    let mount = Mount::new(&m, &mnt, &[]);
    let again = try_mount(&m, &mnt, &[]);
    let e = one_error_line(&again);
    assert!(
        e.contains("already a mount point") && e.contains("sitefs umount"),
        "{e}"
    );
    assert_eq!(mountinfo_entries(&mnt).len(), 1, "stacked a second mount");
    // The first mount is unharmed.
    assert_eq!(
        py_ok(mount.path(), "import sfpkg; print(sfpkg.VALUE)"),
        ["sfpkg-value"]
    );

    // Unknown and forbidden options are refused before mounting.
    let other = env.mountpoint("mnt2");
    for (opt, wanted) in [
        ("bogus", "unknown mount option"),
        ("uring=maybe", "unknown mount option"),
        ("rw", "read-only"),
        ("noexec", "extension modules"),
    ] {
        let e = one_error_line(&try_mount(&m, &other, &[opt]));
        assert!(e.contains(wanted), "-o {opt}: {e}");
        assert!(!is_mounted(&other));
    }
}

// ---------------------------------------------------------------------------
// Daemon lifecycle
// ---------------------------------------------------------------------------

/// Waits until `mnt` is gone from mountinfo and is a plain, empty,
/// stat-able directory again (no ENOTCONN).
fn wait_until_cleanly_unmounted(mnt: &Path, why: &str) {
    wait_for(
        &format!("{} to be unmounted after {why}", mnt.display()),
        || !is_mounted(mnt),
    );
    let md = fs::metadata(mnt).unwrap_or_else(|e| {
        panic!(
            "stat {} after {why}: {e} (a dead mount is left)",
            mnt.display()
        )
    });
    assert!(md.is_dir());
    assert_eq!(fs::read_dir(mnt).unwrap().count(), 0);
}

#[test]
fn a_killed_daemon_leaves_no_dead_mount() {
    let (env, mount) = mounted_pkg_env(&[]);
    let mnt = mount.path().to_path_buf();
    assert_eq!(
        py_ok(&mnt, "import sfpkg; print(sfpkg.VALUE)"),
        ["sfpkg-value"]
    );
    let pid = daemon_pid(&mnt);
    kill(pid, libc::SIGKILL);
    wait_for("the killed daemon to die", || !process_alive(pid));
    wait_until_cleanly_unmounted(&mnt, "SIGKILL of the daemon");
    // The mountpoint is usable again.
    let again = Mount::new(&env.work().join("env.toml"), &mnt, &[]);
    assert_eq!(
        py_ok(again.path(), "import sfother; print(sfother.WHO)"),
        ["other"]
    );
}

/// A daemon that stops answering (SIGSTOP, over the default transport,
/// where a waiting reader is deaf even to SIGKILL) costs the reader a
/// bounded wait: after `-o stuck=SECS` without running while a request
/// waits, the watchdog ends the daemon, the reader gets an error, and the
/// mount is cleared like a dead one's.
#[test]
fn a_stopped_daemon_is_ended_and_its_mount_cleared_after_the_stuck_timeout() {
    let (_env, mount) = mounted_pkg_env(&["stuck=2"]);
    let mnt = mount.path().to_path_buf();
    let pid = daemon_pid(&mnt);
    kill(pid, libc::SIGSTOP);
    // Nothing read this path yet: the kernel has to ask the daemon.
    let start = Instant::now();
    let out = output_within(
        Command::new("cat").arg(mnt.join("sfpkg/core.py")),
        Duration::from_secs(120),
    );
    let waited = start.elapsed();
    assert!(
        !out.status.success(),
        "a read of a stuck mount succeeded: {}",
        stdout_of(&out)
    );
    assert!(
        waited < Duration::from_secs(60),
        "the reader waited {waited:?} for a daemon stuck for 2 s"
    );
    wait_for("the stuck daemon to be ended", || !process_alive(pid));
    wait_until_cleanly_unmounted(&mnt, "the stuck daemon was ended");
}

#[test]
fn bad_stuck_option_is_refused() {
    let env = Env::new();
    env.add(&[&pkg_wheel()]);
    let m = env.manifest("env", &["sfpkg"]);
    let mnt = env.mountpoint("mnt");
    for bad in ["stuck=0", "stuck=x", "stuck=99999999"] {
        let out = sitefs_command()
            .arg("mount")
            .arg(&m)
            .arg(&mnt)
            .args(["-o", bad])
            .output()
            .unwrap();
        let err = failed_stderr(&out);
        assert!(err.contains("stuck must be"), "{bad}: {err}");
        assert!(!is_mounted(&mnt));
    }
}

#[test]
fn sigterm_unmounts_and_the_daemon_exits() {
    let (_env, mount) = mounted_pkg_env(&[]);
    let mnt = mount.path();
    let pid = daemon_pid(mnt);
    kill(pid, libc::SIGTERM);
    wait_until_cleanly_unmounted(mnt, "SIGTERM");
    wait_for("the daemon to exit after SIGTERM", || !process_alive(pid));
    wait_for("the watchdog to exit", || {
        processes_with_arg(mnt.as_os_str()).is_empty()
    });
}

#[test]
fn fusermount3_unmounts_and_the_daemon_exits() {
    let (_env, mount) = mounted_pkg_env(&[]);
    let mnt = mount.path();
    let pid = daemon_pid(mnt);
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(mnt)
        .output()
        .unwrap();
    assert_success(&out);
    wait_until_cleanly_unmounted(mnt, "fusermount3 -u");
    wait_for("the daemon to exit after fusermount3 -u", || {
        !process_alive(pid)
    });
    wait_for("the watchdog to exit", || {
        processes_with_arg(mnt.as_os_str()).is_empty()
    });
}

/// Every path of a mount with what a reader sees of it: inode, mode,
/// size, mtime, and the bytes or link target.
fn served_tree(mnt: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(mnt)
        .into_iter()
        .map(|(rel, md)| {
            let full = mnt.join(&rel);
            let body = if md.is_file() {
                format!("{:?}", fs::read(&full).unwrap())
            } else if md.is_symlink() {
                fs::read_link(&full).unwrap().display().to_string()
            } else {
                String::new()
            };
            format!(
                "{} ino={} mode={:o} size={} mtime={}.{} {body}",
                rel.display(),
                md.ino(),
                md.mode(),
                md.size(),
                md.mtime(),
                md.mtime_nsec()
            )
        })
        .collect();
    out.sort();
    out
}

/// `sitefs mount -f -v` of `manifest` on `mnt`, logging to `log`; returns
/// once the mount is in mountinfo.
fn foreground_mount(manifest: &Path, mnt: &Path, opts: &[&str], log: &Path) -> std::process::Child {
    let mut cmd = sitefs_command();
    cmd.args(["mount", "-f", "-v"]).arg(manifest).arg(mnt);
    for o in opts {
        cmd.args(["-o", o]);
    }
    let daemon = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    wait_for("the foreground mount", || is_mounted(mnt));
    daemon
}

/// A remount of an unchanged manifest loads the view's image, which the
/// first mount wrote once live, and serves the very same tree; a damaged
/// image is not trusted: the view is built again and the image rewritten.
#[test]
fn a_remount_loads_the_view_image_and_a_damaged_one_is_rebuilt() {
    let (env, mount) = mounted_pkg_env(&[]);
    let mnt = mount.path().to_path_buf();
    let manifest = env.work().join("env.toml");
    let image = the_file_in(&env.store.path.join("views"));
    let built = served_tree(&mnt);
    drop(mount);

    let log = env.work().join("foreground.log");
    let _guard = Mount { mnt: mnt.clone() };
    let mut daemon = foreground_mount(&manifest, &mnt, &[], &log);
    let loaded = served_tree(&mnt);
    assert_success(&run_sitefs([OsStr::new("umount"), mnt.as_os_str()]));
    assert!(daemon.wait().unwrap().success());
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("loaded from {}", image.display())),
        "the remount did not load {}:\n{text}",
        image.display()
    );
    assert_eq!(loaded, built);

    let mut damaged = fs::read(&image).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x01;
    fs::write(&image, &damaged).unwrap();
    let again = Mount::new(&manifest, &mnt, &[]);
    assert_eq!(served_tree(again.path()), built);
    wait_for("the damaged image to be rewritten", || {
        fs::read(&image).is_ok_and(|b| b != damaged)
    });
}

/// After someone else unmounts it, the daemon must leave its mountpoint
/// alone: the path may already hold a newer mount (a remount of the same
/// env) or be an autofs trigger that a lookup would mount again.
#[test]
fn a_daemon_unmounted_from_outside_leaves_a_newer_mount_on_its_path() {
    let (_env, mount) = mounted_pkg_env(&[]);
    let mnt = mount.path();
    let pid = daemon_pid(mnt);
    // Hold the daemon still, so the newer mount is in place before it sees
    // its session end.
    kill(pid, libc::SIGSTOP);
    // umount(2) itself, as umount(8) would stat the stopped mount first.
    let c = std::ffi::CString::new(mnt.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: c is a valid C string.
    let unmounted = unsafe { libc::umount2(c.as_ptr(), 0) } == 0;
    let unmount_error = std::io::Error::last_os_error();
    let newer = Command::new("mount")
        .args(["-t", "tmpfs", "sitefs-test-newer"])
        .arg(mnt)
        .output()
        .unwrap();
    kill(pid, libc::SIGCONT);
    assert!(unmounted, "umount {}: {unmount_error}", mnt.display());
    assert_success(&newer);
    wait_for("the unmounted daemon to exit", || !process_alive(pid));
    wait_for("its watchdog to exit", || {
        processes_with_arg(mnt.as_os_str()).is_empty()
    });
    let entries = mountinfo_entries(mnt);
    let _ = Command::new("umount").arg(mnt).status();
    assert!(
        entries.len() == 1 && entries[0].contains(" - tmpfs sitefs-test-newer "),
        "the old daemon touched the newer mount on {}: {entries:?}",
        mnt.display()
    );
}

#[test]
fn sitefs_umount_unmounts_refuses_when_busy_and_reports_not_mounted() {
    let (_env, mount) = mounted_pkg_env(&[]);
    let mnt = mount.path();
    let pid = daemon_pid(mnt);

    // A process working inside the mount makes it busy.
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .current_dir(mnt.join("sfpkg"))
        .spawn()
        .unwrap();
    let busy = run_sitefs([OsStr::new("umount"), mnt.as_os_str()]);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let e = one_error_line(&busy);
    assert!(e.contains("busy"), "{e}");
    assert!(is_mounted(mnt), "a refused umount must leave the mount");
    assert!(process_alive(pid));

    let out = run_sitefs([OsStr::new("umount"), mnt.as_os_str()]);
    assert_success(&out);
    assert!(!is_mounted(mnt), "sitefs umount returned before unmounting");
    wait_until_cleanly_unmounted(mnt, "sitefs umount");
    wait_for("the daemon to exit after sitefs umount", || {
        !process_alive(pid)
    });

    let e = one_error_line(&run_sitefs([OsStr::new("umount"), mnt.as_os_str()]));
    assert!(e.contains("is not mounted"), "{e}");
}

#[test]
fn two_mounts_at_once_each_see_their_own_dists() {
    let env = Env::new();
    env.add(&[&pkg_wheel(), &other_wheel()]);
    let ma = env.manifest("a", &["sfpkg"]);
    let mb = env.manifest("b", &["sfother"]);
    let a = Mount::new(&ma, &env.mountpoint("mnt-a"), &[]);
    let b = Mount::new(&mb, &env.mountpoint("mnt-b"), &[]);

    let probe = r#"
import importlib.metadata as md
for name in ("sfpkg", "sfother"):
    try:
        mod = __import__(name)
        print(name, mod.__file__, sep="\t")
    except ModuleNotFoundError:
        print(name, "missing", sep="\t")
print("dists", sorted(d.metadata["Name"] for d in md.distributions(path=[sys.argv[1]])), sep="\t")
"#;
    let ia = kv(&py_ok(a.path(), probe));
    let ib = kv(&py_ok(b.path(), probe));
    assert_eq!(
        ia["sfpkg"],
        format!("{}/sfpkg/__init__.py", a.path().display())
    );
    assert_eq!(ia["sfother"], "missing");
    assert_eq!(ia["dists"], "['sfpkg']");
    assert_eq!(ib["sfpkg"], "missing");
    assert_eq!(
        ib["sfother"],
        format!("{}/sfother/__init__.py", b.path().display())
    );
    assert_eq!(ib["dists"], "['sfother']");
    assert_ne!(daemon_pid(a.path()), daemon_pid(b.path()));

    // Unmounting one leaves the other serving.
    drop(b);
    assert_eq!(
        py_ok(a.path(), "import sfpkg; print(sfpkg.VALUE)"),
        ["sfpkg-value"]
    );
}

// ---------------------------------------------------------------------------
// Open modes
// ---------------------------------------------------------------------------

/// Mounts pkg + ext + blob with `-o open=<mode>` (and `extra` options),
/// imports the extension and compares every byte served with the wheels
/// and the store's pycs. Returns the daemon's open descriptors into the
/// store's objects after everything was read, and its thread names.
fn serve_everything(mode: &str, extra: &[&str]) -> (Vec<PathBuf>, Vec<String>) {
    let env = Env::new();
    let ext = ext_wheel(env.work());
    let wheels = [pkg_wheel(), ext, blob_wheel()];
    env.add(&wheels.iter().collect::<Vec<_>>());
    let m = env.manifest("open", &["sfpkg", "sfext", "sfblob"]);
    let opt = format!("open={mode}");
    let opts: Vec<&str> = [opt.as_str()]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let mount = Mount::new(&m, &env.mountpoint("mnt"), &opts);
    let mnt = mount.path();

    let info = kv(&py_ok(
        mnt,
        r#"
import sfext, sfpkg, sfblob, os
print("add", sfext.add(2, 3), sep="\t")
print("ext", sfext.__file__, sep="\t")
print("greet", sfpkg.greet("x"), sep="\t")
print("blob", os.path.getsize(os.path.join(os.path.dirname(sfblob.__file__), "blob.bin")) == sfblob.SIZE, sep="\t")
"#,
    ));
    assert_eq!(info["add"], "5", "{mode}");
    assert!(
        info["ext"].starts_with(&mnt.display().to_string()),
        "{mode}: {info:?}"
    );
    assert_eq!(info["greet"], "hello x");
    assert_eq!(info["blob"], "True");

    // Every file of every wheel, byte for byte.
    let mut n = 0;
    for w in &wheels {
        for (name, bytes) in wheel_entries(&env.wheel_path(w)) {
            let served =
                fs::read(mnt.join(&name)).unwrap_or_else(|e| panic!("{mode}: read {name}: {e}"));
            assert!(
                served == bytes,
                "{mode}: {name} differs from the wheel ({} vs {} bytes)",
                served.len(),
                bytes.len()
            );
            assert_eq!(
                fs::metadata(mnt.join(&name)).unwrap().len(),
                bytes.len() as u64
            );
            n += 1;
        }
    }
    assert!(n >= 12, "{n} files compared");

    // Reads at odd offsets of the large file.
    let blob = blob_wheel();
    let expected = wheel_entries(&env.wheel_path(&blob))
        .into_iter()
        .find(|(name, _)| name == "sfblob/blob.bin")
        .unwrap()
        .1;
    let f = fs::File::open(mnt.join("sfblob/blob.bin")).unwrap();
    for (off, len) in [
        (0usize, 1usize),
        (4095, 2),
        (1_000_003, 70_000),
        (expected.len() - 5, 5),
    ] {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert!(
            buf == expected[off..off + len],
            "{mode}: pread at {off}+{len}"
        );
    }
    let mut past_end = [0u8; 8];
    assert_eq!(f.read_at(&mut past_end, expected.len() as u64).unwrap(), 0);

    // Every pyc is the store's pyc of its source.
    let mut pycs = 0;
    for (rel, md) in walk(mnt) {
        let name = rel.to_str().unwrap();
        if !md.is_file() || !name.ends_with(".py") {
            continue;
        }
        let src = fs::read(mnt.join(&rel)).unwrap();
        let hex = hex::encode(Sha256::digest(&src));
        let stem = rel.file_stem().unwrap().to_str().unwrap();
        let pyc_rel = rel
            .parent()
            .unwrap()
            .join("__pycache__")
            .join(format!("{stem}.{}.pyc", cache_tag()));
        let store_pyc = env
            .store
            .path
            .join("bytecode")
            .join(cache_tag())
            .join(&hex[..2])
            .join(format!("{hex}.pyc"));
        assert!(
            fs::read(mnt.join(&pyc_rel)).unwrap() == fs::read(&store_pyc).unwrap(),
            "{mode}: {} differs from {}",
            pyc_rel.display(),
            store_pyc.display()
        );
        pycs += 1;
    }
    assert_eq!(pycs, 4, "pycs compared (sfpkg: 3 modules, sfblob: 1)");
    assert_eq!(
        fs::read(mnt.join("sfpkg-1.2.3.dist-info/INSTALLER")).unwrap(),
        b"sitefs\n"
    );

    let objects = env.store.path.join("objects");
    let pid = daemon_pid(mnt);
    let store_fds = fd_targets(pid)
        .into_iter()
        .filter(|t| t.starts_with(&objects) || t.starts_with(env.store.path.join("bytecode")))
        .collect();
    (store_fds, thread_names(pid))
}

fn thread_names(pid: i32) -> Vec<String> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .map(|t| fs::read_to_string(t.unwrap().path().join("comm")).unwrap_or_default())
        .map(|c| c.trim().to_string())
        .collect()
}

fn serve_everything_with_open_mode(mode: &str) -> Vec<PathBuf> {
    serve_everything(mode, &[]).0
}

/// The kernel switch for FUSE over io_uring (`.ci/run` turns it on).
const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

/// Whether this kernel serves FUSE over io_uring; as root, turns the
/// switch on (it is off by default). Fails in CI, which must have it.
fn io_uring_available() -> bool {
    let on = match fs::read_to_string(ENABLE_URING) {
        Ok(v) if v.trim() == "Y" => true,
        Ok(_) => fs::write(ENABLE_URING, "Y").is_ok(),
        Err(_) => false,
    };
    if !on {
        cannot_run(
            "FUSE over io_uring",
            &format!("{ENABLE_URING} is missing or not writable"),
        );
    }
    on
}

#[test]
fn io_uring_transport_serves_exact_bytes_in_both_open_modes() {
    if !io_uring_available() {
        return;
    }
    for mode in ["cached", "passthrough"] {
        let (store_fds, threads) = serve_everything(mode, &["uring=on"]);
        let queues = threads
            .iter()
            .filter(|t| t.starts_with("sitefs-uring-"))
            .count();
        assert!(
            queues >= 1,
            "{mode}: no io_uring queue threads: {threads:?}"
        );
        // Passthrough opens come over io_uring too and get backing files.
        assert_eq!(
            store_fds.is_empty(),
            mode == "passthrough",
            "{mode}: {store_fds:?}"
        );
    }
}

/// `-o uring=auto` (the default) must serve over io_uring wherever the
/// kernel switch is on. fuser's master (f39068e) makes asking the kernel
/// for it fail, which `uring=auto` takes as "not offered": an update of
/// fuser carrying that would switch io_uring off without a word (which is
/// why Cargo.toml pins fuser exactly). Checked as a user can: the queue
/// threads `ps -T` lists, and the transport `sitefs -v mount -f` reports.
#[test]
fn uring_auto_serves_over_io_uring_when_the_kernel_switch_is_on() {
    if !io_uring_available() {
        return;
    }
    let (env, mount) = mounted_pkg_env(&["uring=auto"]);
    let mnt = mount.path().to_path_buf();
    let threads = thread_names(daemon_pid(&mnt));
    assert!(
        threads.iter().any(|t| t.starts_with("sitefs-uring-")),
        "uring=auto with {ENABLE_URING} = Y started no io_uring queue threads: {threads:?}"
    );
    drop(mount);

    let log = env.work().join("foreground.log");
    let _guard = Mount { mnt: mnt.clone() };
    let manifest = env.work().join("env.toml");
    let mut daemon = foreground_mount(&manifest, &mnt, &["uring=auto"], &log);
    assert!(mnt.join("sfpkg").is_dir());
    assert_success(&run_sitefs([OsStr::new("umount"), mnt.as_os_str()]));
    assert!(daemon.wait().unwrap().success());
    let text = fs::read_to_string(&log).unwrap();
    let mounted = text
        .lines()
        .find(|l| l.contains(" on ") && l.contains("mounted "));
    assert!(
        mounted.is_some_and(|l| l.ends_with(" over io_uring")),
        "the daemon did not report serving over io_uring:\n{text}"
    );
}

/// An idle mount's io_uring queue threads wait in `io_uring_enter`, which
/// the kernel counts as iowait unless asked not to (Linux >= 6.15): with
/// that bug each parked thread is one of /proc/stat's `procs_blocked` at
/// every instant, and the host shows 100 % iowait and full IO pressure.
#[test]
fn an_idle_io_uring_mount_is_not_iowait() {
    if !io_uring_available() {
        return;
    }
    let (_env, mount) = mounted_pkg_env(&["uring=on"]);
    let queues = thread_names(daemon_pid(mount.path()))
        .iter()
        .filter(|t| t.starts_with("sitefs-uring-"))
        .count();
    assert!(queues >= 1, "no io_uring queue threads");
    // Other tests' processes may block on I/O now and then; the queue
    // threads of this mount, parked the whole second, would never leave.
    let fewest = (0..100)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            procs_blocked()
        })
        .min()
        .unwrap();
    assert!(
        fewest < queues,
        "{fewest} tasks in iowait at every sample of a second, with {queues} idle queue threads"
    );
}

/// Tasks in iowait right now (`procs_blocked` in /proc/stat).
fn procs_blocked() -> usize {
    let stat = fs::read_to_string("/proc/stat").unwrap();
    let line = stat
        .lines()
        .find(|l| l.starts_with("procs_blocked "))
        .unwrap();
    line["procs_blocked ".len()..].trim().parse().unwrap()
}

#[test]
fn dev_fuse_transport_serves_exact_bytes() {
    let (store_fds, threads) = serve_everything("cached", &["uring=off"]);
    assert!(
        !store_fds.is_empty(),
        "cached mode reads through the daemon"
    );
    assert!(
        !threads.iter().any(|t| t.starts_with("sitefs-uring-")),
        "uring=off still started io_uring queues: {threads:?}"
    );
}

#[test]
fn open_mode_cached_serves_exact_bytes() {
    let store_fds = serve_everything_with_open_mode("cached");
    assert!(
        !store_fds.is_empty(),
        "cached mode reads through the daemon, which should hold store files open"
    );
}

#[test]
fn open_mode_passthrough_serves_exact_bytes() {
    let store_fds = serve_everything_with_open_mode("passthrough");
    assert!(
        store_fds.is_empty(),
        "passthrough: reads should bypass the daemon, but it holds store files open: {store_fds:?}"
    );
}
