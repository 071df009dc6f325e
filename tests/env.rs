//! End-to-end tests of `sitefs env`: wheels built here, a real store in a
//! temporary directory, real venvs whose site-packages is a real FUSE
//! mount, and real python3 (and pip) processes using them.
//!
//! Every venv is owned by a [`Venv`] guard, created *before* the command
//! that may mount it, that on drop (also when the test panics) runs
//! `sitefs env rm`, then `umount -l` if the mount is still there. Anything
//! asynchronous is polled with a deadline, never slept on. Each test has
//! its own temporary directory and store, so tests run in parallel.
//!
//! The differential tests compare against a venv made by CPython's own
//! `python -m venv --without-pip` and populated by pip 23.2.1 (the wheel
//! CPython bundles for `ensurepip`, run straight from the wheel, which is
//! how pip bootstraps itself), installing the same wheels with
//! `--no-index --no-deps --find-links` (so pip writes no direct_url.json).

mod common;

use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

// ---------------------------------------------------------------------------
// Trees: snapshots and differential comparison
// ---------------------------------------------------------------------------

/// One path of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Dir { mode: u32 },
    File { mode: u32, bytes: Vec<u8> },
    Link(PathBuf),
}

/// Most entries a snapshot may hold before a readdir is taken to loop.
const MAX_ENTRIES: usize = 50_000;

/// Every path below `root` (relative, `/`-separated) with its type, mode
/// and content; symlinks are not followed. Descends into mounts.
fn snapshot(root: &Path) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display())) {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(&p).unwrap();
            let item = if md.file_type().is_symlink() {
                Item::Link(fs::read_link(&p).unwrap())
            } else if md.is_dir() {
                stack.push(p.clone());
                Item::Dir {
                    mode: md.mode() & 0o7777,
                }
            } else {
                Item::File {
                    mode: md.mode() & 0o7777,
                    bytes: fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())),
                }
            };
            out.insert(rel, item);
            assert!(
                out.len() <= MAX_ENTRIES,
                "{} has too many entries (looping readdir?)",
                root.display()
            );
        }
    }
    out
}

fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if !from.is_empty() && haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// A readable list of the differences between two snapshots.
fn differences(
    a_name: &str,
    a: &BTreeMap<String, Item>,
    b_name: &str,
    b: &BTreeMap<String, Item>,
) -> Vec<String> {
    let show = |i: &Item| match i {
        Item::Dir { mode } => format!("dir {mode:o}"),
        Item::Link(t) => format!("symlink -> {}", t.display()),
        Item::File { mode, bytes } => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            format!("file {mode:o}, {} bytes: {text:?}", bytes.len())
        }
    };
    let mut out = Vec::new();
    for k in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => out.push(format!(
                "{k}:\n    {a_name}: {}\n    {b_name}: {}",
                show(x),
                show(y)
            )),
            (Some(_), None) => out.push(format!("{k}: only in {a_name}")),
            (None, Some(_)) => out.push(format!("{k}: only in {b_name}")),
            (None, None) => unreachable!(),
        }
    }
    out
}

/// One RECORD row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RecordRow {
    path: String,
    hash: String,
    size: String,
}

/// RECORD rows (our test paths hold no commas or quotes). Accepts LF and
/// CRLF line ends, as every RECORD reader does.
fn parse_record(text: &str) -> Vec<RecordRow> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.rsplitn(3, ',');
            let size = parts.next().unwrap().to_string();
            let hash = parts
                .next()
                .unwrap_or_else(|| panic!("bad RECORD row {l:?}"))
                .to_string();
            let path = parts
                .next()
                .unwrap_or_else(|| panic!("bad RECORD row {l:?}"))
                .to_string();
            assert!(
                !path.starts_with('"'),
                "quoted RECORD path {l:?}: extend parse_record"
            );
            RecordRow { path, hash, size }
        })
        .collect()
}

/// Checks every hashed row of the RECORD in `dist_info_dir` against the
/// file really at that path (relative to site-packages); panics naming
/// the first row that does not match. Returns the rows.
fn verify_record(sp: &Path, dist_info: &str) -> Vec<RecordRow> {
    let text = fs::read_to_string(sp.join(dist_info).join("RECORD")).unwrap();
    let rows = parse_record(&text);
    assert!(!rows.is_empty(), "{dist_info}/RECORD is empty");
    for r in &rows {
        let file = sp.join(&r.path);
        if r.hash.is_empty() {
            assert!(
                r.path == format!("{dist_info}/RECORD") || r.path.ends_with(".pyc"),
                "{dist_info}/RECORD: row without hash for {}",
                r.path
            );
            assert!(
                file.is_file(),
                "{dist_info}/RECORD lists {} but it is not there",
                r.path
            );
            continue;
        }
        let bytes =
            fs::read(&file).unwrap_or_else(|e| panic!("{dist_info}/RECORD lists {}: {e}", r.path));
        assert_eq!(
            (r.hash.as_str(), r.size.as_str()),
            (
                format!("sha256={}", record_hash(&bytes)).as_str(),
                bytes.len().to_string().as_str()
            ),
            "{dist_info}/RECORD row for {} does not match the file really there",
            r.path
        );
    }
    rows
}

/// A snapshot of a venv, normalized for comparison with another venv:
/// its own path replaced by `@VENV@` everywhere, the manifest dropped,
/// and, for the differences that are by design:
///
/// - pycs are compared by name and magic number only: pip writes
///   timestamp pycs at install, sitefs links to unchecked-hash pycs
///   compiled once in the store (`-o pyc=link`);
/// - `INSTALLER` must say `pip` for pip and `sitefs` for sitefs;
/// - `RECORD`: each row is first checked against the file really at that
///   path in its own venv (so hashes of files that embed the venv path,
///   like scripts, are right for each), then compared by path with
///   `INSTALLER`'s row dropped (its hash follows INSTALLER's content).
///   pip writes CRLF line ends (its csv writer's default) and sitefs LF;
///   both are valid RECORDs, so line ends are not compared.
fn normalized_venv(venv: &Path, installer: &str) -> BTreeMap<String, Item> {
    let from = venv.as_os_str().as_bytes();
    let sp = site_packages(venv);
    let sp_rel = format!("lib/python{}/site-packages/", py_xy());
    let mut out = BTreeMap::new();
    for (k, item) in snapshot(venv) {
        if k == "sitefs.toml" {
            continue;
        }
        if k.ends_with(".pyc") && k.contains("/__pycache__/") {
            // A file (pip) or a link to the store's pyc (sitefs): only
            // which interpreter it is for, as read through the path.
            let bytes = fs::read(venv.join(&k)).unwrap_or_else(|e| panic!("{k}: {e}"));
            let magic = format!("(pyc, magic {:02x?})", &bytes[..4]);
            out.insert(
                k,
                Item::File {
                    mode: 0,
                    bytes: magic.into_bytes(),
                },
            );
            continue;
        }
        let item = match item {
            Item::File { mode, bytes } => {
                let bytes = if k.ends_with(".dist-info/INSTALLER") {
                    assert_eq!(
                        String::from_utf8_lossy(&bytes),
                        format!("{installer}\n"),
                        "{k} in {}",
                        venv.display()
                    );
                    b"(installer)".to_vec()
                } else if k.ends_with(".dist-info/RECORD") {
                    let dist_info = k
                        .strip_prefix(&sp_rel)
                        .unwrap()
                        .strip_suffix("/RECORD")
                        .unwrap();
                    let rows = verify_record(&sp, dist_info);
                    let mut text = String::new();
                    for r in rows
                        .iter()
                        .filter(|r| !r.path.ends_with(".dist-info/INSTALLER"))
                    {
                        let hashed = if r.hash.is_empty() { "" } else { "hash ok" };
                        text.push_str(&format!("{},{hashed}\n", r.path));
                    }
                    text.into_bytes()
                } else {
                    replace_bytes(&bytes, from, b"@VENV@")
                };
                Item::File { mode, bytes }
            }
            other => other,
        };
        out.insert(k, item);
    }
    out
}

/// A reference venv: `python -m venv --without-pip DIR`, then pip run
/// from its own wheel installs `names` from `find_links`. None when this
/// interpreter bundles no pip wheel.
fn pip_venv(dir: &Path, find_links: &Path, names: &[&str]) -> Option<()> {
    let pip = pip_wheel()?;
    let mut venv = clean(Command::new(real_python()));
    venv.args(["-m", "venv", "--without-pip"]).arg(dir);
    assert_success(&run_limited(venv));
    let mut install = clean(Command::new(dir.join("bin/python")));
    install
        .arg(pip.join("pip"))
        .args([
            "install",
            "--no-index",
            "--no-deps",
            "--no-cache-dir",
            "-q",
            "--find-links",
        ])
        .arg(find_links)
        .args(names);
    assert_success(&run_limited(install));
    Some(())
}

// ---------------------------------------------------------------------------
// Wheels
// ---------------------------------------------------------------------------

const PY_SCRIPT: &str =
    "#!python\nimport sys, sfpkg\nprint('pyscript ran', sys.executable, sfpkg.VALUE)\n";
const SH_SCRIPT: &str = "#!/bin/sh\necho \"shscript ran $1\"\n";
const HEADER: &str = "#define SFPKG_X 1\n";
const DATA: &str = "sfpkg shared data\n";

/// A pure package with console and gui scripts, `.data` scripts (one
/// `#!python`, one `#!/bin/sh`), a header and a data file.
fn pkg_wheel() -> WheelBuilder {
    WheelBuilder::new("sfpkg", "1.0")
        .file("sfpkg/__init__.py", "from .core import greet\nVALUE = 'sfpkg-value'\n")
        .file("sfpkg/core.py", "def greet(n):\n    return 'hello ' + n\n")
        .file("sfpkg/late.py", "LATE = 'late-import'\n")
        .file(
            "sfpkg/cli.py",
            "import sys\n\ndef main():\n    print('tool ran', *sys.argv[1:])\n\ndef gui():\n    print('gui ran')\n    return 0\n",
        )
        .data("scripts", "sfpy-script", PY_SCRIPT)
        .data("scripts", "sfsh-script", SH_SCRIPT)
        .data("headers", "x.h", HEADER)
        .data("data", "share/sfpkg/data.txt", DATA)
        .entry_points("[console_scripts]\nsftool = sfpkg.cli:main\n\n[gui_scripts]\nsfgui = sfpkg.cli:gui\n")
}

/// The files `pkg_wheel` puts in bin/.
const PKG_SCRIPTS: [&str; 4] = ["sfgui", "sfpy-script", "sfsh-script", "sftool"];

/// A second pure dist with a console script.
fn other_wheel(version: &str) -> WheelBuilder {
    WheelBuilder::new("sfother", version)
        .file(
            "sfother/__init__.py",
            format!("WHO = 'other'\nVERSION = '{version}'\n\ndef main():\n    print('other ran', VERSION)\n"),
        )
        .file("sfother/sub.py", "SUB = 'sub'\n")
        .entry_points("[console_scripts]\nsfother-run = sfother:main\n")
}

/// A platlib wheel holding a compiled extension module `sfext`.
fn ext_wheel(work: &Work) -> WheelBuilder {
    let build = work.path("ext-build/x");
    let build = build.parent().unwrap();
    let so = build_extension_module(real_python(), "sfext", build);
    WheelBuilder::new("sfext", "0.1")
        .tag(native_tag())
        .root_is_purelib(false)
        .file(&format!("sfext{}", ext_suffix(real_python())), so)
}

// ---------------------------------------------------------------------------
// 1. A venv from wheels built here
// ---------------------------------------------------------------------------

#[test]
fn venv_imports_pure_and_compiled_modules_runs_scripts_and_lays_out_files_like_pip() {
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    let ext = work.wheel(&ext_wheel(&work));
    let venv_path = work.path("envs/venv");
    let v = work.create(&venv_path, &[pkg.as_os_str(), ext.as_os_str()]);
    let venv = &v.path;
    let py = venv.join("bin/python");

    // Imports, from the mount, of the pure package and the extension.
    let out = vpy_ok(
        venv,
        "import sys, sfpkg, sfext\n\
         print(sfpkg.greet('x'), sfpkg.VALUE, sfext.add(2, 3), sfext.MAGIC)\n\
         print(sys.prefix)\nprint(sfpkg.__file__)\nprint(sfext.__file__)",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("hello x sfpkg-value 5 {EXT_MAGIC}"),
        "{out}"
    );
    assert_eq!(lines[1], venv.to_str().unwrap(), "sys.prefix: {out}");
    let sp = v.sp();
    assert_eq!(Path::new(lines[2]), sp.join("sfpkg/__init__.py"), "{out}");
    assert_eq!(
        Path::new(lines[3]),
        sp.join(format!("sfext{}", ext_suffix(real_python()))),
        "{out}"
    );

    // Console and gui scripts run and print what the functions print.
    let out = venv_run(venv, "sftool", &["a", "b"]);
    assert_success(&out);
    assert_eq!(stdout_of(&out), "tool ran a b\n");
    let out = venv_run(venv, "sfgui", &[]);
    assert_success(&out);
    assert_eq!(stdout_of(&out), "gui ran\n");
    let tool = fs::read_to_string(v.bin("sftool")).unwrap();
    assert!(tool.starts_with(&format!("#!{}\n", py.display())), "{tool}");
    assert!(
        tool.contains("from sfpkg.cli import main\n") && tool.ends_with("sys.exit(main())\n"),
        "{tool}"
    );

    // `#!python` rewritten to the venv's python; it runs with it.
    let pyscript = fs::read_to_string(v.bin("sfpy-script")).unwrap();
    assert_eq!(
        pyscript,
        PY_SCRIPT.replacen("#!python", &format!("#!{}", py.display()), 1)
    );
    let out = venv_run(venv, "sfpy-script", &[]);
    assert_success(&out);
    assert_eq!(
        stdout_of(&out),
        format!("pyscript ran {} sfpkg-value\n", py.display())
    );
    // Any other script is copied byte for byte.
    assert_eq!(fs::read_to_string(v.bin("sfsh-script")).unwrap(), SH_SCRIPT);
    let out = venv_run(venv, "sfsh-script", &["arg"]);
    assert_success(&out);
    assert_eq!(stdout_of(&out), "shscript ran arg\n");
    for s in PKG_SCRIPTS {
        assert_eq!(mode_of(&v.bin(s)), 0o755, "mode of bin/{s}");
    }

    // Headers and data.
    let header = venv.join(format!("include/site/python{}/sfpkg/x.h", py_xy()));
    assert_eq!(fs::read_to_string(&header).unwrap(), HEADER);
    assert_eq!(mode_of(&header), 0o644);
    let data = venv.join("share/sfpkg/data.txt");
    assert_eq!(fs::read_to_string(&data).unwrap(), DATA);
    assert_eq!(mode_of(&data), 0o644);

    // The skeleton: what `python -m venv --without-pip` makes.
    let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    let keys: Vec<&str> = cfg
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
        .collect();
    assert_eq!(
        keys,
        [
            "home",
            "include-system-site-packages",
            "version",
            "executable",
            "command"
        ],
        "{cfg}"
    );
    assert!(
        cfg.contains("include-system-site-packages = false\n"),
        "{cfg}"
    );
    for link in ["python", "python3", &format!("python{}", py_xy())] {
        let p = v.bin(link);
        assert!(
            fs::symlink_metadata(&p).unwrap().file_type().is_symlink(),
            "bin/{link} is not a symlink"
        );
        assert_eq!(
            p.canonicalize().unwrap(),
            Path::new(real_python()).canonicalize().unwrap(),
            "bin/{link} does not lead to the interpreter"
        );
    }
    assert_eq!(fs::read_link(venv.join("lib64")).unwrap(), Path::new("lib"));
    for a in ["activate", "activate.csh", "activate.fish"] {
        let text = fs::read_to_string(v.bin(a)).unwrap_or_else(|e| panic!("bin/{a}: {e}"));
        assert!(
            text.contains(venv.to_str().unwrap()),
            "bin/{a} does not name the venv"
        );
    }
    // (Activate.ps1 finds the venv at run time; the comparison below
    // checks its bytes.)
    assert!(v.bin("Activate.ps1").is_file());
    // Differential: the skeleton is CPython's, byte for byte (paths aside).
    let reference = work.path("ref/venv");
    let mut cmd = clean(Command::new(real_python()));
    cmd.args(["-m", "venv", "--without-pip"]).arg(&reference);
    assert_success(&run_limited(cmd));
    let ours: BTreeMap<String, Item> = normalized_skeleton(venv);
    let theirs: BTreeMap<String, Item> = normalized_skeleton(&reference);
    let diff = differences("sitefs", &ours, "python -m venv", &theirs);
    assert!(
        diff.is_empty(),
        "venv skeleton differs from python -m venv --without-pip:\n{}",
        diff.join("\n")
    );

    // activate works.
    let mut bash = clean(Command::new("bash"));
    bash.arg("-c").arg(format!(
        "source '{}/bin/activate' && python -c 'import sys; print(sys.prefix)' && command -v sftool",
        venv.display()
    ));
    let out = run_limited(bash);
    assert_success(&out);
    assert_eq!(
        stdout_of(&out),
        format!("{}\n{}\n", venv.display(), v.bin("sftool").display())
    );

    // site-packages is a read-only FUSE mount.
    let entries = mountinfo_entries(&sp);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (mount_part, super_part) = entries[0].split_once(" - ").unwrap();
    assert!(
        super_part.starts_with("fuse"),
        "not a FUSE mount: {}",
        entries[0]
    );
    assert!(
        mount_part
            .split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "not read-only: {}",
        entries[0]
    );
    let err = fs::write(sp.join("sfpkg/new.py"), "x = 1\n").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
}

/// The venv skeleton (everything but site-packages content and what the
/// dists add), paths replaced, for comparison with `python -m venv`.
fn normalized_skeleton(venv: &Path) -> BTreeMap<String, Item> {
    let from = venv.as_os_str().as_bytes();
    let sp_rel = format!("lib/python{}/site-packages/", py_xy());
    snapshot(venv)
        .into_iter()
        .filter(|(k, _)| {
            !k.starts_with(&sp_rel)
                && k != "sitefs.toml"
                && !k.starts_with("include/site")
                && !k.starts_with("share")
                && !PKG_SCRIPTS.iter().any(|s| *k == format!("bin/{s}"))
        })
        .map(|(k, i)| {
            let i = match i {
                Item::File { mode, bytes } => Item::File {
                    mode,
                    bytes: replace_bytes(&bytes, from, b"@VENV@"),
                },
                other => other,
            };
            (k, i)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 2. Differential against pip
// ---------------------------------------------------------------------------

/// The sitefs venv against a venv pip 23.2.1 populated from the same
/// wheels (sfpkg, sfext, sfother and pip itself, all requested).
///
/// Differences that are by design, and therefore normalized (see
/// [`normalized_venv`]): each venv's own path inside files; pycs
/// (timestamp pycs from pip, links to unchecked-hash pycs in the store
/// from sitefs; the pyc *names* and interpreters must match); `INSTALLER` (`pip` / `sitefs`) and so its RECORD
/// row; RECORD line ends (CRLF from pip's csv writer, LF from sitefs);
/// RECORD hashes of files that embed the venv path (each is checked
/// against its own file instead); `sitefs.toml`. Everything else must be
/// identical, and is: `pip list`, `pip freeze`, `pip show -f` (including
/// the INSTALLER/RECORD/REQUESTED and `__pycache__` rows, which come out
/// the same), `pip check` and `importlib.metadata` outputs are compared
/// verbatim after replacing the venv path.
#[test]
fn venv_matches_what_pip_installs_from_the_same_wheels() {
    let Some(pip) = pip_wheel() else {
        cannot_run(
            "venv_matches_what_pip_installs_from_the_same_wheels",
            &format!("{} bundles no pip wheel to compare with", real_python()),
        );
        return;
    };
    let work = Work::new();
    let wheels = work.wheel_dir();
    work.wheel(&pkg_wheel());
    work.wheel(&ext_wheel(&work));
    work.wheel(&other_wheel("2.0"));
    fs::copy(&pip, wheels.join(pip.file_name().unwrap())).unwrap();
    let names = ["sfpkg", "sfext", "sfother", "pip"];

    // Same basename, so the venv name in activate scripts is the same.
    let v = work.create(&work.path("sitefs/venv"), &[wheels.as_os_str()]);
    let venv = &v.path;
    let reference = work.path("pip/venv");
    pip_venv(&reference, &wheels, &names).unwrap();

    // The whole trees: same paths, modes and bytes (see normalized_venv
    // for the differences that are by design).
    let ours = normalized_venv(venv, "sitefs");
    let theirs = normalized_venv(&reference, "pip");
    assert!(
        ours.keys().any(|k| k.ends_with(".pyc")),
        "no pycs in the sitefs venv's site-packages"
    );
    let diff = differences("sitefs", &ours, "pip", &theirs);
    assert!(
        diff.is_empty(),
        "the sitefs venv differs from pip's:\n{}",
        diff.join("\n")
    );

    // What pip itself reports, each venv asked with its own pip (the same
    // pip 23.2.1 wheel in both).
    let pip_says = |venv: &Path, args: &[&str]| {
        let mut all = vec!["-m", "pip"];
        all.extend_from_slice(args);
        let out = venv_run(venv, "python", &all);
        assert_success(&out);
        String::from_utf8(replace_bytes(
            &out.stdout,
            venv.as_os_str().as_bytes(),
            b"@VENV@",
        ))
        .unwrap()
    };
    let sp = v.sp();
    let sp_arg = sp.to_str().unwrap();
    let ref_sp = site_packages(&reference);
    for args in [
        vec!["list"],
        vec!["freeze", "--all"],
        vec!["show", "-f", "sfpkg", "sfext", "sfother", "pip"],
        vec!["check"],
    ] {
        let a = pip_says(venv, &args);
        let b = pip_says(&reference, &args);
        assert_eq!(a, b, "`pip {}` differs (sitefs, then pip)", args.join(" "));
        if args[0] == "show" {
            assert!(
                a.contains("  ../../../bin/sftool\n"),
                "pip show -f lists no scripts:\n{a}"
            );
        }
    }
    // `--path` (the system pip looking at a site-packages from outside).
    let system_list = |sp: &Path| {
        let mut cmd = clean(Command::new(real_python()));
        cmd.args(["-m", "pip", "list", "--path"]).arg(sp);
        let out = run_limited(cmd);
        assert_success(&out);
        stdout_of(&out)
    };
    let listed = system_list(&sp);
    assert_eq!(listed, system_list(&ref_sp));
    for n in names {
        assert!(
            listed.lines().any(|l| l.starts_with(&format!("{n} "))),
            "{n} not in:\n{listed}"
        );
    }
    let mut freeze = clean(Command::new(real_python()));
    freeze.args(["-m", "pip", "freeze", "--all", "--path", sp_arg]);
    let out = run_limited(freeze);
    assert_success(&out);
    assert_eq!(
        stdout_of(&out),
        format!(
            "pip=={}\nsfext==0.1\nsfother==2.0\nsfpkg==1.0\n",
            pip_version(&pip)
        )
    );

    // importlib.metadata, from each venv's own interpreter.
    let code = "import importlib.metadata as md, json, sys\n\
        sp = sys.argv[1]\n\
        out = sorted((d.metadata['Name'], d.version, sorted(str(f) for f in d.files), \
        sorted((e.group, e.name, e.value) for e in d.entry_points), d.read_text('REQUESTED')) \
        for d in md.distributions(path=[sp]))\n\
        print(json.dumps(out, indent=1))";
    let meta = |venv: &Path| {
        let out = venv_run(
            venv,
            "python",
            &["-c", code, site_packages(venv).to_str().unwrap()],
        );
        assert_success(&out);
        stdout_of(&out)
    };
    let (a, b) = (meta(venv), meta(&reference));
    assert_eq!(a, b, "importlib.metadata differs (sitefs, then pip)");
    assert!(
        a.contains("\"sfpkg\"") && a.contains("../../../bin/sftool"),
        "{a}"
    );

    // And the scripts, explicitly: pip's generated wrappers, byte for byte
    // once each venv's path is replaced.
    for s in [
        "sftool",
        "sfgui",
        "sfpy-script",
        "sfsh-script",
        "sfother-run",
        "pip",
        "pip3",
    ] {
        let a = replace_bytes(
            &fs::read(v.bin(s)).unwrap(),
            venv.as_os_str().as_bytes(),
            b"@VENV@",
        );
        let b = replace_bytes(
            &fs::read(reference.join("bin").join(s)).unwrap(),
            reference.as_os_str().as_bytes(),
            b"@VENV@",
        );
        assert_eq!(
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b),
            "bin/{s}"
        );
        assert_eq!(
            mode_of(&v.bin(s)),
            mode_of(&reference.join("bin").join(s)),
            "mode of bin/{s}"
        );
    }
}

/// The version in a wheel's file name.
fn pip_version(wheel: &Path) -> String {
    wheel
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------
// 3. Long paths and paths with a space
// ---------------------------------------------------------------------------

#[test]
fn long_and_spaced_venv_paths_get_the_sh_exec_shebang_and_scripts_run() {
    let work = Work::new();
    let wheels = work.wheel_dir();
    let pkg = work.wheel(&pkg_wheel());
    let long_dir = "L".repeat(130);
    for (name, dir) in [("long", long_dir.as_str()), ("space", "with space")] {
        let venv_path = work.path(&format!("{dir}/sitefs-venv"));
        let v = work.create(&venv_path, &[pkg.as_os_str()]);
        let venv = &v.path;
        let py = venv.join("bin/python");
        assert!(
            py.as_os_str().len() + 3 > 127 || py.to_str().unwrap().contains(' '),
            "{name}: test path too short"
        );
        let tool = fs::read_to_string(v.bin("sftool")).unwrap();
        let quoted = if name == "space" {
            format!("\"{}\"", py.display())
        } else {
            py.display().to_string()
        };
        assert!(
            tool.starts_with(&format!(
                "#!/bin/sh\n'''exec' {quoted} \"$0\" \"$@\"\n' '''\n"
            )),
            "{name}: not the /bin/sh exec form:\n{tool}"
        );
        let out = venv_run(venv, "sftool", &["x y"]);
        assert_success(&out);
        assert_eq!(stdout_of(&out), "tool ran x y\n", "{name}");
        let out = venv_run(venv, "sfgui", &[]);
        assert_success(&out);
        assert_eq!(stdout_of(&out), "gui ran\n", "{name}");
        assert_eq!(
            vpy_ok(venv, "import sfpkg; print(sfpkg.VALUE)"),
            "sfpkg-value\n",
            "{name}"
        );
        assert!(is_mounted(&v.sp()), "{name}");

        // Differential: pip at a path of the same kind writes the same bytes.
        let reference = work.path(&format!("{dir}/pipref-venv"));
        if pip_venv(&reference, &wheels, &["sfpkg"]).is_none() {
            cannot_run("the pip comparison of scripts", "no pip wheel");
            continue;
        }
        for s in PKG_SCRIPTS {
            let a = replace_bytes(
                &fs::read(v.bin(s)).unwrap(),
                venv.as_os_str().as_bytes(),
                b"@VENV@",
            );
            let b = replace_bytes(
                &fs::read(reference.join("bin").join(s)).unwrap(),
                reference.as_os_str().as_bytes(),
                b"@VENV@",
            );
            assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "{name}: bin/{s} differs from pip's"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 4. RECORD and pip uninstall
// ---------------------------------------------------------------------------

#[test]
fn record_lists_the_real_scripts_pip_uninstall_fails_and_env_repair_restores() {
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    let mut sources = vec![pkg.clone().into_os_string()];
    let pip = pip_wheel();
    if let Some(p) = &pip {
        sources.push(p.clone().into_os_string());
    }
    let args: Vec<&OsStr> = sources.iter().map(|s| s.as_os_str()).collect();
    let v = work.create(&work.path("venv"), &args);
    let venv = &v.path;
    let sp = v.sp();

    // Every hashed row matches the file really there, scripts included.
    let rows = verify_record(&sp, "sfpkg-1.0.dist-info");
    let paths: BTreeSet<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    let inc = format!("../../../include/site/python{}/sfpkg/x.h", py_xy());
    let mut want: BTreeSet<String> = PKG_SCRIPTS
        .iter()
        .map(|s| format!("../../../bin/{s}"))
        .collect();
    want.insert(inc);
    want.insert("../../../share/sfpkg/data.txt".into());
    for w in &want {
        assert!(paths.contains(w.as_str()), "RECORD lacks {w}:\n{paths:#?}");
    }
    let tool_row = rows
        .iter()
        .find(|r| r.path == "../../../bin/sftool")
        .unwrap();
    let tool = fs::read(v.bin("sftool")).unwrap();
    assert_eq!(tool_row.hash, format!("sha256={}", record_hash(&tool)));
    assert_eq!(tool_row.size, tool.len().to_string());
    // And it lists exactly the dist's files: all of sfpkg/ and its
    // dist-info in the mount, plus the env files.
    let mut have: BTreeSet<String> = snapshot(&sp)
        .into_iter()
        .filter(|(k, i)| {
            !matches!(i, Item::Dir { .. })
                && (k.starts_with("sfpkg/") || k.starts_with("sfpkg-1.0.dist-info/"))
        })
        .map(|(k, _)| k)
        .collect();
    have.extend(want.iter().cloned());
    let listed: BTreeSet<String> = paths.iter().map(|p| p.to_string()).collect();
    assert_eq!(listed, have, "RECORD rows vs files of the dist");

    let Some(_) = pip else {
        cannot_run("the pip uninstall check", "no pip wheel on this machine");
        return;
    };
    let before = snapshot(venv);
    let sp_before = snapshot(&sp);
    let out = venv_run(venv, "python", &["-m", "pip", "uninstall", "-y", "sfpkg"]);
    assert!(
        !out.status.success(),
        "pip uninstall succeeded on a read-only env:\n{}\n{}",
        stdout_of(&out),
        stderr_of(&out)
    );
    let err = stderr_of(&out);
    assert!(
        err.contains("Read-only file system"),
        "pip's error does not say why:\n{err}"
    );
    // Nothing in the read-only site-packages changed.
    assert!(
        snapshot(&sp) == sp_before,
        "pip uninstall changed the read-only site-packages"
    );
    // pip 23.2 stashes what it removes in sorted path order and does not
    // roll back when `pip uninstall` fails: VENV/bin/... and
    // VENV/include/... sort before VENV/lib/..., so it may have moved
    // those aside. `sitefs env repair` restores every one of them.
    assert_success(&run_sitefs(["env", "repair", venv.to_str().unwrap()]));
    let after = snapshot(venv);
    let missing: Vec<String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        missing.is_empty(),
        "not restored by env repair: {missing:?}"
    );
    let out = venv_run(venv, "sftool", &[]);
    assert_success(&out);
    assert_eq!(
        vpy_ok(venv, "import sfpkg; print(sfpkg.VALUE)"),
        "sfpkg-value\n"
    );
}

/// `env create` writes no view image (one costs ~3 MB per set of dists);
/// a remount does, and envs of the same wheels share it: the next `env
/// create` loads the view the remount of the first env saved, yet serves
/// its own env: a RECORD hashing its own scripts (which name its own
/// python) and its own manifest's mtime on directories.
#[test]
fn a_second_env_of_the_same_wheels_loads_the_first_ones_view_but_serves_its_own_env() {
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    let other = work.wheel(&other_wheel("1.0"));
    let args = [pkg.as_os_str(), other.as_os_str()];
    let a = work.create(&work.path("a"), &args);
    let views = work.store().join("views");
    assert_eq!(
        vpy_ok(&a.path, "import sfpkg; print(sfpkg.VALUE)"),
        "sfpkg-value\n"
    );
    assert_success(&run_sitefs([
        OsStr::new("env"),
        OsStr::new("umount"),
        a.path.as_os_str(),
    ]));
    let images = fs::read_dir(&views).map_or(0, |d| d.count());
    assert_eq!(images, 0, "env create wrote a view image");
    assert_success(&run_sitefs([
        OsStr::new("env"),
        OsStr::new("mount"),
        a.path.as_os_str(),
    ]));
    let image = the_file_in(&views);

    let b = Venv::guard(&work.path("b"));
    let mut verbose = args.to_vec();
    verbose.push(OsStr::new("-v"));
    let out = work.create_cmd(&b.path, &verbose);
    assert_success(&out);
    let log = stderr_of(&out);
    assert!(
        log.contains(&format!("loaded from {}", image.display())),
        "the second env did not load {}:\n{log}",
        image.display()
    );
    let record = |v: &Venv| {
        verify_record(&v.sp(), "sfpkg-1.0.dist-info");
        fs::read(v.sp().join("sfpkg-1.0.dist-info/RECORD")).unwrap()
    };
    assert_ne!(record(&a), record(&b), "each RECORD hashes its own scripts");
    let mtime = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
    let manifests = [&a, &b].map(|v| mtime(&v.path.join("sitefs.toml")));
    assert_ne!(
        manifests[0], manifests[1],
        "the two envs need their own mtimes"
    );
    for (v, manifest) in [&a, &b].into_iter().zip(manifests) {
        for dir in ["", "sfpkg", "sfpkg/__pycache__", "sfpkg-1.0.dist-info"] {
            assert_eq!(
                mtime(&v.sp().join(dir)),
                manifest,
                "{dir:?} of {:?}",
                v.path
            );
        }
    }
    let file = |v: &Venv| mtime(&v.sp().join("sfpkg/core.py"));
    assert_eq!(file(&a), file(&b), "a dist's files keep their ingest time");
    assert_eq!(
        vpy_ok(
            &b.path,
            "import sfpkg, sfother; print(sfpkg.VALUE, sfother.WHO)"
        ),
        "sfpkg-value other\n"
    );
}

// ---------------------------------------------------------------------------
// 5. Requirements files
// ---------------------------------------------------------------------------

#[test]
fn requirements_with_pins_hashes_markers_and_find_links_create_the_env() {
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    work.wheel(&other_wheel("2.0"));
    // A newer sfother beside it: the pin must pick 2.0.
    work.wheel(&other_wheel("3.0"));
    let reqs = work.path("reqs/requirements.txt");
    fs::write(
        &reqs,
        format!(
            "# pinned, as pip-compile writes them\n\
             sfpkg==1.0 \\\n    --hash=sha256:{}\n\
             sfother==2.0\n\
             sfancient==0.1 ; python_version < \"3.0\"\n",
            sha256_hex(&fs::read(&pkg).unwrap())
        ),
    )
    .unwrap();
    let wheels = work.wheel_dir();
    let v = work.create(
        &work.path("venv"),
        &[
            os("-r"),
            reqs.as_os_str(),
            os("--find-links"),
            wheels.as_os_str(),
        ],
    );
    let out = vpy_ok(
        &v.path,
        "import importlib.metadata as md, sfpkg, sfother\n\
         print(sorted((d.metadata['Name'], d.version) for d in md.distributions()))\n\
         print(sfpkg.VALUE, sfother.VERSION)",
    );
    assert_eq!(
        out,
        "[('sfother', '2.0'), ('sfpkg', '1.0')]\nsfpkg-value 2.0\n"
    );
    let out = venv_run(&v.path, "sfother-run", &[]);
    assert_success(&out);
    assert_eq!(stdout_of(&out), "other ran 2.0\n");
}

#[test]
fn bad_requirements_fail_listing_every_problem_and_create_nothing() {
    let work = Work::new();
    work.wheel(&pkg_wheel());
    work.wheel(&other_wheel("2.0"));
    let wheels = work.wheel_dir();
    let parent = work.path("envs/x").parent().unwrap().to_path_buf();
    let venv = parent.join("venv");
    let _guard = Venv::guard(&venv);
    let wrong = "0".repeat(64);
    let check = |files: &[&Path], what: &str| {
        let mut args: Vec<&OsStr> = Vec::new();
        for f in files {
            args.extend([os("-r"), f.as_os_str()]);
        }
        args.extend([os("-f"), wheels.as_os_str()]);
        let out = work.create_cmd(&venv, &args);
        let err = failure(&out);
        for needle in [
            "cannot satisfy 3 requirement(s)",
            "`sfpkg>=1` is not pinned",
            "sfmissing==1.0: no fitting wheel",
            "sfother==2.0: no fitting wheel with a matching --hash",
        ] {
            assert!(
                err.contains(needle),
                "{what}: the error lacks {needle:?}:\n{err}"
            );
        }
        assert!(
            !venv.exists(),
            "{what}: {} exists after a failed create",
            venv.display()
        );
        assert_eq!(
            names_in(&parent),
            Vec::<String>::new(),
            "{what}: leftovers beside the venv"
        );
        assert!(!is_mounted(&site_packages(&venv)), "{what}");
    };
    // The problems in two files...
    let a = work.path("reqs/a.txt");
    fs::write(&a, "sfpkg>=1\n").unwrap();
    let b = work.path("reqs/b.txt");
    fs::write(
        &b,
        format!("sfmissing==1.0\nsfother==2.0 --hash=sha256:{wrong}\n"),
    )
    .unwrap();
    check(&[&a, &b], "two files");
    // ...and all in one file: one pass must show all three, so that a
    // user fixes the file at once.
    let all = work.path("reqs/all.txt");
    fs::write(
        &all,
        format!("sfpkg>=1\nsfmissing==1.0\nsfother==2.0 --hash=sha256:{wrong}\n"),
    )
    .unwrap();
    check(&[&all], "one file");
}

// ---------------------------------------------------------------------------
// 6. PEP 751 lock files
// ---------------------------------------------------------------------------

/// A `[[packages.wheels]]` table for `wheel`, with its real size and
/// hash unless overridden.
fn lock_wheel(lock_dir: &Path, wheel: &Path, size: Option<u64>, sha256: Option<&str>) -> String {
    let bytes = fs::read(wheel).unwrap();
    let rel = pathdiff(wheel, lock_dir);
    format!(
        "[[packages.wheels]]\nname = \"{}\"\npath = \"{}\"\nsize = {}\nhashes = {{ sha256 = \"{}\" }}\n\n",
        wheel.file_name().unwrap().to_str().unwrap(),
        rel,
        size.unwrap_or(bytes.len() as u64),
        sha256.map_or_else(|| sha256_hex(&bytes), str::to_string)
    )
}

/// `to` relative to `from_dir` (both absolute, sharing a prefix).
fn pathdiff(to: &Path, from_dir: &Path) -> String {
    let a: Vec<_> = to.components().collect();
    let b: Vec<_> = from_dir.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_string(); b.len() - common];
    parts.extend(
        a[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

fn lock_text(packages: &[(&str, &str, String)]) -> String {
    let mut t = String::from("lock-version = \"1.0\"\ncreated-by = \"sitefs-tests\"\n\n");
    for (name, version, wheels) in packages {
        t.push_str(&format!(
            "[[packages]]\nname = \"{name}\"\nversion = \"{version}\"\n\n{wheels}"
        ));
    }
    t
}

fn plat_wheel(tag: &str, platform: &str) -> WheelBuilder {
    WheelBuilder::new("sfplat", "1.0")
        .tag(tag)
        .root_is_purelib(false)
        .file("sfplat/__init__.py", format!("PLATFORM = '{platform}'\n"))
}

#[test]
fn lock_file_installs_the_wheel_fitting_this_interpreter() {
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    let win = work.wheel(&plat_wheel("cp311-cp311-win_amd64", "windows"));
    let native = work.wheel(&plat_wheel(native_tag(), "native"));
    let lock_dir = work.path("lock/x").parent().unwrap().to_path_buf();
    let lock = lock_dir.join("pylock.toml");
    fs::write(
        &lock,
        lock_text(&[
            ("sfpkg", "1.0", lock_wheel(&lock_dir, &pkg, None, None)),
            (
                "sfplat",
                "1.0",
                // The unfitting wheel first, so "the first" is not enough.
                lock_wheel(&lock_dir, &win, None, None)
                    + &lock_wheel(&lock_dir, &native, None, None),
            ),
        ]),
    )
    .unwrap();
    let v = work.create(&work.path("venv"), &[os("--lock"), lock.as_os_str()]);
    let out = vpy_ok(
        &v.path,
        "import importlib.metadata as md, sfpkg, sfplat\n\
         print(sorted((d.metadata['Name'], d.version) for d in md.distributions()))\n\
         print(sfplat.PLATFORM, sfpkg.VALUE)",
    );
    assert_eq!(
        out,
        "[('sfpkg', '1.0'), ('sfplat', '1.0')]\nnative sfpkg-value\n"
    );
    let manifest = fs::read_to_string(v.path.join("sitefs.toml")).unwrap();
    assert_eq!(manifest.matches("[[dist]]").count(), 2, "{manifest}");
}

#[test]
fn unsatisfiable_or_wrong_locks_fail_naming_the_problem_and_create_nothing() {
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    let win = work.wheel(
        &WheelBuilder::new("sfwin", "1.0")
            .tag("cp311-cp311-win_amd64")
            .file("sfwin/__init__.py", ""),
    );
    let lock_dir = work.path("lock/x").parent().unwrap().to_path_buf();
    let parent = work.path("envs/x").parent().unwrap().to_path_buf();
    let venv = parent.join("venv");
    let _guard = Venv::guard(&venv);
    let try_lock = |name: &str, text: String| -> String {
        let lock = lock_dir.join(name);
        fs::write(&lock, text).unwrap();
        let out = work.create_cmd(&venv, &[os("--lock"), lock.as_os_str()]);
        let err = failure(&out);
        assert!(
            !venv.exists(),
            "{name}: {} exists after a failed create",
            venv.display()
        );
        assert_eq!(
            names_in(&parent),
            Vec::<String>::new(),
            "{name}: leftovers beside the venv"
        );
        err
    };

    let err = try_lock(
        "only-windows.toml",
        lock_text(&[
            ("sfpkg", "1.0", lock_wheel(&lock_dir, &pkg, None, None)),
            ("sfwin", "1.0", lock_wheel(&lock_dir, &win, None, None)),
        ]),
    );
    assert!(
        err.contains("package sfwin 1.0: no wheel fits this interpreter"),
        "{err}"
    );
    assert!(err.contains("sfwin-1.0-cp311-cp311-win_amd64.whl"), "{err}");

    let size = fs::metadata(&pkg).unwrap().len();
    let err = try_lock(
        "wrong-size.toml",
        lock_text(&[(
            "sfpkg",
            "1.0",
            lock_wheel(&lock_dir, &pkg, Some(size + 1), None),
        )]),
    );
    assert!(
        err.contains(pkg.to_str().unwrap()) || err.contains("sfpkg-1.0-py3-none-any.whl"),
        "{err}"
    );
    assert!(
        err.contains(&format!("size is {size} bytes, the lock says {}", size + 1)),
        "{err}"
    );

    let wrong = "ab".repeat(32);
    let err = try_lock(
        "wrong-hash.toml",
        lock_text(&[(
            "sfpkg",
            "1.0",
            lock_wheel(&lock_dir, &pkg, None, Some(&wrong)),
        )]),
    );
    assert!(err.contains("sfpkg-1.0-py3-none-any.whl"), "{err}");
    assert!(err.contains(&format!("the lock says {wrong}")), "{err}");
}

#[test]
fn a_wrong_size_in_a_lock_fails_even_when_the_store_already_has_the_wheel() {
    // The same lock must give the same answer whatever the store holds.
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    let lock_dir = work.path("lock/x").parent().unwrap().to_path_buf();
    let good = lock_dir.join("good.toml");
    fs::write(
        &good,
        lock_text(&[("sfpkg", "1.0", lock_wheel(&lock_dir, &pkg, None, None))]),
    )
    .unwrap();
    let first = work.create(&work.path("first"), &[os("--lock"), good.as_os_str()]);
    drop(first);

    let size = fs::metadata(&pkg).unwrap().len();
    let bad = lock_dir.join("bad.toml");
    fs::write(
        &bad,
        lock_text(&[(
            "sfpkg",
            "1.0",
            lock_wheel(&lock_dir, &pkg, Some(size + 1), None),
        )]),
    )
    .unwrap();
    let venv = work.path("second");
    let _guard = Venv::guard(&venv);
    let out = work.create_cmd(&venv, &[os("--lock"), bad.as_os_str()]);
    let err = failure(&out);
    assert!(
        err.contains("sfpkg-1.0-py3-none-any.whl") && err.contains("size"),
        "{err}"
    );
    assert!(!venv.exists());
}

// ---------------------------------------------------------------------------
// 7. Live add and remove
// ---------------------------------------------------------------------------

/// A python process that runs one line of code per request, in one
/// interpreter, and answers with its output.
struct Repl {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

const REPL: &str = r#"
import sys
while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        exec(line, globals())
    except BaseException as e:
        print('ERR', type(e).__name__, e)
    print('<<done>>', flush=True)
"#;

impl Repl {
    fn start(venv: &Path) -> Repl {
        let mut cmd = clean(Command::new(venv.join("bin/python")));
        let mut child = cmd
            .args(["-u", "-c", REPL])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Repl {
            child,
            stdin,
            lines,
        }
    }

    /// Runs one line; returns what it printed (or `ERR <type> <msg>`).
    fn ask(&mut self, code: &str) -> String {
        assert!(!code.contains('\n'));
        writeln!(self.stdin, "{code}").unwrap();
        self.stdin.flush().unwrap();
        let deadline = Instant::now() + PROCESS_LIMIT;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == "<<done>>" => return out.join("\n"),
                Ok(l) => out.push(l),
                Err(_) => panic!("the python process did not answer {code:?} (so far: {out:?})"),
            }
        }
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn env_add_and_remove_change_a_live_env_under_a_running_process() {
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    let other = work.wheel(&other_wheel("2.0"));
    let v = work.create(&work.path("venv"), &[pkg.as_os_str()]);
    let venv = &v.path;
    let mut repl = Repl::start(venv);

    assert_eq!(repl.ask("import sfpkg, importlib, importlib.metadata as md; print(sfpkg.VALUE, md.version('sfpkg'))"), "sfpkg-value 1.0");
    // Misses first, so every cache (kernel negative entries, the import
    // system's directory cache, importlib.metadata's) has seen "absent".
    assert!(repl
        .ask("import sfother")
        .starts_with("ERR ModuleNotFoundError"));
    assert!(repl
        .ask("print(md.version('sfother'))")
        .starts_with("ERR PackageNotFoundError"));
    assert!(!v.bin("sfother-run").exists());

    let out = sitefs([os("env"), os("add"), venv.as_os_str(), other.as_os_str()]);
    assert_success(&out);
    assert_eq!(
        stdout_of(&out),
        format!("added 1 distribution(s) to {}\n", venv.display())
    );

    // The same process sees B, without importlib.invalidate_caches().
    let seen = repl.ask(
        "import sfother, sfother.sub; print(sfother.WHO, sfother.sub.SUB, md.version('sfother'))",
    );
    if seen != "other sub 2.0" {
        let after_invalidate = repl.ask(
            "importlib.invalidate_caches(); import sfother, sfother.sub; print(sfother.WHO, sfother.sub.SUB, md.version('sfother'))",
        );
        panic!("the running process does not see the added dist: {seen:?} (after importlib.invalidate_caches(): {after_invalidate:?})");
    }
    let out = venv_run(venv, "sfother-run", &[]);
    assert_success(&out);
    assert_eq!(stdout_of(&out), "other ran 2.0\n");
    let rows = verify_record(&v.sp(), "sfother-2.0.dist-info");
    assert!(
        rows.iter().any(|r| r.path == "../../../bin/sfother-run"),
        "{rows:?}"
    );
    assert_eq!(
        vpy_ok(venv, "import sfother; print(sfother.WHO)"),
        "other\n"
    );

    let out = sitefs([os("env"), os("remove"), venv.as_os_str(), os("sfother")]);
    assert_success(&out);
    assert_eq!(
        stdout_of(&out),
        format!("removed 1 distribution(s) from {}\n", venv.display())
    );

    // The running process keeps working with A, including modules of A
    // it has not imported yet, and its metadata no longer lists B.
    assert_eq!(
        repl.ask("import sfpkg.late; print(sfpkg.late.LATE, sfpkg.greet('y'))"),
        "late-import hello y"
    );
    assert_eq!(repl.ask("print(md.version('sfpkg'))"), "1.0");
    assert!(repl
        .ask("print(md.version('sfother'))")
        .starts_with("ERR PackageNotFoundError"));
    assert!(
        !v.bin("sfother-run").exists(),
        "bin/sfother-run is still there"
    );
    assert!(v.bin("sftool").exists());
    let out = vpy(venv, "import sfother");
    assert!(
        !out.status.success(),
        "a new process still imports the removed dist"
    );
    assert!(
        stderr_of(&out).contains("ModuleNotFoundError: No module named 'sfother'"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(
        vpy_ok(venv, "import sfpkg; print(sfpkg.VALUE)"),
        "sfpkg-value\n"
    );

    // Removing what is not there fails and changes nothing.
    let err = failure(&sitefs([
        os("env"),
        os("remove"),
        venv.as_os_str(),
        os("sfnosuch"),
    ]));
    assert!(
        err.contains("sfnosuch") && err.contains(venv.to_str().unwrap()),
        "{err}"
    );
    assert_eq!(repl.ask("print(sfpkg.VALUE)"), "sfpkg-value");
}

// ---------------------------------------------------------------------------
// 8. ls, umount, mount, rm
// ---------------------------------------------------------------------------

#[test]
fn ls_umount_mount_and_rm_manage_the_env_lifecycle() {
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    let other = work.wheel(&other_wheel("2.0"));
    let v = work.create(&work.path("envs/a"), &[pkg.as_os_str(), other.as_os_str()]);
    let w = work.create(&work.path("envs/b"), &[other.as_os_str()]);
    let (a, b) = (v.path.clone(), w.path.clone());
    let ls = || {
        let out = sitefs([os("env"), os("ls"), os("--store"), work.store().as_os_str()]);
        assert_success(&out);
        stdout_of(&out)
    };
    assert_eq!(
        ls(),
        format!(
            "{}\tmounted\t2 dists\n{}\tmounted\t1 dists\n",
            a.display(),
            b.display()
        )
    );

    let out = sitefs([os("env"), os("umount"), a.as_os_str()]);
    assert_success(&out);
    wait_for("env umount to unmount", || !is_mounted(&v.sp()));
    assert_eq!(
        ls(),
        format!(
            "{}\tnot mounted\t2 dists\n{}\tmounted\t1 dists\n",
            a.display(),
            b.display()
        )
    );
    let out = vpy(&a, "import sfpkg");
    assert!(!out.status.success(), "imports from an unmounted env work?");
    // umount again: it says so.
    let err = failure(&sitefs([os("env"), os("umount"), a.as_os_str()]));
    assert!(err.contains("not mounted"), "{err}");

    let out = sitefs([os("env"), os("mount"), a.as_os_str()]);
    assert_success(&out);
    assert!(
        is_mounted(&v.sp()),
        "env mount exited 0 but nothing is mounted"
    );
    assert_eq!(
        vpy_ok(&a, "import sfpkg, sfother; print(sfpkg.VALUE, sfother.WHO)"),
        "sfpkg-value other\n"
    );
    let out = venv_run(&a, "sftool", &[]);
    assert_success(&out);
    assert_eq!(
        ls(),
        format!(
            "{}\tmounted\t2 dists\n{}\tmounted\t1 dists\n",
            a.display(),
            b.display()
        )
    );

    let out = sitefs([os("env"), os("rm"), a.as_os_str()]);
    assert_success(&out);
    assert!(!is_mounted(&v.sp()));
    assert!(!a.exists(), "env rm left {}", a.display());
    assert_eq!(ls(), format!("{}\tmounted\t1 dists\n", b.display()));
    let out = sitefs([os("env"), os("rm"), b.as_os_str()]);
    assert_success(&out);
    assert_eq!(ls(), "");
    assert!(!b.exists());
    // Commands on a removed env say it is not one.
    let err = failure(&sitefs([os("env"), os("mount"), a.as_os_str()]));
    assert!(err.contains("is not a sitefs environment"), "{err}");
}

// ---------------------------------------------------------------------------
// 9. Errors
// ---------------------------------------------------------------------------

#[test]
fn create_into_a_non_empty_directory_fails_and_leaves_it_untouched() {
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    let venv = work.path("venv/keep.txt").parent().unwrap().to_path_buf();
    fs::write(venv.join("keep.txt"), "mine\n").unwrap();
    let _guard = Venv::guard(&venv);
    let err = failure(&work.create_cmd(&venv, &[pkg.as_os_str()]));
    assert!(
        err.contains(&format!("{} already exists", venv.display())),
        "{err}"
    );
    assert_eq!(names_in(&venv), ["keep.txt"]);
    assert_eq!(fs::read_to_string(venv.join("keep.txt")).unwrap(), "mine\n");
    assert_eq!(
        names_in(&work.root)
            .iter()
            .filter(|n| n.starts_with('.'))
            .count(),
        0,
        "staging leftovers"
    );
    assert!(!is_mounted(&site_packages(&venv)));
}

#[test]
fn conflicting_wheels_fail_with_the_conflict_and_create_nothing() {
    let work = Work::new();
    let a = work.wheel(
        &WheelBuilder::new("sfa", "1.0")
            .file("sfa/__init__.py", "")
            .file("shared/data.txt", "from a\n"),
    );
    let b = work.wheel(
        &WheelBuilder::new("sfb", "1.0")
            .file("sfb/__init__.py", "")
            .file("shared/data.txt", "from b\n"),
    );
    let c = work.wheel(
        &WheelBuilder::new("sfc", "1.0")
            .file("sfc/__init__.py", "")
            .file("shared/data.txt", "from a\n"),
    );
    let parent = work.path("envs/x").parent().unwrap().to_path_buf();
    let venv = parent.join("venv");
    let _guard = Venv::guard(&venv);
    let err = failure(&work.create_cmd(&venv, &[a.as_os_str(), b.as_os_str()]));
    assert!(
        err.contains("file conflict: shared/data.txt is provided by both"),
        "{err}"
    );
    assert!(err.contains("sfa") && err.contains("sfb"), "{err}");
    assert!(!venv.exists());
    assert_eq!(
        names_in(&parent),
        Vec::<String>::new(),
        "leftovers beside the venv"
    );

    // The same file with the same content in two dists is fine.
    let v = work.create(&venv, &[a.as_os_str(), c.as_os_str()]);
    assert_eq!(
        fs::read_to_string(v.sp().join("shared/data.txt")).unwrap(),
        "from a\n"
    );
}

#[test]
fn two_dists_writing_different_scripts_to_one_bin_path_is_a_conflict() {
    // The design: "a different file [at one path] is a conflict: pip
    // silently lets the later win ... Say clearly what happened." bin/ is
    // part of the env as much as site-packages; a silent overwrite also
    // leaves the loser's RECORD with a wrong hash for bin/sfdup.
    let work = Work::new();
    let a = work.wheel(
        &WheelBuilder::new("sfa", "1.0")
            .file("sfa/__init__.py", "def main():\n    print('a')\n")
            .entry_points("[console_scripts]\nsfdup = sfa:main\n"),
    );
    let b = work.wheel(
        &WheelBuilder::new("sfb", "1.0")
            .file("sfb/__init__.py", "def main():\n    print('b')\n")
            .entry_points("[console_scripts]\nsfdup = sfb:main\n"),
    );
    let venv = work.path("venv");
    let guard = Venv::guard(&venv);
    let out = work.create_cmd(&venv, &[a.as_os_str(), b.as_os_str()]);
    if out.status.success() {
        let script = fs::read_to_string(guard.bin("sfdup")).unwrap_or_default();
        let records: Vec<String> = ["sfa-1.0.dist-info", "sfb-1.0.dist-info"]
            .iter()
            .map(|d| fs::read_to_string(guard.sp().join(d).join("RECORD")).unwrap_or_default())
            .map(|r| {
                r.lines()
                    .filter(|l| l.contains("bin/sfdup"))
                    .collect::<Vec<_>>()
                    .join("")
            })
            .collect();
        panic!(
            "env create accepted two different bin/sfdup and kept one silently:\n{script}\nRECORD rows: {records:?}\nbin/sfdup hashes to sha256={}",
            record_hash(script.as_bytes())
        );
    }
    let err = failure(&out);
    assert!(
        err.contains("bin/sfdup") && err.contains("sfa") && err.contains("sfb"),
        "{err}"
    );
    assert!(!venv.exists());
}

#[test]
fn a_missing_interpreter_fails_with_a_clear_message() {
    let work = Work::new();
    let pkg = work.wheel(&pkg_wheel());
    let venv = work.path("venv");
    let _guard = Venv::guard(&venv);
    let out = sitefs([
        os("env"),
        os("create"),
        venv.as_os_str(),
        os("--store"),
        work.store().as_os_str(),
        os("--python"),
        os("nope3.99"),
        pkg.as_os_str(),
    ]);
    let err = failure(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("`nope3.99` not found"), "{err}");
    assert!(!venv.exists());
}
