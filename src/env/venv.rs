//! The venv skeleton, exactly as `python -m venv --without-pip` makes it
//! (pyvenv.cfg, `bin/python*` links, activate scripts, `include/`,
//! `lib64 -> lib`), written by us because starting Python's venv module
//! would cost more than the rest of `env create` together.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::interpreter::Interpreter;

/// Activate scripts shipped in the stdlib's `venv/scripts/` directory.
const ACTIVATE_SCRIPTS: [(&str, &str); 4] = [
    ("common", "activate"),
    ("common", "Activate.ps1"),
    ("posix", "activate.csh"),
    ("posix", "activate.fish"),
];

pub use crate::install::site_packages;

/// The venv-relative paths the skeleton owns: its config, interpreter
/// links, activate scripts, `lib64` and site-packages (the mount), plus the
/// env's manifest. A dist may install nothing at or under them: writing
/// `bin/python` would write *through* the link into the base interpreter,
/// and a `.data/data/sitefs.toml` would replace the env's manifest.
pub fn skeleton_paths(interp: &Interpreter) -> Vec<String> {
    let mut out: Vec<String> = ["pyvenv.cfg", "lib64", crate::env::MANIFEST_NAME]
        .into_iter()
        .map(String::from)
        .collect();
    out.extend(
        python_links(interp)
            .into_iter()
            .map(|(name, _)| format!("bin/{name}")),
    );
    out.extend(ACTIVATE_SCRIPTS.iter().map(|(_, f)| format!("bin/{f}")));
    out.push(site_packages(&interp.version));
    out
}

/// The first skeleton path that `path` (venv-relative) is or lies under.
pub fn claims<'s>(skeleton: &'s [String], path: &str) -> Option<&'s str> {
    skeleton
        .iter()
        .find(|s| {
            path == s.as_str()
                || path
                    .strip_prefix(s.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
        .map(String::as_str)
}

/// Write the skeleton of a venv into `dir`, with every path inside it
/// naming `final_dir` (the two differ when building in a staging directory
/// that is renamed into place afterwards).
pub fn create_skeleton(dir: &Path, final_dir: &Path, interp: &Interpreter) -> io::Result<()> {
    let lib = dir.join(site_packages(&interp.version));
    fs::create_dir_all(&lib)?;
    fs::create_dir_all(dir.join(format!("include/python{}", interp.version)))?;
    fs::create_dir_all(dir.join("bin"))?;
    symlink("lib", dir.join("lib64"))?;
    fs::write(dir.join("pyvenv.cfg"), pyvenv_cfg(final_dir, interp))?;
    link_pythons(&dir.join("bin"), interp)?;
    write_activate_scripts(dir, final_dir, interp)
}

fn pyvenv_cfg(final_dir: &Path, interp: &Interpreter) -> String {
    let home = interp.base_executable.parent().unwrap_or(Path::new("/"));
    let real = fs::canonicalize(&interp.executable).unwrap_or(interp.executable.clone());
    format!(
        "home = {}\ninclude-system-site-packages = false\nversion = {}\nexecutable = {}\ncommand = {} -m venv --without-pip {}\n",
        home.display(),
        interp.full_version,
        real.display(),
        interp.executable.display(),
        final_dir.display()
    )
}

/// `python3.X -> <base executable>`, `python` and `python3` -> `python3.X`.
fn link_pythons(bin: &Path, interp: &Interpreter) -> io::Result<()> {
    for (name, target) in python_links(interp) {
        symlink(target, bin.join(name))?;
    }
    Ok(())
}

/// The `bin/` links as (name, target): the base executable's own name
/// pointing at it, the other spellings pointing at that name.
fn python_links(interp: &Interpreter) -> Vec<(String, PathBuf)> {
    let exe_name = interp
        .base_executable
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("python{}", interp.version));
    let mut out = vec![(exe_name.clone(), interp.base_executable.clone())];
    for alias in ["python", "python3", &format!("python{}", interp.version)] {
        if alias != exe_name {
            out.push((alias.to_string(), PathBuf::from(&exe_name)));
        }
    }
    out
}

/// Copy the interpreter's own activate templates with venv's
/// substitutions, so each Python version gets the scripts it ships.
fn write_activate_scripts(dir: &Path, final_dir: &Path, interp: &Interpreter) -> io::Result<()> {
    let templates = Path::new(&interp.stdlib).join("venv/scripts");
    let name = final_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let exe_name = interp
        .base_executable
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (sub, file) in ACTIVATE_SCRIPTS {
        let Ok(text) = fs::read_to_string(templates.join(sub).join(file)) else {
            continue;
        };
        let text = text
            .replace("__VENV_DIR__", &final_dir.display().to_string())
            .replace("__VENV_NAME__", &name)
            .replace("__VENV_PROMPT__", &format!("({name}) "))
            .replace("__VENV_BIN_NAME__", "bin")
            .replace(
                "__VENV_PYTHON__",
                &final_dir.join("bin").join(&exe_name).display().to_string(),
            );
        fs::write(dir.join("bin").join(file), text)?;
    }
    Ok(())
}
