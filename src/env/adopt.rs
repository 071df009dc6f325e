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

use sha2::Digest as _;

use crate::env::{EnvError, MANIFEST_NAME};
use crate::hashing::Digest;
use crate::manifest::{DistRef, EnvSpec, Manifest};
use crate::mount::daemon::{self, MountOpts};
use crate::resolve::interpreter::Interpreter;
use crate::store::bytecode::CompilerPool;
use crate::store::dist_index::DistMeta;
use crate::store::ingest::{self, IngestOptions};
use crate::store::layout::Dir;
use crate::store::lock::UseGuard;
use crate::store::roots;
use crate::store::{dist_id, io_at, Store};
use crate::wheel::{
    csv_field, parse_entry_points, parse_record, wheel_digest, Limits, RecordHash, RecordRow, Wheel,
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

fn other(msg: String) -> EnvError {
    EnvError::Other(msg)
}

fn open_venv(venv: &Path, probe_cache: Option<&Path>) -> Result<Venv, EnvError> {
    let root = std::path::absolute(venv).map_err(io_at(venv))?;
    if root.join(MANIFEST_NAME).exists() {
        return Err(other(format!(
            "{} is already a sitefs env (it has {MANIFEST_NAME})",
            root.display()
        )));
    }
    let python = root.join("bin/python");
    if !root.join("pyvenv.cfg").is_file() || !python.exists() {
        return Err(other(format!(
            "{} is not a venv (no pyvenv.cfg or bin/python)",
            root.display()
        )));
    }
    let interp = match probe_cache {
        Some(dir) => Interpreter::probe_cached(python.as_os_str(), dir),
        None => Interpreter::probe(python.as_os_str()),
    }
    .map_err(|e| other(e.to_string()))?;
    let site_packages = root.join(format!("lib/python{}/site-packages", interp.version));
    if daemon::is_mount_point(&site_packages) {
        return Err(other(format!(
            "{} is already a mount",
            site_packages.display()
        )));
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
        return Err(other(format!(
            "{} file(s) in {} belong to no installed distribution (e.g. {}): adopting would drop them; move them out of site-packages or install them as a package",
            unowned.len(),
            v.site_packages.display(),
            shown.join(", ")
        )));
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
    let metadata = read("METADATA")?;
    let field = |k: &str| {
        metadata
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
    };
    let (name, version) = match (field("Name:"), field("Version:")) {
        (Some(n), Some(v)) => (n, v),
        _ => {
            return Err(other(format!(
                "{}: METADATA has no Name/Version",
                di.display()
            )))
        }
    };
    if let Ok(direct) = fs::read_to_string(di.join("direct_url.json")) {
        if direct.contains("\"editable\": true") || direct.contains("\"editable\":true") {
            return Err(other(format!(
                "{name} {version} is an editable install (its code lives outside the venv): uninstall it or install it normally, then adopt"
            )));
        }
    }
    let record = parse_record(&read("RECORD")?)
        .map_err(|e| other(format!("{}: {e}", di.join("RECORD").display())))?;
    let scripts = entry_point_scripts(&di);
    let tag = read("WHEEL")
        .ok()
        .and_then(|w| {
            w.lines()
                .find_map(|l| l.strip_prefix("Tag:").map(|t| t.trim().to_string()))
        })
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
        .map_err(|e| {
            other(format!(
                "{dist}: {} is listed in its RECORD but unreadable: {e}",
                full.display()
            ))
        })?;
    let verified = check_recorded(&bytes, row).map_err(|why| {
        other(format!(
            "{dist}: {} was changed after install ({why}); reinstall it (`pip install --force-reinstall {dist}`) or leave this venv as it is",
            full.display()
        ))
    })?;
    let executable = fs::metadata(&full)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    let sha256 = if name.starts_with("{data}/scripts/") {
        bytes = unrewrite_shebang(bytes, &v.root);
        Digest::of(&bytes)
    } else {
        verified.unwrap_or_else(|| Digest::of(&bytes))
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
    let rel = full.strip_prefix(&v.root).map_err(|_| {
        other(format!(
            "{} is outside the venv {}: cannot adopt it",
            full.display(),
            v.root.display()
        ))
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

/// Check `bytes` against their RECORD row; returns their sha256 when the
/// row's hash was one (most are), so it need not be computed again.
fn check_recorded(bytes: &[u8], row: &RecordRow) -> Result<Option<Digest>, String> {
    if let Some(size) = row.size {
        if size != bytes.len() as u64 {
            return Err(format!("size {} != recorded {size}", bytes.len()));
        }
    }
    let Some(hash) = &row.hash else {
        return Ok(None);
    };
    let (actual, sha256): (Vec<u8>, _) = match hash.algorithm.as_str() {
        "sha256" => {
            let d = Digest::of(bytes);
            (d.0.to_vec(), Some(d))
        }
        "sha384" => (sha2::Sha384::digest(bytes).to_vec(), None),
        _ => (sha2::Sha512::digest(bytes).to_vec(), None),
    };
    if actual != hash.digest {
        return Err(format!("its {} differs from RECORD", hash.algorithm));
    }
    Ok(sha256)
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
            let known = known_dist(store, &file_name, &bytes, &v.interp.cache_tag);
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
            let meta = r
                .result
                .map_err(|e| other(format!("{} {}: {e}", d.name, d.version)))?;
            refs[i] = Some(DistRef::of(meta.meta(), d.requested));
        }
        Ok(refs.into_iter().flatten().collect())
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

/// The store's dist for this wheel, if it has it compiled for `tag`.
fn known_dist(store: &Store, file_name: &str, bytes: &[u8], tag: &str) -> Option<DistMeta> {
    let w = Wheel::open(file_name, bytes, &Limits::default()).ok()?;
    let id = dist_id(&w.name, &w.version, &wheel_digest(bytes));
    if !store.has_bytecode(tag, &id) {
        return None;
    }
    store.load(&id).ok().map(|idx| idx.meta.clone())
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
    let bytes = write().map_err(|e| other(format!("{file}: {e}")))?;
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
