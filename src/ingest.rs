//! Adding wheels to the store: verify, deduplicate, compile, publish.
//!
//! Ingest runs in three phases so both kinds of CPU work keep every core
//! busy: (1) wheels are unpacked and verified in parallel (Rust threads),
//! their new objects staged under `tmp/` and renamed into `objects/`;
//! (2) every new source is compiled once per interpreter by a pool of
//! Python workers; (3) after one `syncfs`, each dist's index is renamed
//! into `dists/` and its bytecode markers written. A crash at any point
//! leaves only unreferenced objects and staging litter, never a visible
//! partial distribution; a rejected wheel publishes nothing.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use log::{debug, info, warn};
use rayon::prelude::*;

use crate::bytecode::{CompileJob, CompileOutcome, CompilerPool};
use crate::dist_index::{DistIndex, DistMeta, FileEntry};
use crate::hashing::Digest;
use crate::progress;
use crate::store::{dist_id, io_at, Store, StoreError};
use crate::wheel::{wheel_digest, Entry, Limits, Wheel, WheelError};

/// Why one wheel could not be added.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Wheel(#[from] WheelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bytecode: {0}")]
    Bytecode(String),
}

/// What happened to one wheel.
#[derive(Debug)]
pub enum Outcome {
    Added(DistMeta),
    AlreadyPresent(DistMeta),
}

impl Outcome {
    pub fn meta(&self) -> &DistMeta {
        match self {
            Outcome::Added(m) | Outcome::AlreadyPresent(m) => m,
        }
    }
}

/// The result for one wheel file, in the order the wheels were given.
#[derive(Debug)]
pub struct WheelReport {
    pub wheel: PathBuf,
    pub result: Result<Outcome, IngestError>,
}

/// Options that tune ingest without changing what it stores.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    pub limits: Limits,
    pub quiet: bool,
}

/// Expand the user's arguments: a directory stands for every `*.whl`
/// directly inside it (sorted, so output is stable).
pub fn expand_sources(paths: &[PathBuf]) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = fs::metadata(p).map_err(io_at(p))?;
        if !meta.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut wheels: Vec<PathBuf> = fs::read_dir(p)
            .map_err(io_at(p))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|e| e.extension().is_some_and(|x| x == "whl"))
            .collect();
        wheels.sort();
        out.extend(wheels);
    }
    Ok(out)
}

/// Add wheels to the store, compiling bytecode with each pool.
pub fn add_wheels(
    store: &Store,
    wheels: &[PathBuf],
    pools: &[CompilerPool],
    opts: &IngestOptions,
) -> Vec<WheelReport> {
    clean_stale_staging(store);
    let t0 = std::time::Instant::now();
    let bar = progress::bar(wheels.len() as u64, "ingesting", opts.quiet);
    // Each wheel's sources are queued for compilation as soon as it is
    // staged; one thread feeds the queue to the Python workers, so they
    // compile while the Rust threads go on unpacking other wheels.
    let (tx, rx) = mpsc::channel::<(usize, Vec<CompileJob>)>();
    let (staged, compiled) = std::thread::scope(|scope| {
        let compiler = scope.spawn(move || compile_queue(pools, rx));
        let staged: Vec<Result<Staged, IngestError>> = wheels
            .par_iter()
            .map(|w| {
                let r = stage_wheel(store, w, &opts.limits);
                if let Ok(s) = &r {
                    for (i, pool) in pools.iter().enumerate() {
                        let jobs = missing_jobs(store, &[&*s.index], pool.cache_tag());
                        if !jobs.is_empty() {
                            let _ = tx.send((i, jobs));
                        }
                    }
                }
                bar.inc(1);
                r
            })
            .collect();
        drop(tx);
        let compiled = compiler
            .join()
            .unwrap_or_else(|_| Err("the bytecode compiler thread panicked".to_string()));
        (staged, compiled)
    });
    bar.finish_and_clear();
    info!(
        "unpacked, verified and compiled {} wheels in {:.2?}",
        wheels.len(),
        t0.elapsed()
    );
    let staged: Vec<Result<Staged, IngestError>> = staged
        .into_iter()
        .map(|s| {
            let s = s?;
            compiled.clone().map_err(IngestError::Bytecode)?;
            Ok(s)
        })
        .collect();
    let fresh = staged
        .iter()
        .any(|s| matches!(s, Ok(Staged { stage: Some(_), .. })));
    if fresh {
        if let Err(e) = sync_store(store) {
            warn!("syncfs on {}: {e}", store.root().display());
        }
        info!("synced at {:.2?}", t0.elapsed());
    }
    wheels
        .iter()
        .zip(staged)
        .map(|(w, s)| {
            let result = s.and_then(|s| {
                let outcome = s.publish(store, pools)?;
                store.remember_wheel(w, &outcome.meta().id);
                Ok(outcome)
            });
            WheelReport {
                wheel: w.clone(),
                result,
            }
        })
        .collect()
}

/// Compile bytecode for dists already in the store (a new interpreter).
/// Returns how many dists gained bytecode.
pub fn ensure_bytecode(
    store: &Store,
    ids: &[String],
    pools: &[CompilerPool],
    quiet: bool,
) -> Result<usize, IngestError> {
    let indexes = ids
        .iter()
        .map(|id| store.load(id))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&DistIndex> = indexes.iter().map(|i| &**i).collect();
    compile_missing(store, &refs, pools, quiet).map_err(IngestError::Bytecode)?;
    let mut n = 0;
    for idx in &indexes {
        n += write_markers(store, idx, pools)?;
    }
    Ok(n)
}

/// A verified wheel whose objects are in the store and whose index waits
/// in its staging directory.
struct Staged {
    index: Arc<DistIndex>,
    stage: Option<StageDir>,
}

impl Staged {
    fn publish(self, store: &Store, pools: &[CompilerPool]) -> Result<Outcome, IngestError> {
        let added = match &self.stage {
            None => false,
            Some(stage) => publish_index(store, &self.index, &stage.path)?,
        };
        write_markers(store, &self.index, pools)?;
        let meta = self.index.meta.clone();
        Ok(if added {
            Outcome::Added(meta)
        } else {
            Outcome::AlreadyPresent(meta)
        })
    }
}

/// Rename the dist's index into `dists/`. Returns false when another
/// process published the same wheel first (then theirs stands).
fn publish_index(store: &Store, index: &DistIndex, stage: &Path) -> Result<bool, StoreError> {
    let dir = stage.join("dist");
    fs::create_dir(&dir).map_err(io_at(&dir))?;
    index.write(&dir).map_err(io_at(&dir))?;
    let target = store.dist_dir(&index.meta.id);
    match fs::rename(&dir, &target) {
        Ok(()) => Ok(true),
        Err(e) if target.exists() => {
            debug!("{} published concurrently ({e})", index.meta.id);
            Ok(false)
        }
        Err(e) => Err(io_at(&target)(e)),
    }
}

/// A staging directory under `tmp/`, removed when dropped.
struct StageDir {
    path: PathBuf,
}

impl StageDir {
    fn new(store: &Store) -> Result<StageDir, StoreError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "ingest-{}-{}-{nanos}-{}",
            hostname(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = store.tmp_dir().join(name);
        fs::create_dir_all(&path).map_err(io_at(&path))?;
        Ok(StageDir { path })
    }
}

impl Drop for StageDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Phase 1 for one wheel: verify every entry while streaming it into
/// staging, then move its new objects into `objects/`.
fn stage_wheel(store: &Store, path: &Path, limits: &Limits) -> Result<Staged, IngestError> {
    if let Some(id) = store.seen_wheel(path) {
        return Ok(Staged {
            index: store.load(&id)?,
            stage: None,
        });
    }
    let bytes = fs::read(path).map_err(io_at(path))?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let wheel_sha = wheel_digest(&bytes);
    let wheel = Wheel::open(file_name, &bytes, limits)?;
    let id = dist_id(&wheel.name, &wheel.version, &wheel_sha);
    if store.check_id(&id).is_ok() {
        store.remember_wheel(path, &id);
        return Ok(Staged {
            index: store.load(&id)?,
            stage: None,
        });
    }
    let stage = StageDir::new(store)?;
    let files = wheel
        .entries
        .par_iter()
        .map(|e| extract_entry(&wheel, e, &stage.path))
        .collect::<Result<Vec<_>, _>>()?;
    publish_objects(store, &files)?;
    let index = build_index(
        &wheel,
        file_name,
        &bytes,
        &id,
        files.into_iter().map(|(f, _)| f).collect(),
    );
    Ok(Staged {
        index: Arc::new(index),
        stage: Some(stage),
    })
}

fn extract_entry(
    wheel: &Wheel,
    e: &Entry,
    stage: &Path,
) -> Result<(FileEntry, PathBuf), IngestError> {
    let tmp = stage.join(format!("o{}", e.zip_index));
    let file = File::create(&tmp).map_err(io_at(&tmp))?;
    let (object, size) = wheel.extract(e, BufWriter::with_capacity(64 << 10, &file))?;
    file.set_permissions(fs::Permissions::from_mode(0o444))
        .map_err(io_at(&tmp))?;
    let entry = FileEntry {
        scheme: e.scheme,
        executable: e.executable,
        size,
        object,
        path: e.path.clone(),
    };
    Ok((entry, tmp))
}

/// Rename staged files into `objects/` unless already there. Renaming an
/// identical file over an existing object is harmless, so racing ingests
/// need no lock.
fn publish_objects(store: &Store, files: &[(FileEntry, PathBuf)]) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    for (f, tmp) in files {
        if !seen.insert(f.object) {
            continue;
        }
        let target = store.object_path(&f.object);
        if target.exists() {
            continue;
        }
        let parent = target.parent().unwrap_or(store.root());
        fs::create_dir_all(parent).map_err(io_at(parent))?;
        fs::rename(tmp, &target).map_err(io_at(&target))?;
    }
    Ok(())
}

fn build_index(
    wheel: &Wheel,
    file_name: &str,
    bytes: &[u8],
    id: &str,
    mut files: Vec<FileEntry>,
) -> DistIndex {
    files.sort_by(|a, b| (a.scheme, &a.path).cmp(&(b.scheme, &b.path)));
    let ingested = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DistIndex {
        meta: DistMeta {
            id: id.to_string(),
            name: wheel.name.clone(),
            version: wheel.version.clone(),
            wheel: file_name.to_string(),
            wheel_sha256: wheel_digest(bytes).to_hex(),
            wheel_size: bytes.len() as u64,
            tags: wheel.file_name.tags(),
            root_is_purelib: wheel.root_is_purelib,
            dist_info: wheel.dist_info.clone(),
            ingested,
            file_count: files.len(),
            unpacked_size: files.iter().map(|f| f.size).sum(),
            entry_points: wheel.entry_points.clone(),
        },
        files,
    }
}

/// Phase 2: compile every site-packages `.py` source that has no pyc yet
/// for each interpreter, each distinct source once.
fn compile_missing(
    store: &Store,
    indexes: &[&DistIndex],
    pools: &[CompilerPool],
    quiet: bool,
) -> Result<(), String> {
    for pool in pools {
        let tag = pool.cache_tag();
        let jobs = missing_jobs(store, indexes, tag);
        if jobs.is_empty() {
            continue;
        }
        let bar = progress::bar(jobs.len() as u64, "compiling", quiet);
        run_jobs(pool, &jobs, &bar)?;
        bar.finish_and_clear();
    }
    Ok(())
}

fn missing_jobs(store: &Store, indexes: &[&DistIndex], tag: &str) -> Vec<CompileJob> {
    let mut by_source: HashMap<Digest, CompileJob> = HashMap::new();
    for idx in indexes
        .iter()
        .filter(|i| !store.has_bytecode(tag, &i.meta.id))
    {
        for f in idx
            .files
            .iter()
            .filter(|f| f.scheme.in_site_packages() && f.path.ends_with(".py"))
        {
            by_source.entry(f.object).or_insert_with(|| CompileJob {
                source: store.object_path(&f.object),
                display_path: f.path.clone(),
                output: store.pyc_path(tag, &f.object),
            });
        }
    }
    let mut jobs: Vec<CompileJob> = by_source
        .into_values()
        .filter(|j| !j.output.exists())
        .collect();
    jobs.sort_by(|a, b| a.display_path.cmp(&b.display_path));
    jobs
}

/// Compile in chunks (each spread over all of the pool's workers),
/// advancing `bar` as chunks finish.
fn run_jobs(pool: &CompilerPool, jobs: &[CompileJob], bar: &ProgressBar) -> Result<(), String> {
    let mut failed = 0;
    for chunk in jobs.chunks(1024) {
        let outcomes = pool.compile(chunk).map_err(|e| e.to_string())?;
        for (job, outcome) in chunk.iter().zip(outcomes) {
            if let CompileOutcome::Failed(why) = outcome {
                // pip's compileall is quiet about these too (e.g. py2-only
                // templates); the module still imports from source.
                debug!("not compiled: {}: {why}", job.display_path);
                failed += 1;
            }
        }
        bar.inc(chunk.len() as u64);
    }
    if failed > 0 {
        debug!("{failed} sources did not compile for {}", pool.cache_tag());
    }
    Ok(())
}

/// Drain the compile queue of `add_wheels`: each round takes everything
/// queued so far (so every worker has work), skips sources already
/// queued by another wheel, and compiles it. Stops at the first failure
/// but keeps draining so senders never block.
fn compile_queue(
    pools: &[CompilerPool],
    rx: mpsc::Receiver<(usize, Vec<CompileJob>)>,
) -> Result<(), String> {
    let mut result = Ok(());
    let mut queued: HashSet<PathBuf> = HashSet::new();
    while let Ok(first) = rx.recv() {
        let mut round: Vec<(usize, Vec<CompileJob>)> = vec![first];
        round.extend(rx.try_iter());
        for (i, pool) in pools.iter().enumerate() {
            let jobs: Vec<CompileJob> = round
                .iter_mut()
                .filter(|(p, _)| *p == i)
                .flat_map(|(_, jobs)| jobs.drain(..))
                .filter(|j| queued.insert(j.output.clone()))
                .collect();
            if result.is_ok() && !jobs.is_empty() {
                result = run_jobs(pool, &jobs, &ProgressBar::hidden());
            }
        }
    }
    result
}

/// Record that a dist is fully compiled for each pool's interpreter. The
/// marker lists each compiled source and its pyc's size, so a mount can
/// place every pyc without a stat.
fn write_markers(
    store: &Store,
    idx: &DistIndex,
    pools: &[CompilerPool],
) -> Result<usize, StoreError> {
    let id = &idx.meta.id;
    let mut written = 0;
    for pool in pools {
        let tag = pool.cache_tag();
        let marker = store.bytecode_marker(tag, id);
        if marker.exists() {
            continue;
        }
        let dir = marker.parent().unwrap_or(store.root());
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let tmp = dir.join(format!(".{id}.{}", std::process::id()));
        fs::write(&tmp, pyc_listing(store, idx, tag)).map_err(io_at(&tmp))?;
        fs::rename(&tmp, &marker).map_err(io_at(&marker))?;
        written += 1;
    }
    Ok(written)
}

fn pyc_listing(store: &Store, idx: &DistIndex, tag: &str) -> String {
    let mut seen = HashSet::new();
    let mut out = String::new();
    for f in idx
        .files
        .iter()
        .filter(|f| f.scheme.in_site_packages() && f.path.ends_with(".py"))
    {
        if !seen.insert(f.object) {
            continue;
        }
        if let Ok(m) = fs::metadata(store.pyc_path(tag, &f.object)) {
            out.push_str(&format!("{}\t{}\n", f.object, m.len()));
        }
    }
    out
}

/// One `syncfs` makes every staged object and pyc durable before any
/// dist index that names them is published: crash-safe at the cost of a
/// single flush instead of one fsync per file.
fn sync_store(store: &Store) -> io::Result<()> {
    let dir = File::open(store.root())?;
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Remove staging directories left by killed ingests on this host.
fn clean_stale_staging(store: &Store) {
    let Ok(rd) = fs::read_dir(store.tmp_dir()) else {
        return;
    };
    let host = hostname();
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix("ingest-")
            .and_then(|r| r.strip_prefix(&host))
        else {
            continue;
        };
        let pid = rest
            .trim_start_matches('-')
            .split('-')
            .next()
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| !process_alive(p)) {
            debug!("removing stale staging {}", e.path().display());
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).replace('-', "_")
    } else {
        "localhost".into()
    }
}
