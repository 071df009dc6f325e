//! Every CPython this machine has (pyenv's 3.10-3.13 on these machines,
//! beside the test interpreter): for each, a real env from wheels built
//! for it, importing a compiled and a pure module, running a console
//! script and `pip list` through the mount.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The minor versions every CI machine must test.
const REQUIRED: [&str; 4] = ["3.10", "3.11", "3.12", "3.13"];

/// One interpreter per `3.X` found under `$(pyenv root)/versions`.
fn pythons() -> Vec<(String, PathBuf)> {
    let root = Command::new("pyenv")
        .arg("root")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".pyenv"));
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(root.join("versions"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut parts = name.split('.');
            let xy = format!("{}.{}", parts.next()?, parts.next()?);
            let exe = e.path().join(format!("bin/python{xy}"));
            (xy.starts_with("3.") && exe.is_file()).then_some((xy, exe))
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The interpreter's own bundled pip wheel (ensurepip), so `pip list`
/// runs the pip of that version.
fn bundled_pip(python: &str) -> Option<PathBuf> {
    let found = python_eval(
        python,
        "import ensurepip, glob, os\n\
         w = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl')))\n\
         print(w[-1] if w else '')",
    );
    (!found.is_empty()).then(|| PathBuf::from(found))
}

fn tag_of(python: &str) -> String {
    python_eval(
        python,
        "import sys, sysconfig; v = 'cp%d%d' % sys.version_info[:2]; \
         print(v + '-' + v + '-' + sysconfig.get_platform().replace('-', '_').replace('.', '_'))",
    )
}

/// `sitefs env rm` on drop (`Venv`'s guard knows only the test
/// interpreter's site-packages path).
struct EnvRm(PathBuf);

impl Drop for EnvRm {
    fn drop(&mut self) {
        let out = sitefs_command()
            .args([os("env"), os("rm"), self.0.as_os_str()])
            .output();
        if let Some(o) = out.ok().filter(|o| !o.status.success()) {
            eprintln!("env rm {}: {}", self.0.display(), stderr_of(&o));
        }
    }
}

fn one_interpreter(work: &Work, xy: &str, python: &Path) {
    let py = python.to_str().unwrap();
    let build = work.path(&format!("build-{xy}/x"));
    let build = build.parent().unwrap();
    let so = build_extension_module(py, "sfmulti_ext", build);
    let ext = WheelBuilder::new("sfmulti-ext", "1.0")
        .tag(&tag_of(py))
        .root_is_purelib(false)
        .file(&format!("sfmulti_ext{}", ext_suffix(py)), so);
    let pure = WheelBuilder::new("sfmulti", "1.0")
        .file(
            "sfmulti/__init__.py",
            "import sys\ndef main():\n    print('sfmulti on', '%d.%d' % sys.version_info[:2])\n",
        )
        .entry_points("[console_scripts]\nsfmulti = sfmulti:main\n");
    let dir = work.path(&format!("wheels-{xy}/x"));
    let dir = dir.parent().unwrap();
    let mut wheels = vec![ext.write_to(dir), pure.write_to(dir)];
    let pip = bundled_pip(py);
    if let Some(p) = &pip {
        wheels.push(p.clone());
    }
    let venv = work.path(&format!("venv-{xy}"));
    let _guard = EnvRm(venv.clone());
    let mut args = vec![
        os("env").to_os_string(),
        os("create").into(),
        venv.clone().into(),
        os("--store").into(),
        work.store().into(),
        os("--python").into(),
        python.into(),
    ];
    args.extend(wheels.iter().map(|w| w.clone().into_os_string()));
    assert_success(&sitefs(args));
    // Not guard.sp(): that is the test interpreter's X.Y.
    let sp = venv.join(format!("lib/python{xy}/site-packages"));
    assert!(is_mounted(&sp), "{xy}: {} is not mounted", sp.display());
    assert_eq!(
        vpy_ok(
            &venv,
            "import sys, sfmulti, sfmulti_ext; print('%d.%d' % sys.version_info[:2], sfmulti_ext.add(2, 3), sfmulti_ext.__file__.startswith(sys.prefix))"
        ),
        format!("{xy} 5 True\n"),
        "{xy}: imports"
    );
    let script = venv_run(&venv, "sfmulti", &[]);
    assert_success(&script);
    assert_eq!(
        stdout_of(&script),
        format!("sfmulti on {xy}\n"),
        "{xy}: script"
    );
    match pip {
        Some(_) => {
            let list = venv_run(
                &venv,
                "python",
                &["-m", "pip", "list", "--disable-pip-version-check"],
            );
            assert_success(&list);
            let text = stdout_of(&list);
            assert!(
                text.contains("sfmulti") && text.contains("sfmulti-ext"),
                "{xy}: pip list:\n{text}"
            );
        }
        None => cannot_run(
            &format!("pip list on {xy}"),
            "its ensurepip bundles no pip wheel",
        ),
    }
}

#[test]
fn every_cpython_on_the_machine_runs_a_sitefs_env() {
    let found = pythons();
    let have: Vec<&str> = found.iter().map(|(xy, _)| xy.as_str()).collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|r| !have.contains(r))
        .collect();
    if !missing.is_empty() {
        cannot_run(
            "every_cpython_on_the_machine_runs_a_sitefs_env",
            &format!("pyenv has no CPython {}", missing.join(", ")),
        );
    }
    let work = Work::new();
    for (xy, python) in found
        .iter()
        .filter(|(xy, _)| REQUIRED.contains(&xy.as_str()))
    {
        one_interpreter(&work, xy, python);
    }
}
