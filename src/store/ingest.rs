//! Adding wheels to the store: verify, deduplicate, compile, publish.
//!
//! Ingest runs in three overlapping phases so both kinds of CPU work keep
//! every core busy: (1) wheels are unpacked and verified in parallel (Rust
//! threads), their new objects staged under `tmp/` and renamed into
//! `objects/` once the whole wheel checked out; (2) as each wheel is
//! staged, its new sources stream to a pool of Python workers that compile
//! each distinct source once per interpreter; (3) after one `syncfs`, each
//! dist's index is renamed into `dists/` and its bytecode markers written.
//! A crash at any point leaves only unreferenced objects and staging
//! litter, never a visible partial distribution; a rejected wheel
//! publishes nothing.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use log::{debug, info, warn};
use rayon::prelude::*;

use crate::hashing::{hash_file, Digest};
use crate::progress;
use crate::store::bytecode::{BytecodeError, CompileJob, CompileOutcome, CompilerPool};
use crate::store::dist_index::{DistIndex, DistMeta, FileEntry};
use crate::store::lock::Owner;
use crate::store::{dist_id, io_at, Store, StoreError};
use crate::wheel::{Entry, Limits, Wheel, WheelError};

/// Objects and pycs fan out over directories named by the digest's first
/// byte.
const FANOUT: usize = 256;

/// Why one wheel could not be added.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Wheel(#[from] WheelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bytecode: {0}")]
    Bytecode(#[from] CompileFailed),
}

/// Why compiling stopped; shared by every wheel of the batch it was
/// compiling for, hence `Clone`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CompileFailed {
    #[error(transparent)]
    Compiler(#[from] Arc<BytecodeError>),
    #[error("the bytecode compiler thread panicked")]
    Panicked,
}

impl From<BytecodeError> for CompileFailed {
    fn from(e: BytecodeError) -> Self {
        CompileFailed::Compiler(Arc::new(e))
    }
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

/// The store's dist for this wheel (its bytes), if the store has it
/// compiled for every tag in `tags`: adding it again would change nothing,
/// so it needs no write access to the store.
pub fn stored_dist(
    store: &Store,
    file_name: &str,
    bytes: &[u8],
    tags: &[&str],
) -> Option<DistMeta> {
    let w = Wheel::open(file_name, bytes, &Limits::default()).ok()?;
    let id = dist_id(&w.name, &w.version, &Digest::of(bytes));
    if !tags.iter().all(|t| store.has_bytecode(t, &id)) {
        return None;
    }
    store.load(&id).ok().map(|idx| idx.meta.clone())
}

/// The store's dist for the wheel file at `path`, as [`stored_dist`],
/// asking the store's memory of added wheel files first (a stat instead
/// of reading and hashing the wheel).
pub fn stored_wheel(store: &Store, path: &Path, tags: &[&str]) -> Option<DistMeta> {
    if let Some(id) = store.seen_wheel(path) {
        if tags.iter().all(|t| store.has_bytecode(t, &id)) {
            return store.load(&id).ok().map(|idx| idx.meta.clone());
        }
    }
    let file_name = path.file_name()?.to_str()?;
    stored_dist(store, file_name, &fs::read(path).ok()?, tags)
}

/// Add wheels to the store, compiling bytecode with each pool.
pub fn add_wheels(
    store: &Store,
    wheels: &[PathBuf],
    pools: &[CompilerPool],
    opts: &IngestOptions,
) -> Vec<WheelReport> {
    clean_stale_staging(store);
    spread_new_dirs(&store.tmp_dir());
    let t0 = std::time::Instant::now();
    let bar = progress::bar(wheels.len() as u64, "ingesting", opts.quiet);
    let (staged, compiled) = stage_and_compile(store, wheels, pools, &opts.limits, &bar);
    bar.finish_and_clear();
    info!("compiled at {:.2?}", t0.elapsed());
    let fresh = staged
        .iter()
        .any(|s| matches!(s, Ok(Staged { stage: Some(_), .. })));
    if fresh || compiled.as_ref().is_ok_and(|&n| n > 0) {
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
                compiled.clone()?;
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

/// Phases 1 and 2, overlapped: the wheels are staged in parallel, and each
/// one's new sources stream to the compiler pools as soon as it is staged,
/// so the workers compile while the Rust threads go on unpacking. Returns
/// the staged wheels and how many sources were compiled.
fn stage_and_compile(
    store: &Store,
    wheels: &[PathBuf],
    pools: &[CompilerPool],
    limits: &Limits,
    bar: &ProgressBar,
) -> (
    Vec<Result<Staged, IngestError>>,
    Result<usize, CompileFailed>,
) {
    let t0 = std::time::Instant::now();
    let fanout = Fanout::default();
    std::thread::scope(|scope| {
        let (senders, compilers): (Vec<_>, Vec<_>) = pools
            .iter()
            .map(|pool| {
                let (tx, rx) = mpsc::channel::<Vec<CompileJob>>();
                (tx, scope.spawn(move || compile_stream(pool, rx)))
            })
            .unzip();
        let feed = SourceFeed::new(store, pools, senders);
        let staged: Vec<Result<Staged, IngestError>> = wheels
            .par_iter()
            .map(|w| {
                let r = stage_wheel(store, w, limits, &fanout);
                if let Ok(s) = &r {
                    feed.queue(&s.index);
                }
                bar.inc(1);
                r
            })
            .collect();
        drop(feed);
        info!(
            "unpacked and verified {} wheels in {:.2?}",
            wheels.len(),
            t0.elapsed()
        );
        if staged
            .iter()
            .any(|s| matches!(s, Ok(Staged { stage: Some(_), .. })))
        {
            // Flush the objects while the workers finish compiling, so the
            // final syncfs has only the last pycs left to write.
            scope.spawn(|| sync_store(store));
        }
        let mut compiled = Ok(0);
        for c in compilers {
            let n = c.join().unwrap_or(Err(CompileFailed::Panicked));
            compiled = compiled.and_then(|total| n.map(|n| total + n));
        }
        (staged, compiled)
    })
}

/// Sends each staged dist's sources to the compile stream of every pool,
/// each source once per ingest.
struct SourceFeed<'a> {
    store: &'a Store,
    pools: &'a [CompilerPool],
    senders: Vec<mpsc::Sender<Vec<CompileJob>>>,
    /// Pyc paths already queued by another wheel.
    queued: Mutex<HashSet<PathBuf>>,
    /// Per pool: `bytecode/<tag>/` prepared (on first use only, since a
    /// rejected wheel must leave no trace in the store).
    prepared: Vec<Once>,
}

impl<'a> SourceFeed<'a> {
    fn new(
        store: &'a Store,
        pools: &'a [CompilerPool],
        senders: Vec<mpsc::Sender<Vec<CompileJob>>>,
    ) -> Self {
        SourceFeed {
            store,
            pools,
            senders,
            queued: Mutex::new(HashSet::new()),
            prepared: pools.iter().map(|_| Once::new()).collect(),
        }
    }

    fn queue(&self, index: &DistIndex) {
        for (i, pool) in self.pools.iter().enumerate() {
            let tag = pool.cache_tag();
            let mut jobs = missing_jobs(self.store, &[index], tag);
            {
                let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
                jobs.retain(|j| queued.insert(j.output.clone()));
            }
            if jobs.is_empty() {
                continue;
            }
            self.prepared[i].call_once(|| spread_new_dirs(&self.store.layout().bytecode(tag)));
            // A send fails only if the compiler thread is gone, which it
            // reports itself.
            let _ = self.senders[i].send(jobs);
        }
    }
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
    compile_missing(store, &refs, pools, quiet)?;
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
        let name = format!("{STAGE_PREFIX}{}", Owner::me().unique_name());
        let path = store.tmp_dir().join(name);
        fs::create_dir_all(store.tmp_dir()).map_err(io_at(&store.tmp_dir()))?;
        fs::create_dir(&path).map_err(io_at(&path))?;
        Ok(StageDir { path })
    }

    /// The process that made the staging directory called `name`, if it
    /// is one.
    fn owner_of(name: &str) -> Option<Owner> {
        Owner::of_unique_name(name.strip_prefix(STAGE_PREFIX)?)
    }
}

const STAGE_PREFIX: &str = "ingest.";

impl Drop for StageDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Phase 1 for one wheel: verify every entry while streaming it into
/// staging, then move its new objects into `objects/`.
fn stage_wheel(
    store: &Store,
    path: &Path,
    limits: &Limits,
    fanout: &Fanout,
) -> Result<Staged, IngestError> {
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
    let wheel_sha = Digest::of(&bytes);
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
    let claimed = Mutex::new(HashSet::new());
    let files = wheel
        .entries
        .par_iter()
        .map(|e| extract_entry(store, &wheel, e, &stage.path, &claimed))
        .collect::<Result<Vec<_>, _>>()?;
    publish_objects(store, &files, fanout)?;
    let index = build_index(
        &wheel,
        file_name,
        &bytes,
        &wheel_sha,
        &id,
        files.into_iter().map(|(f, _)| f).collect(),
    );
    Ok(Staged {
        index: Arc::new(index),
        stage: Some(stage),
    })
}

/// Verify one entry against its RECORD row and stage its bytes as a new
/// object, unless RECORD's sha256 names an object that is already in the
/// store or that another entry of this wheel stages: then the entry is
/// only inflated and hashed, which verifies it just the same without
/// creating (and later deleting) a file. Returns the staged path, if any.
fn extract_entry(
    store: &Store,
    wheel: &Wheel,
    e: &Entry,
    stage: &Path,
    claimed: &Mutex<HashSet<Digest>>,
) -> Result<(FileEntry, Option<PathBuf>), IngestError> {
    let known = record_sha256(wheel, e).filter(|d| {
        !claimed.lock().unwrap_or_else(|p| p.into_inner()).insert(*d)
            || store.object_path(d).exists()
    });
    let (object, size, tmp) = if known.is_some() {
        let (object, size) = wheel.extract(e, io::sink())?;
        (object, size, None)
    } else {
        let tmp = stage.join(format!("o{}", e.zip_index));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&tmp)
            .map_err(io_at(&tmp))?;
        let (object, size) = wheel.extract(e, BufWriter::with_capacity(64 << 10, &file))?;
        (object, size, Some(tmp))
    };
    let entry = FileEntry {
        scheme: e.scheme,
        executable: e.executable,
        size,
        object,
        path: e.path.clone(),
    };
    Ok((entry, tmp))
}

/// The sha256 RECORD gives for an entry (rows may use sha384/512 instead).
fn record_sha256(wheel: &Wheel, e: &Entry) -> Option<Digest> {
    let hash = wheel.record().get(&e.archive_path)?.hash.as_ref()?;
    let bytes: [u8; 32] = hash.digest.as_slice().try_into().ok()?;
    (hash.algorithm == "sha256").then_some(Digest(bytes))
}

/// Rename staged files into `objects/` unless already there (another
/// ingest may have put it there meanwhile): the rename refuses to replace,
/// so racing ingests need no lock and an existing object is never swapped
/// for a new inode.
fn publish_objects(
    store: &Store,
    files: &[(FileEntry, Option<PathBuf>)],
    fanout: &Fanout,
) -> Result<(), StoreError> {
    for (f, tmp) in files {
        let Some(tmp) = tmp else { continue };
        let target = store.object_path(&f.object);
        fanout.ensure(&target, f.object.0[0])?;
        match rename_noreplace(tmp, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_at(&target)(e)),
        }
    }
    Ok(())
}

/// `rename(from, to)` that fails with `AlreadyExists` instead of replacing
/// `to`. Falls back to check-then-rename where the filesystem does not
/// support `RENAME_NOREPLACE` (replacing an identical object is harmless).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL | nix::Error::ENOSYS) if !to.exists() => fs::rename(from, to),
        Err(nix::Error::EINVAL | nix::Error::ENOSYS) => Err(io::ErrorKind::AlreadyExists.into()),
        Err(e) => Err(e.into()),
    }
}

/// Which fan-out directories of `objects/` this ingest knows to exist, so
/// each costs one `mkdir` per ingest instead of one per object.
struct Fanout([AtomicBool; FANOUT]);

impl Default for Fanout {
    fn default() -> Self {
        Fanout(std::array::from_fn(|_| AtomicBool::new(false)))
    }
}

impl Fanout {
    fn ensure(&self, target: &Path, first_byte: u8) -> Result<(), StoreError> {
        let known = &self.0[usize::from(first_byte)];
        if known.load(Ordering::Relaxed) {
            return Ok(());
        }
        let parent = target.parent().unwrap_or(target);
        fs::create_dir_all(parent).map_err(io_at(parent))?;
        known.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// Create `dir` and ask ext4's allocator (the Orlov "top directory" hint,
/// `chattr +T`) to spread the directories made in it over the block groups
/// instead of packing them next to their parent. Used for `tmp/` and
/// `bytecode/<tag>/`: a wheel's staged objects and a fan-out directory's
/// pycs then get inodes in a group of their own, so parallel ingests do
/// not contend for one group, and on a journal-less ext4 new inodes are
/// not searched for among the thousands just freed in the parent's group
/// (ext4 skips recently freed inodes, at one buffer lookup each, for every
/// inode it allocates). Best effort: other filesystems do not know the
/// flag and are left alone.
fn spread_new_dirs(dir: &Path) {
    if fs::create_dir_all(dir).is_ok() {
        if let Err(e) = set_topdir(dir) {
            debug!("cannot mark {} as a top directory: {e}", dir.display());
        }
    }
}

/// Set `FS_TOPDIR_FL` on a directory (see [`spread_new_dirs`]).
fn set_topdir(dir: &Path) -> io::Result<()> {
    const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;
    // _IOR('f', 1, long) and _IOW('f', 2, long) from <linux/fs.h>.
    const LONG: libc::c_ulong = std::mem::size_of::<libc::c_long>() as libc::c_ulong;
    const FS_IOC_GETFLAGS: libc::c_ulong = (2 << 30) | (LONG << 16) | (0x66 << 8) | 1;
    const FS_IOC_SETFLAGS: libc::c_ulong = (1 << 30) | (LONG << 16) | (0x66 << 8) | 2;
    let file = File::open(dir)?;
    let mut flags: libc::c_int = 0;
    // SAFETY: the kernel reads and writes one int through the pointer,
    // which stays valid for the call; `file` keeps the descriptor open.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), FS_IOC_GETFLAGS as _, &mut flags) != 0 {
            return Err(io::Error::last_os_error());
        }
        if flags & FS_TOPDIR_FL != 0 {
            return Ok(());
        }
        flags |= FS_TOPDIR_FL;
        if libc::ioctl(file.as_raw_fd(), FS_IOC_SETFLAGS as _, &flags) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn build_index(
    wheel: &Wheel,
    file_name: &str,
    bytes: &[u8],
    wheel_sha: &Digest,
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
            wheel_sha256: wheel_sha.to_hex(),
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
) -> Result<(), CompileFailed> {
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
fn run_jobs(
    pool: &CompilerPool,
    jobs: &[CompileJob],
    bar: &ProgressBar,
) -> Result<(), CompileFailed> {
    let mut failed = 0;
    for chunk in jobs.chunks(1024) {
        let outcomes = pool.compile(chunk)?;
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

/// Compile what the staging threads send until they are done. Returns
/// how many pycs were written.
fn compile_stream(
    pool: &CompilerPool,
    rx: mpsc::Receiver<Vec<CompileJob>>,
) -> Result<usize, CompileFailed> {
    let outcomes = pool.compile_stream(rx)?;
    let mut compiled = 0;
    for (job, outcome) in &outcomes {
        match outcome {
            CompileOutcome::Compiled => compiled += 1,
            // pip's compileall is quiet about these too (e.g. py2-only
            // templates); the module still imports from source.
            CompileOutcome::Failed(why) => debug!("not compiled: {}: {why}", job.display_path),
        }
    }
    if compiled < outcomes.len() {
        debug!(
            "{} sources did not compile for {}",
            outcomes.len() - compiled,
            pool.cache_tag()
        );
    }
    Ok(compiled)
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
        if let Ok((sha256, size)) = hash_file(&store.pyc_path(tag, &f.object)) {
            out.push_str(&format!("{}\t{size}\t{sha256}\n", f.object));
        }
    }
    out
}

/// One `syncfs` makes every staged object and pyc durable before any
/// dist index that names them is published: crash-safe at the cost of a
/// single flush instead of one fsync per file.
fn sync_store(store: &Store) -> io::Result<()> {
    let dir = File::open(store.root())?;
    Ok(nix::unistd::syncfs(&dir)?)
}

/// Remove staging directories left by killed ingests on this host.
fn clean_stale_staging(store: &Store) {
    let Ok(rd) = fs::read_dir(store.tmp_dir()) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        // Only a process of this host can be proven gone (and a reused
        // pid is told apart by its start time).
        let owner = StageDir::owner_of(&name);
        if owner.is_some_and(|o| o.alive_here() == Some(false)) {
            debug!("removing stale staging {}", e.path().display());
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_carry_their_owner_and_dead_ones_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("s")).unwrap();
        let live = StageDir::new(&store).unwrap();
        let name = live.path.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(StageDir::owner_of(&name), Some(Owner::me()));
        // The same pid with another start time is a process that is gone
        // (a reused pid must not keep a dead ingest's litter alive).
        let me = Owner::me();
        let dead = format!("{STAGE_PREFIX}{}.{}.10.{}", me.pid, me.start + 1, me.host);
        let remote = format!("{STAGE_PREFIX}1.1.10.elsewhere.invalid");
        for n in [&dead, &remote] {
            fs::create_dir(store.tmp_dir().join(n)).unwrap();
        }
        clean_stale_staging(&store);
        assert!(live.path.is_dir(), "a live ingest's staging survives");
        assert!(
            !store.tmp_dir().join(&dead).exists(),
            "a dead one is removed"
        );
        assert!(
            store.tmp_dir().join(&remote).exists(),
            "another host's is kept"
        );
    }
}
