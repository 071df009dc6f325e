//! Hostile wheels and hostile neighbours: each test reproduces an attack
//! that worked on an earlier sitefs, against real `sitefs` processes,
//! real venvs and a real (private) interpreter, and checks it now fails
//! cleanly, with a one-line error and nothing written where it must not be.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

/// A copy of the test interpreter's binary in a directory of its own, with
/// its stdlib linked beside it: a "base interpreter" these tests may lose.
/// The real one must never be at risk, even while a bug is being fixed.
struct PrivatePython {
    exe: PathBuf,
}

impl PrivatePython {
    fn new(work: &Work) -> PrivatePython {
        let base = python_eval(real_python(), "import sys; print(sys._base_executable)");
        let base = fs::canonicalize(base).unwrap();
        let home = base.parent().unwrap().parent().unwrap();
        let dir = work.path("base/bin/x").parent().unwrap().to_path_buf();
        let exe = dir.join(format!("python{}", py_xy()));
        fs::copy(&base, &exe).unwrap();
        symlink(home.join("lib"), dir.parent().unwrap().join("lib")).unwrap();
        PrivatePython { exe }
    }

    fn digest(&self) -> String {
        sha256_hex(&fs::read(&self.exe).unwrap())
    }
}

fn create_with(
    work: &Work,
    python: &Path,
    venv: &Path,
    wheels: &[PathBuf],
) -> std::process::Output {
    let mut args: Vec<&OsStr> = vec![os("env"), os("create"), venv.as_os_str(), os("--store")];
    let store = work.store();
    args.push(store.as_os_str());
    args.push(os("--python"));
    args.push(python.as_os_str());
    args.extend(wheels.iter().map(|w| w.as_os_str()));
    sitefs(args)
}

#[test]
fn a_wheel_cannot_replace_the_venvs_interpreter_config_or_manifest() {
    let work = Work::new();
    let py = PrivatePython::new(&work);
    let before = py.digest();
    let xy = py_xy();
    let attacks: Vec<(&str, WheelBuilder)> = vec![
        (
            "console script `python`",
            WheelBuilder::new("evil-a", "1.0")
                .file("evil_a/__init__.py", "def main(): pass\n")
                .entry_points("[console_scripts]\npython = evil_a:main\n"),
        ),
        (
            ".data/scripts/pythonX.Y",
            WheelBuilder::new("evil-b", "1.0").data(
                "scripts",
                &format!("python{xy}"),
                "#!/bin/sh\necho pwned\n",
            ),
        ),
        (
            ".data/data/bin/pythonX.Y",
            WheelBuilder::new("evil-c", "1.0").data(
                "data",
                &format!("bin/python{xy}"),
                "#!/bin/sh\necho pwned\n",
            ),
        ),
        (
            ".data/data/sitefs.toml",
            WheelBuilder::new("evil-d", "1.0").data("data", "sitefs.toml", "version = 99\n"),
        ),
        (
            ".data/data/pyvenv.cfg",
            WheelBuilder::new("evil-e", "1.0").data("data", "pyvenv.cfg", "home = /nowhere\n"),
        ),
        (
            ".data/data/bin/activate",
            WheelBuilder::new("evil-f", "1.0").data("data", "bin/activate", "echo pwned\n"),
        ),
    ];
    for (i, (what, wheel)) in attacks.iter().enumerate() {
        let venv = work.path(&format!("v{i}"));
        let _guard = Venv::guard(&venv);
        let out = create_with(&work, &py.exe, &venv, &[work.wheel(wheel)]);
        let err = failure(&out);
        assert!(
            err.contains("which is the venv's own") && err.lines().count() == 1,
            "{what}: {err}"
        );
        assert_eq!(py.digest(), before, "{what}: the base interpreter changed");
        assert!(
            !venv.exists(),
            "{what}: a failed create left {}",
            venv.display()
        );
    }
    // `env add` of the same wheels to a working env: refused too, and the
    // env keeps its manifest and links.
    let venv = work.path("good");
    let ok = WheelBuilder::new("fine", "1.0").file("fine.py", "X = 1\n");
    let _guard = Venv::guard(&venv);
    assert_success(&create_with(&work, &py.exe, &venv, &[work.wheel(&ok)]));
    let manifest = fs::read(venv.join("sitefs.toml")).unwrap();
    for (what, wheel) in &attacks {
        let out = sitefs([
            os("env"),
            os("add"),
            venv.as_os_str(),
            work.wheel(wheel).as_os_str(),
        ]);
        assert!(
            failure(&out).contains("which is the venv's own"),
            "add {what}"
        );
        assert_eq!(
            py.digest(),
            before,
            "add {what}: the base interpreter changed"
        );
        assert_eq!(
            fs::read(venv.join("sitefs.toml")).unwrap(),
            manifest,
            "add {what}"
        );
    }
    assert_eq!(vpy_ok(&venv, "import fine; print(fine.X)"), "1\n");
}

#[test]
fn env_files_replace_links_instead_of_writing_through_them() {
    let work = Work::new();
    let victim = work.path("outside/victim");
    fs::write(&victim, "untouched\n").unwrap();
    let tool = WheelBuilder::new("tool", "1.0").data("scripts", "tool", "#!/bin/sh\necho tool\n");
    let venv = work.path("v");
    let _guard = work.create(&venv, &[work.wheel(&tool).as_os_str()]);
    // Someone (a user's own tool, or an earlier bug) left bin/tool as a
    // link out of the venv: repair replaces the link, it does not write
    // through it.
    let script = venv.join("bin/tool");
    fs::remove_file(&script).unwrap();
    symlink(&victim, &script).unwrap();
    assert_success(&sitefs([os("env"), os("repair"), venv.as_os_str()]));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched\n");
    let meta = fs::symlink_metadata(&script).unwrap();
    assert!(meta.is_file(), "bin/tool is a file again");
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        stdout_of(&venv_run(&venv, "tool", &[])),
        "tool\n",
        "the repaired script runs"
    );
}

#[test]
fn an_entry_point_cannot_inject_code_into_its_wrapper() {
    let work = Work::new();
    let marker = work.path("pwned");
    let value = format!(
        "os import getcwd;import os;os.system('touch {}');from os:getcwd",
        marker.display()
    );
    let evil = WheelBuilder::new("inject", "1.0")
        .file("inject/__init__.py", "")
        .entry_points(&format!("[console_scripts]\ninject = {value}\n"));
    let out = work.store_add(&work.wheel(&evil));
    let err = failure(&out);
    assert!(
        err.contains("entry_points.txt") && err.contains("module:attr"),
        "{err}"
    );
    // Nothing was stored, and env create refuses it the same way.
    let venv = work.path("v");
    let _guard = Venv::guard(&venv);
    let err = failure(&work.create_cmd(&venv, &[work.wheel(&evil).as_os_str()]));
    assert!(err.contains("module:attr"), "{err}");
    assert!(!marker.exists());
}

#[test]
fn a_wheel_with_a_file_where_a_directory_is_cannot_enter_the_store() {
    let work = Work::new();
    let evil = WheelBuilder::new("shape", "1.0")
        .file("shape/data", "a file\n")
        .file("shape/data/inner.py", "X = 1\n");
    let err = failure(&work.store_add(&work.wheel(&evil)));
    assert!(err.contains("both a file and the directory"), "{err}");
    // purelib and the root are one directory once installed.
    let evil = WheelBuilder::new("shape2", "1.0")
        .file("pkg", "a file\n")
        .data("purelib", "pkg/mod.py", "X = 1\n");
    let err = failure(&work.store_add(&work.wheel(&evil)));
    assert!(err.contains("both a file and the directory"), "{err}");
    assert!(
        names_in(&work.store().join("dists")).is_empty(),
        "nothing was stored"
    );
}

#[test]
fn env_create_never_uses_a_stage_someone_else_prepared() {
    let work = Work::new();
    // A world-writable sticky parent, like /tmp, where another user
    // prepared every staging name an earlier sitefs could pick (the pid
    // of the next processes) with a bin/python of their own.
    let parent = work.path("shared/x").parent().unwrap().to_path_buf();
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o1777)).unwrap();
    let me = std::process::id();
    for pid in me..me + 400 {
        let trap = parent.join(format!(".app.sitefs-{pid}"));
        fs::create_dir_all(trap.join("bin")).unwrap();
        fs::write(trap.join("bin/python"), "#!/bin/sh\necho attacker\n").unwrap();
        std::os::unix::fs::chown(&trap, Some(65534), Some(65534)).unwrap();
        fs::set_permissions(&trap, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let ok = WheelBuilder::new("fine", "1.0").file("fine.py", "X = 1\n");
    let venv = parent.join("app");
    let _guard = work.create(&venv, &[work.wheel(&ok).as_os_str()]);
    let python = fs::read_link(venv.join("bin/python")).unwrap();
    assert!(
        python.to_string_lossy().starts_with("python"),
        "{}",
        python.display()
    );
    assert_eq!(vpy_ok(&venv, "import fine; print(fine.X)"), "1\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&venv).unwrap().uid(), 0, "the venv is ours");
}
