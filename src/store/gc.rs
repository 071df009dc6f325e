//! `sitefs store gc`: delete every distribution, object and pyc that no
//! root needs, and the caches derived from them (view images).
//!
//! Safety comes from [`crate::store::lock`]: gc takes the store's gc lock, waits
//! until no ingest, env creation or mount is between reading the store and
//! recording its root, and only then computes what is live (mark) and
//! deletes the rest (sweep). Dists are removed by renaming them into
//! `tmp/` first, so no reader ever sees half a dist; an object or pyc is
//! removed only when no live dist refers to it.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::hashing::Digest;
use crate::store::layout::Dir;
use crate::store::lock::{GcLock, GcLockError};
use crate::store::roots::{self, RootNote};
use crate::store::{io_at, is_valid_id, Store, StoreError};

/// Why gc stopped without deleting anything more.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Lock(#[from] GcLockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("live distribution {0} has a damaged index ({1}): gc stopped so nothing it needs is lost; run `sitefs store verify --repair`")]
    DamagedRoot(String, String),
}

/// What gc deleted (or, with `dry_run`, would delete).
#[derive(Debug, Default)]
pub struct GcReport {
    pub dry_run: bool,
    pub live_dists: usize,
    pub dists: Vec<String>,
    pub objects: usize,
    pub object_bytes: u64,
    pub pycs: usize,
    pub pyc_bytes: u64,
    /// Temp files of interrupted writes, staging dirs, stale caches.
    pub litter: usize,
    pub litter_bytes: u64,
    pub notes: Vec<RootNote>,
    pub env_roots: usize,
    pub mount_roots: usize,
    pub pins: usize,
}

impl GcReport {
    pub fn bytes(&self) -> u64 {
        self.object_bytes + self.pyc_bytes + self.litter_bytes
    }
}

/// A file or directory that gc removes, with its size.
struct Doomed {
    path: PathBuf,
    bytes: u64,
}

/// Collect garbage in `store`. With `dry_run`, only report.
pub fn gc(store: &Store, dry_run: bool) -> Result<GcReport, GcError> {
    let _lock = if dry_run {
        None
    } else {
        Some(GcLock::acquire(store.root())?)
    };
    let live = roots::live(store);
    let mut report = GcReport {
        dry_run,
        live_dists: 0,
        env_roots: live.env_roots,
        mount_roots: live.mount_roots,
        pins: live.pins,
        ..GcReport::default()
    };
    let live_ids: HashSet<String> = live
        .dists
        .iter()
        .filter(|id| store.check_id(id).is_ok())
        .cloned()
        .collect();
    report.live_dists = live_ids.len();
    let sources = live_objects(store, &live_ids)?;
    let dead_dists = dead_dists(store, &live_ids);
    let objects = sweep_fanout(&store.path(Dir::Objects), &sources, "");
    let mut pycs = Vec::new();
    let mut litter = Vec::new();
    for tag in names(&store.path(Dir::Bytecode)) {
        let layout = store.layout();
        pycs.extend(sweep_fanout(&layout.bytecode(&tag), &sources, ".pyc"));
        litter.extend(dead_markers(&layout.bytecode_markers(&tag), &live_ids));
    }
    litter.extend(stale_seen(store, &live_ids));
    litter.extend(everything_in(&store.tmp_dir()));
    for cache in Dir::ALL.into_iter().filter(|d| d.is_cache()) {
        litter.extend(everything_in(&store.path(cache)));
    }
    litter.extend(temp_files(&store.dists_dir()));
    tally(&mut report, &objects, &pycs, &litter);
    report.dists = dead_dists.iter().map(|(id, _)| id.clone()).collect();
    report.notes = live.notes;
    if !dry_run {
        delete_dists(store, &dead_dists)?;
        for d in objects.iter().chain(&pycs).chain(&litter) {
            remove(&d.path);
        }
        for note in report.notes.iter().filter(|n| n.drop) {
            let _ = fs::remove_file(&note.file);
        }
    }
    Ok(report)
}

/// Every object a live dist refers to: its files, and so (by source
/// digest) the pycs to keep.
fn live_objects(store: &Store, live: &HashSet<String>) -> Result<HashSet<Digest>, GcError> {
    let mut out = HashSet::new();
    for id in live {
        let idx = store
            .load(id)
            .map_err(|e| GcError::DamagedRoot(id.clone(), e.to_string()))?;
        out.extend(idx.files.iter().map(|f| f.object));
    }
    Ok(out)
}

fn dead_dists(store: &Store, live: &HashSet<String>) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(store.dists_dir()) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .filter(|(id, _)| is_valid_id(id) && !live.contains(id))
        .collect();
    out.sort();
    out
}

/// Unpublish each dead dist atomically (rename into `tmp/`), then delete.
fn delete_dists(store: &Store, dead: &[(String, PathBuf)]) -> Result<(), GcError> {
    let tmp = store.tmp_dir();
    fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
    for (id, dir) in dead {
        let aside = tmp.join(format!("gc.{id}.{}", std::process::id()));
        fs::rename(dir, &aside).map_err(io_at(dir))?;
        remove(&aside);
    }
    Ok(())
}

/// The files of a `<aa>/<hex><suffix>` fan-out tree whose digest is not
/// in `keep`, plus temp files of interrupted writes.
fn sweep_fanout(root: &Path, keep: &HashSet<Digest>, suffix: &str) -> Vec<Doomed> {
    let fans: Vec<PathBuf> = subdirs(root)
        .into_iter()
        .filter(|d| d.file_name().is_some_and(|n| n.len() == 2))
        .collect();
    fans.par_iter()
        .flat_map_iter(|fan| {
            let rd = fs::read_dir(fan)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok());
            rd.filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                let digest = name.strip_suffix(suffix).and_then(|h| h.parse().ok());
                let dead = digest.is_none_or(|d: Digest| !keep.contains(&d));
                dead.then(|| doomed(e.path()))
            })
            .collect::<Vec<_>>()
        })
        .collect()
}

/// Bytecode markers of dists that are gone.
fn dead_markers(dir: &Path, live: &HashSet<String>) -> Vec<Doomed> {
    entries(dir)
        .filter(|e| !e.file_name().to_str().is_some_and(|n| live.contains(n)))
        .map(|e| doomed(e.path()))
        .collect()
}

/// `seen/` entries (wheel file -> id) naming a dist that is gone.
fn stale_seen(store: &Store, live: &HashSet<String>) -> Vec<Doomed> {
    entries(&store.path(Dir::Seen))
        .filter(|e| {
            let text = fs::read_to_string(e.path()).unwrap_or_default();
            let id = text.trim_end().rsplit(' ').next().unwrap_or("");
            !live.contains(id)
        })
        .map(|e| doomed(e.path()))
        .collect()
}

fn temp_files(dir: &Path) -> Vec<Doomed> {
    entries(dir)
        .filter(|e| roots::is_temp(&e.path()))
        .map(|e| doomed(e.path()))
        .collect()
}

fn everything_in(dir: &Path) -> Vec<Doomed> {
    entries(dir).map(|e| doomed(e.path())).collect()
}

/// The readable entries of `dir`; none if it is missing.
fn entries(dir: &Path) -> impl Iterator<Item = fs::DirEntry> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    entries(dir)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// The names of the subdirectories of `dir`.
fn names(dir: &Path) -> Vec<String> {
    entries(dir)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

fn doomed(path: PathBuf) -> Doomed {
    let bytes = disk_usage(&path);
    Doomed { path, bytes }
}

/// Apparent size of a file or a whole tree (what deleting it frees).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    fs::read_dir(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| disk_usage(&e.path()))
        .sum()
}

fn remove(path: &Path) {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            make_writable(path);
            fs::remove_dir_all(path)
        }
        Ok(_) => fs::remove_file(path),
        Err(_) => return,
    };
    if let Err(e) = r {
        log::warn!("gc: cannot remove {}: {e}", path.display());
    }
}

/// Staging trees may hold read-only directories; unlinking their entries
/// needs write permission on them.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    for e in fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&e.path());
        }
    }
}

fn tally(report: &mut GcReport, objects: &[Doomed], pycs: &[Doomed], litter: &[Doomed]) {
    let sum = |v: &[Doomed]| v.iter().map(|d| d.bytes).sum::<u64>();
    report.objects = objects.len();
    report.object_bytes = sum(objects);
    report.pycs = pycs.len();
    report.pyc_bytes = sum(pycs);
    report.litter = litter.len();
    report.litter_bytes = sum(litter);
}
