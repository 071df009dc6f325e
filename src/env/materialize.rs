//! `sitefs env materialize VENV`: turn a sitefs env back into a plain
//! venv with real files, e.g. before handing it to a tool that must write
//! into site-packages.
//!
//! The new site-packages is built beside the mount from a private mount
//! of the same manifest (so it is byte for byte what the env served),
//! without the store's unchecked-hash pycs (a writable tree needs pycs
//! that notice edits: the venv's own interpreter compiles ordinary
//! timestamp pycs, as pip does). Then the env is unmounted and the new
//! directory renamed onto the empty mountpoint, and only after that are
//! the manifest and the gc root removed: an interruption at any point
//! leaves either the working env or the working plain venv, and running
//! the command again finishes the job.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::{EnvError, EnvPaths};
use crate::mount::daemon;
use crate::mount::mountinfo::is_mount_point;
use crate::mount::options::MountOpts;
use crate::mount::unmount::unmount;
use crate::store::roots;
use crate::store::{io_at, Store};

/// Make `venv` a plain venv; returns the number of files written.
pub fn materialize(venv: &Path) -> Result<usize, EnvError> {
    let paths = EnvPaths::new(venv);
    let m = paths.load()?;
    let sp = paths.site_packages(&m);
    let parent = sp.parent().unwrap_or(Path::new("/")).to_path_buf();
    clear_leftovers(&parent);
    let pid = std::process::id();
    let staged = parent.join(format!(".site-packages.materialize.{pid}"));
    let source = parent.join(format!(".site-packages.source.{pid}"));
    let files = copy_from_private_mount(&paths.manifest, &source, &staged);
    let _ = fs::remove_dir(&source);
    let files = files.inspect_err(|_| {
        let _ = fs::remove_dir_all(&staged);
    })?;
    compile(&paths.venv, &staged, &sp).inspect_err(|_| {
        let _ = fs::remove_dir_all(&staged);
    })?;
    swap_in(&sp, &staged)?;
    if let Ok(store) = Store::open(&m.store_path(&paths.manifest)) {
        roots::deregister_env(&store, &paths.venv);
    }
    fs::remove_file(&paths.manifest).map_err(io_at(&paths.manifest))?;
    Ok(files)
}

/// Staging and source directories of an interrupted earlier run.
fn clear_leftovers(dir: &Path) {
    for e in fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".site-packages.materialize.")
            || name.starts_with(".site-packages.old.")
        {
            let _ = fs::remove_dir_all(e.path());
        } else if name.starts_with(".site-packages.source.") && !is_mount_point(&e.path()) {
            let _ = fs::remove_dir(e.path());
        }
    }
}

fn copy_from_private_mount(
    manifest: &Path,
    source: &Path,
    staged: &Path,
) -> Result<usize, EnvError> {
    fs::create_dir_all(source).map_err(io_at(source))?;
    let p = daemon::prepare(manifest, source)?;
    daemon::launch(p, &MountOpts::default(), false)?;
    let copied = copy_tree(source, staged).map_err(|source_err| EnvError::Copy {
        from: source.to_path_buf(),
        source: source_err,
    });
    unmount(source)?;
    copied
}

/// Copy a tree with its modes, leaving out `__pycache__` directories.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<usize> {
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    let mut n = 0;
    for e in fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            if e.file_name() != "__pycache__" {
                n += copy_tree(&src, &dst)?;
            }
        } else {
            fs::copy(&src, &dst)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Timestamp pycs for the tree, named as if compiled in place.
fn compile(venv: &Path, staged: &Path, final_dir: &Path) -> Result<(), EnvError> {
    let out = Command::new(venv.join("bin/python"))
        .args(["-m", "compileall", "-q", "-j", "0", "-d"])
        .arg(final_dir)
        .arg(staged)
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .output()
        .map_err(|source| EnvError::Run {
            program: venv.join("bin/python"),
            source,
        })?;
    // compileall exits 1 when a file does not compile (pip ignores those
    // too: e.g. Python-2-only test fixtures shipped in wheels).
    if out.status.code().is_none_or(|c| c > 1) {
        return Err(EnvError::Compileall {
            dir: staged.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Unmount the env and rename the staged tree onto the empty mountpoint.
fn swap_in(sp: &Path, staged: &Path) -> Result<(), EnvError> {
    if is_mount_point(sp) {
        unmount(sp)?;
    }
    if fs::rename(staged, sp).is_ok() {
        return Ok(());
    }
    // Not empty (files left under a mount by an interrupted adopt): move
    // them aside first.
    let old: PathBuf = sp.with_file_name(format!(".site-packages.old.{}", std::process::id()));
    fs::rename(sp, &old).map_err(io_at(sp))?;
    fs::rename(staged, sp).map_err(io_at(sp))?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}
