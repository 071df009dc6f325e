//! `sitefs adopt VENV`: turn a venv made by pip, uv or tox into a sitefs
//! env without downloading anything.
//!
//! Each installed distribution is read back from its files and its
//! `RECORD`: every recorded hash is checked against the bytes on disk (a
//! file edited since install stops the adoption, naming it), and the
//! files are repacked, in a fixed order with fixed timestamps, into a
//! wheel as the dist's build would have looked — site-packages files at
//! the root, scripts/headers/data under `.data/`, the installer's own
//! files (`INSTALLER`, `REQUESTED`, `RECORD`, pycs, generated entry-point
//! scripts) left out. That wheel goes through the normal, fully verifying
//! ingest, so adopting ten identical venvs stores each dist once.
//!
//! The switch never leaves the venv without a working site-packages: the
//! mount goes *over* the existing directory, and only then are the files
//! underneath deleted, through a descriptor opened before the mount
//! (`/proc/self/fd/N` reaches the covered directory). `bin/`, `pyvenv.cfg`
//! and everything else in the venv stay as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::env::{EnvError, MANIFEST_NAME};
use crate::hashing::Digest;
use crate::interpreter::Interpreter;
use crate::manifest::{DistRef, EnvSpec, Manifest};
use crate::mount::daemon;
use crate::mount::mountinfo::is_mount_point;
use crate::mount::options::MountOpts;
use crate::store::bytecode::CompilerPool;
use crate::store::ingest::IngestError;
use crate::store::ingest::{self, IngestOptions};
use crate::store::layout::Dir;
use crate::store::lock::UseGuard;
use crate::store::roots;
use crate::store::{io_at, Store};
use crate::wheel::{
    csv_field, first_header, parse_entry_points, parse_metadata, parse_record, verify_bytes,
    RecordHash, RecordRow, WheelError,
};

/// Files a dist-info holds only because of how it was installed.
const INSTALL_FILES: [&str; 3] = ["INSTALLER", "REQUESTED", "RECORD"];

/// Files virtualenv and uv put in site-packages outside any dist: a shim
/// that fixes install paths for old distutils/setuptools *builds*.
/// Importing installed packages never needs it, so adoption drops it and
/// says so.
const VENV_TOOL_FILES: [&str; 2] = ["_virtualenv.py", "_virtualenv.pth"];

/// What adoption found or did.
#[derive(Debug, Default)]
pub struct AdoptReport {
    pub dists: usize,
    /// Bytes of site-packages that the mount replaces.
    pub site_packages_bytes: u64,
    /// Bytes of content the store did not hold yet.
    pub new_bytes: u64,
    /// virtualenv/uv shim files that the mount does not carry over.
    pub dropped: Vec<String>,
}

/// One installed file, verified, and where it goes in the wheel.
struct Member {
    name: String,
    bytes: Vec<u8>,
    /// sha256 of `bytes`, computed once (verification, the store lookup
    /// and the wheel's RECORD all need it).
    sha256: Digest,
    executable: bool,
}

/// One installed dist, ready to be written as a wheel.
struct Installed {
    name: String,
    version: String,
    dist_info: String,
    tag: String,
    requested: bool,
    members: Vec<Member>,
}

/// The venv's site-packages and interpreter.
struct Venv {
    root: PathBuf,
    site_packages: PathBuf,
    interp: Interpreter,
}

/// Why a venv cannot be adopted; each names the file or dist and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("{0} is already a sitefs env (it has {MANIFEST_NAME})")]
    AlreadyAnEnv(PathBuf),
    #[error("{0} is not a venv (no pyvenv.cfg or bin/python)")]
    NotAVenv(PathBuf),
    #[error("{0} is already a mount")]
    AlreadyMounted(PathBuf),
    #[error("{count} file(s) in {dir} belong to no installed distribution (e.g. {examples}): adopting would drop them; move them out of site-packages or install them as a package")]
    Unowned {
        count: usize,
        dir: PathBuf,
        examples: String,
    },
    #[error("{path}: {source}")]
    BadDistInfo {
        path: PathBuf,
        #[source]
        source: WheelError,
    },
    #[error("{name} {version} is an editable install (its code lives outside the venv): uninstall it or install it normally, then adopt")]
    Editable { name: String, version: String },
    #[error("{dist}: {path} is listed in its RECORD but unreadable: {source}")]
    Unreadable {
        dist: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{dist}: {path} was changed after install ({source}); reinstall it (`pip install --force-reinstall {dist}`) or leave this venv as it is")]
    Changed {
        dist: String,
        path: PathBuf,
        #[source]
        source: WheelError,
    },
    #[error("{path} is outside the venv {venv}: cannot adopt it")]
    Outside { path: PathBuf, venv: PathBuf },
    #[error("{name} {version}: {source}")]
    Ingest {
        name: String,
        version: String,
        #[source]
        source: IngestError,
    },
    #[error("{file}: {source}")]
    Repack {
        file: String,
        #[source]
        source: zip::result::ZipError,
    },
}

fn open_venv(venv: &Path, probe_cache: Option<&Path>) -> Result<Venv, EnvError> {
    let root = std::path::absolute(venv).map_err(io_at(venv))?;
    if root.join(MANIFEST_NAME).exists() {
        return Err(AdoptError::AlreadyAnEnv(root).into());
    }
    let python = root.join("bin/python");
    if !root.join("pyvenv.cfg").is_file() || !python.exists() {
        return Err(AdoptError::NotAVenv(root).into());
    }
    let interp = match probe_cache {
        Some(dir) => Interpreter::probe_cached(python.as_os_str(), dir),
        None => Interpreter::probe(python.as_os_str()),
    }?;
    let site_packages = root.join(crate::env::venv::site_packages(&interp.version));
    if is_mount_point(&site_packages) {
        return Err(AdoptError::AlreadyMounted(site_packages).into());
    }
    Ok(Venv {
        root,
        site_packages,
        interp,
    })
}

/// Adopt `venv` into `store`; with `dry_run`, only measure.
pub fn adopt(
    venv: &Path,
    store_path: &Path,
    opts: &MountOpts,
    dry_run: bool,
    quiet: bool,
) -> Result<AdoptReport, EnvError> {
    // Nothing is written (not even a new store) until the venv has been
    // read and verified, and never in a dry run.
    let existing = Store::open(store_path).ok();
    let cache = existing.as_ref().map(|s| s.path(Dir::Interpreters));
    let v = open_venv(venv, cache.as_deref().filter(|_| !dry_run))?;
    let (dists, dropped) = read_installed(&v)?;
    let store = match (dry_run, existing) {
        (true, existing) => existing,
        (false, Some(s)) => Some(s),
        (false, None) => Some(Store::create(store_path)?),
    };
    let mut report = AdoptReport {
        dists: dists.len(),
        site_packages_bytes: crate::store::gc::disk_usage(&v.site_packages),
        new_bytes: 0,
        dropped,
    };
    report.new_bytes = dists
        .iter()
        .flat_map(|d| &d.members)
        .filter(|m| {
            let known = |s: &Store| s.object_path(&m.sha256).exists();
            !store.as_ref().is_some_and(known)
        })
        .map(|m| m.bytes.len() as u64)
        .sum();
    let Some(store) = store.filter(|_| !dry_run) else {
        return Ok(report);
    };
    store.require_writable()?;
    let _use = UseGuard::acquire(store.root());
    let refs = ingest_installed(&store, &v, &dists, quiet)?;
    let manifest = Manifest::new(
        store.root(),
        &v.interp,
        Some(EnvSpec {
            prefix: v.root.clone(),
        }),
        refs,
    );
    switch_to_mount(&store, &v, &manifest, opts)?;
    Ok(report)
}

/// Every dist-info of site-packages, read and verified, plus a check
/// that no file there belongs to nobody (it would vanish under the mount).
fn read_installed(v: &Venv) -> Result<(Vec<Installed>, Vec<String>), EnvError> {
    let mut dists = Vec::new();
    let mut owned: BTreeSet<PathBuf> = BTreeSet::new();
    let mut entries: Vec<String> = fs::read_dir(&v.site_packages)
        .map_err(io_at(&v.site_packages))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    entries.sort();
    for name in entries.iter().filter(|n| n.ends_with(".dist-info")) {
        let d = read_dist(v, name, &mut owned)?;
        dists.push(d);
    }
    let (dropped, unowned): (Vec<PathBuf>, Vec<PathBuf>) =
        unowned_files(&v.site_packages, &v.site_packages, &owned)
            .into_iter()
            .partition(|p| VENV_TOOL_FILES.iter().any(|t| p == Path::new(t)));
    if !unowned.is_empty() {
        let shown: Vec<String> = unowned
            .iter()
            .take(5)
            .map(|p| p.display().to_string())
            .collect();
        return Err(AdoptError::Unowned {
            count: unowned.len(),
            dir: v.site_packages.clone(),
            examples: shown.join(", "),
        }
        .into());
    }
    let dropped = dropped.iter().map(|p| p.display().to_string()).collect();
    Ok((dists, dropped))
}

fn read_dist(
    v: &Venv,
    dist_info: &str,
    owned: &mut BTreeSet<PathBuf>,
) -> Result<Installed, EnvError> {
    let di = v.site_packages.join(dist_info);
    let read = |f: &str| fs::read_to_string(di.join(f)).map_err(io_at(&di.join(f)));
    let bad = |f: &str| {
        let path = di.join(f);
        move |source| AdoptError::BadDistInfo { path, source }
    };
    let (name, version) = parse_metadata(&read("METADATA")?).map_err(bad("METADATA"))?;
    if let Ok(direct) = fs::read_to_string(di.join("direct_url.json")) {
        if direct.contains("\"editable\": true") || direct.contains("\"editable\":true") {
            return Err(AdoptError::Editable { name, version }.into());
        }
    }
    let record = parse_record(&read("RECORD")?).map_err(bad("RECORD"))?;
    let scripts = entry_point_scripts(&di);
    let tag = read("WHEEL")
        .ok()
        .and_then(|w| first_header(&w, "Tag").map(str::to_string))
        .unwrap_or_else(|| "py3-none-any".into());
    let mut members = Vec::new();
    let mut paths: Vec<&String> = record.keys().collect();
    paths.sort();
    for path in paths {
        owned.insert(normalize_lexically(&v.site_packages.join(path)));
        if let Some(m) = member(v, dist_info, path, &record[path], &scripts, &name)? {
            members.push(m);
        }
    }
    Ok(Installed {
        requested: di.join("REQUESTED").exists(),
        name,
        version,
        dist_info: dist_info.to_string(),
        tag,
        members,
    })
}

/// The console and GUI script names: their bin/ files are generated at
/// install time, not part of the dist.
fn entry_point_scripts(dist_info: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(dist_info.join("entry_points.txt")).unwrap_or_default();
    let eps = parse_entry_points(&text);
    ["console_scripts", "gui_scripts"]
        .iter()
        .filter_map(|g| eps.get(*g))
        .flat_map(|m| m.keys().cloned())
        .collect()
}

/// Read and verify one RECORD row; `None` for files the installer made.
fn member(
    v: &Venv,
    dist_info: &str,
    path: &str,
    row: &RecordRow,
    scripts: &BTreeSet<String>,
    dist: &str,
) -> Result<Option<Member>, EnvError> {
    let in_dist_info = path.strip_prefix(&format!("{dist_info}/"));
    if in_dist_info.is_some_and(|f| INSTALL_FILES.contains(&f)) || is_pyc(path) {
        return Ok(None);
    }
    let full = normalize_lexically(&v.site_packages.join(path));
    let Some(name) = wheel_name(v, &full, scripts)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    File::open(&full)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| AdoptError::Unreadable {
            dist: dist.to_string(),
            path: full.clone(),
            source,
        })?;
    let verified = verify_bytes(path, row, &bytes).map_err(|source| AdoptError::Changed {
        dist: dist.to_string(),
        path: full.clone(),
        source,
    })?;
    let executable = fs::metadata(&full)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    let sha256 = if name.starts_with("{data}/scripts/") {
        bytes = unrewrite_shebang(bytes, &v.root);
        Digest::of(&bytes)
    } else {
        verified
    };
    Ok(Some(Member {
        name,
        bytes,
        sha256,
        executable,
    }))
}

fn is_pyc(path: &str) -> bool {
    path.ends_with(".pyc") && path.contains("__pycache__/")
}

/// Where an installed file sits in the wheel: a site-packages path, or
/// `.data/<scheme>/...` for scripts, headers and data. `None` for
/// generated entry-point scripts.
fn wheel_name(
    v: &Venv,
    full: &Path,
    scripts: &BTreeSet<String>,
) -> Result<Option<String>, EnvError> {
    if let Ok(rel) = full.strip_prefix(&v.site_packages) {
        return Ok(Some(rel.to_string_lossy().into_owned()));
    }
    let rel = full
        .strip_prefix(&v.root)
        .map_err(|_| AdoptError::Outside {
            path: full.to_path_buf(),
            venv: v.root.clone(),
        })?;
    let rel_s = rel.to_string_lossy();
    if let Some(script) = rel_s.strip_prefix("bin/") {
        if scripts.contains(script) {
            return Ok(None);
        }
        return Ok(Some(format!("{{data}}/scripts/{script}")));
    }
    let headers = format!("include/site/python{}/", v.interp.version);
    if let Some(h) = rel_s.strip_prefix(&headers) {
        let h = h.split_once('/').map_or(h, |(_, rest)| rest);
        return Ok(Some(format!("{{data}}/headers/{h}")));
    }
    Ok(Some(format!("{{data}}/data/{rel_s}")))
}

/// pip turns a script's `#!python` into `#!<venv>/bin/python`; undo it so
/// the stored script fits any venv.
fn unrewrite_shebang(bytes: Vec<u8>, venv: &Path) -> Vec<u8> {
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let first = String::from_utf8_lossy(&bytes[..line_end]);
    let ours = format!("#!{}/bin/python", venv.display());
    if !first.starts_with(&ours) {
        return bytes;
    }
    let tail = &first[ours.len()..];
    let suffix = if tail.starts_with('w') { "w" } else { "" };
    let mut out = format!("#!python{suffix}").into_bytes();
    out.extend_from_slice(&bytes[line_end..]);
    out
}

/// `a/b/../c` -> `a/c`, without touching the disk (RECORD paths of
/// scripts are `../../../bin/x` relative to site-packages).
fn normalize_lexically(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Files under `dir` that no RECORD lists, ignoring bytecode caches.
fn unowned_files(dir: &Path, top: &Path, owned: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let p = e.path();
        if e.file_name() == "__pycache__" {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(unowned_files(&p, top, owned));
        } else if !owned.contains(&p) {
            out.push(p.strip_prefix(top).unwrap_or(&p).to_path_buf());
        }
    }
    out
}

/// Write each dist as a wheel under the store's `tmp/`, ingest them all
/// (compiling bytecode with the venv's interpreter), and name them.
fn ingest_installed(
    store: &Store,
    v: &Venv,
    dists: &[Installed],
    quiet: bool,
) -> Result<Vec<DistRef>, EnvError> {
    let dir = store
        .tmp_dir()
        .join(format!("adopt.{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    let result = (|| {
        // A dist whose wheel the store already holds (an earlier adoption
        // of an identical venv) needs no file and no ingest.
        let mut refs: Vec<Option<DistRef>> = Vec::new();
        let mut wheels = Vec::new();
        let mut fresh = Vec::new();
        for d in dists {
            let (file_name, bytes) = wheel_bytes(d)?;
            let known = ingest::stored_dist(store, &file_name, &bytes, &[&v.interp.cache_tag]);
            refs.push(known.map(|m| DistRef::of(&m, d.requested)));
            if refs.last().is_some_and(|r| r.is_none()) {
                let path = dir.join(&file_name);
                fs::write(&path, &bytes).map_err(io_at(&path))?;
                wheels.push(path);
                fresh.push(refs.len() - 1);
            }
        }
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pools = [CompilerPool::lazy(&v.interp, workers)];
        let opts = IngestOptions {
            quiet,
            ..Default::default()
        };
        for (&i, r) in fresh
            .iter()
            .zip(ingest::add_wheels(store, &wheels, &pools, &opts))
        {
            let d = &dists[i];
            let meta = r.result.map_err(|source| AdoptError::Ingest {
                name: d.name.clone(),
                version: d.version.clone(),
                source,
            })?;
            refs[i] = Some(DistRef::of(meta.meta(), d.requested));
        }
        Ok(refs.into_iter().flatten().collect())
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

/// A deterministic wheel of one installed dist, as (file name, bytes):
/// sorted entries, fixed timestamps, stored (not deflated: it is read
/// once, right away).
fn wheel_bytes(d: &Installed) -> Result<(String, Vec<u8>), EnvError> {
    let stem = d.dist_info.trim_end_matches(".dist-info");
    let data_dir = format!("{stem}.data");
    let file = format!("{stem}-{}.whl", d.tag);
    let mut members: BTreeMap<String, &Member> = BTreeMap::new();
    for m in &d.members {
        members.insert(m.name.replace("{data}", &data_dir), m);
    }
    let record_name = format!("{}/RECORD", d.dist_info);
    let mut record = String::new();
    for (name, m) in &members {
        let digest = m.sha256;
        record += &format!(
            "{},{},{}\n",
            csv_field(name),
            RecordHash::sha256_field(&digest),
            m.bytes.len()
        );
    }
    record += &format!("{},,\n", csv_field(&record_name));
    let write = || -> zip::result::ZipResult<Vec<u8>> {
        let mut zw = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = |exec: bool| {
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .unix_permissions(if exec { 0o755 } else { 0o644 })
                .large_file(true)
        };
        for (name, m) in &members {
            zw.start_file(name.as_str(), opts(m.executable))?;
            zw.write_all(&m.bytes)?;
        }
        zw.start_file(record_name.as_str(), opts(false))?;
        zw.write_all(record.as_bytes())?;
        Ok(zw.finish()?.into_inner())
    };
    let bytes = write().map_err(|source| AdoptError::Repack {
        file: file.clone(),
        source,
    })?;
    Ok((file, bytes))
}

/// Mount the manifest over the venv's site-packages, then delete the
/// covered files; record the env as a gc root.
fn switch_to_mount(
    store: &Store,
    v: &Venv,
    manifest: &Manifest,
    opts: &MountOpts,
) -> Result<(), EnvError> {
    let manifest_path = v.root.join(MANIFEST_NAME);
    manifest
        .save(&manifest_path)
        .map_err(io_at(&manifest_path))?;
    let covered = File::open(&v.site_packages).map_err(io_at(&v.site_packages))?;
    let mounted = daemon::prepare(&manifest_path, &v.site_packages)
        .and_then(|p| daemon::launch(p, opts, false));
    if let Err(e) = mounted {
        let _ = fs::remove_file(&manifest_path);
        return Err(e.into());
    }
    let ids: Vec<String> = manifest.dists.iter().map(|d| d.id.clone()).collect();
    roots::register_env(store, &v.root, &manifest_path, &ids)?;
    let under = PathBuf::from(format!("/proc/self/fd/{}", covered.as_raw_fd()));
    for e in fs::read_dir(&under)
        .map_err(io_at(&v.site_packages))?
        .filter_map(|e| e.ok())
    {
        let p = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        if let Err(err) = r {
            log::warn!("could not free {}: {err}", p.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_paths_normalize_and_shebangs_unrewrite() {
        assert_eq!(
            normalize_lexically(Path::new("/v/lib/python3.11/site-packages/../../../bin/x")),
            PathBuf::from("/v/bin/x")
        );
        let script = b"#!/v/bin/python\nprint(1)\n".to_vec();
        assert_eq!(
            unrewrite_shebang(script, Path::new("/v")),
            b"#!python\nprint(1)\n"
        );
        let other = b"#!/bin/sh\necho\n".to_vec();
        assert_eq!(unrewrite_shebang(other.clone(), Path::new("/v")), other);
    }
}
