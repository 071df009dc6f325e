//! The FUSE adapter: serves a [`View`] read-only through fuser. The only
//! module that knows FUSE types; all tree logic is in [`crate::view`].
//!
//! Two ways to serve file contents (see [`OpenMode`]):
//! - passthrough: `open` hands the kernel the store file itself, so reads
//!   and mmaps never reach this daemon and every mount of the same store
//!   shares one page cache (N envs importing numpy hold one copy);
//! - cached ("no-open"): `open` answers ENOSYS once, after which the kernel
//!   stops sending opens and serves reads from its page cache, asking the
//!   daemon only on a miss.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyStatfs,
    Request,
};
use log::{debug, info, warn};

use crate::store::Store;
use crate::view::{Change, Ino, Kind, Node, Source, View, ROOT};

/// The tree never changes under a mount, so the kernel may cache names
/// and attributes for as long as it likes.
const TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// How file contents reach readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Passthrough when the kernel grants it (needs CAP_SYS_ADMIN), else cached.
    Auto,
    /// Reads go straight to the store file; one page cache for all mounts.
    Passthrough,
    /// The default: fastest for a single env, since the kernel stops
    /// sending opens at all (see the README's measurements).
    Cached,
}

impl std::str::FromStr for OpenMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(OpenMode::Auto),
            "passthrough" => Ok(OpenMode::Passthrough),
            "cached" => Ok(OpenMode::Cached),
            _ => Err(format!("open={s}: expected auto, passthrough or cached")),
        }
    }
}

/// The view being served, swappable for live reloads. Views replaced by
/// a reload are kept so that processes holding inodes of removed files
/// can still read them (as on a local filesystem after an unlink).
pub struct ViewState {
    current: RwLock<Arc<View>>,
    retired: Mutex<Vec<Arc<View>>>,
}

/// How many replaced views stay readable.
const RETIRED_VIEWS: usize = 16;

impl ViewState {
    pub fn new(view: View) -> Arc<Self> {
        Arc::new(ViewState {
            current: RwLock::new(Arc::new(view)),
            retired: Mutex::new(Vec::new()),
        })
    }

    pub fn current(&self) -> Arc<View> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The view that knows `ino`: the current one, else the newest
    /// retired one that had it.
    fn holding(&self, ino: Ino) -> Option<Arc<View>> {
        let cur = self.current();
        if cur.get(ino).is_some() {
            return Some(cur);
        }
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.iter().rev().find(|v| v.get(ino).is_some()).cloned()
    }

    /// Swap in `new` (renumbered against the current view) and return
    /// what the kernel must forget.
    pub fn replace(&self, mut new: View) -> Vec<Change> {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        new.renumber_like(&cur);
        let changes = new.changes_since(&cur);
        let old = std::mem::replace(&mut *cur, Arc::new(new));
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.push(old);
        if retired.len() > RETIRED_VIEWS {
            retired.remove(0);
        }
        changes
    }
}

/// A read-only FUSE filesystem over one view.
pub struct SiteFs {
    state: Arc<ViewState>,
    store: Store,
    requested: OpenMode,
    passthrough: AtomicBool,
    /// The kernel opens directories without asking us (FUSE_NO_OPENDIR_SUPPORT).
    no_opendir: AtomicBool,
    uid: u32,
    gid: u32,
    backing: Mutex<BackingCache>,
    files: Mutex<HashMap<Ino, Arc<File>>>,
    next_fh: AtomicU64,
}

/// One backing id per inode at a time (a kernel rule), shared by all
/// opens of that inode. Ids outlive their opens, so reopening a module
/// costs no `open(2)` and no registration ioctl; when too many are kept,
/// the ones no open file uses are released.
#[derive(Default)]
struct BackingCache {
    by_handle: HashMap<u64, Arc<BackingId>>,
    by_inode: HashMap<Ino, Arc<BackingId>>,
}

/// Most backing ids kept registered with the kernel.
const MAX_BACKING: usize = 8192;

impl BackingCache {
    fn evict_idle(&mut self) {
        if self.by_inode.len() >= MAX_BACKING {
            self.by_inode.retain(|_, id| Arc::strong_count(id) > 1);
        }
    }
}

/// Most files descriptors kept open for cached-mode reads.
const MAX_OPEN_FILES: usize = 256;

impl SiteFs {
    pub fn new(state: Arc<ViewState>, store: Store, mode: OpenMode) -> Self {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        SiteFs {
            state,
            store,
            requested: mode,
            passthrough: AtomicBool::new(false),
            no_opendir: AtomicBool::new(false),
            uid,
            gid,
            backing: Mutex::new(BackingCache::default()),
            files: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    /// Whether this mount serves files by passthrough (known after INIT).
    pub fn uses_passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    fn attr(&self, ino: Ino, node: &Node) -> FileAttr {
        let size = node.size();
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind: if node.is_dir() {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: node.perm(),
            nlink: if node.is_dir() { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    fn backing_path(&self, view: &View, source: &Source) -> Option<PathBuf> {
        match source {
            Source::Object(d) => Some(self.store.object_path(d)),
            Source::Pyc(d) => Some(self.store.pyc_path(&view.cache_tag, d)),
            Source::Inline(_) | Source::Lazy(_) => None,
        }
    }

    /// The view holding file `ino`, with the file's source and size.
    fn file_of(&self, ino: Ino) -> Result<(Arc<View>, Source, u64), Errno> {
        let view = self.state.holding(ino).ok_or(Errno::ENOENT)?;
        let node = view.get(ino).ok_or(Errno::ENOENT)?;
        let Kind::File { source, .. } = &node.kind else {
            return Err(Errno::EISDIR);
        };
        // Node::size, not the stored field: it renders lazy files.
        let (source, size) = (source.clone(), node.size());
        Ok((view, source, size))
    }

    /// An open descriptor of the store file behind `ino`, cached so that
    /// reads after the first cost one `pread`.
    fn backing_file(&self, view: &View, ino: Ino, source: &Source) -> Result<Arc<File>, Errno> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(&ino) {
            return Ok(f.clone());
        }
        let path = self.backing_path(view, source).ok_or(Errno::EIO)?;
        let f = Arc::new(File::open(&path).map_err(|e| {
            warn!("{}: {e}", path.display());
            Errno::EIO
        })?);
        if files.len() >= MAX_OPEN_FILES {
            files.clear();
        }
        files.insert(ino, f.clone());
        Ok(f)
    }

    fn open_passthrough(
        &self,
        view: &View,
        ino: Ino,
        source: &Source,
        reply: ReplyOpen,
    ) -> Result<(), (ReplyOpen, Errno)> {
        let Some(path) = self.backing_path(view, source) else {
            return Err((reply, Errno::ENOSYS));
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let mut cache = self.backing.lock().unwrap_or_else(|e| e.into_inner());
        let id = match cache.by_inode.get(&ino).cloned() {
            Some(id) => id,
            None => {
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        warn!("{}: {e}", path.display());
                        return Err((reply, Errno::EIO));
                    }
                };
                match reply.open_backing(&file) {
                    Ok(id) => {
                        let id = Arc::new(id);
                        cache.evict_idle();
                        cache.by_inode.insert(ino, id.clone());
                        id
                    }
                    Err(e) => {
                        warn!(
                            "passthrough open of {} failed ({e}); serving reads from the daemon",
                            path.display()
                        );
                        return Err((reply, Errno::ENOSYS));
                    }
                }
            }
        };
        cache.by_handle.insert(fh, id.clone());
        reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id);
        Ok(())
    }
}

impl Filesystem for SiteFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_NO_OPEN_SUPPORT
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_ASYNC_READ;
        if let Err(missing) = config.add_capabilities(wanted) {
            debug!("kernel lacks {missing:?}");
        }
        // Every process that imports opens each package directory once
        // (the import system lists it); without this each listing costs
        // an OPENDIR and a RELEASEDIR round trip although the listing
        // itself is cached.
        let no_opendir = config
            .add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT)
            .is_ok();
        self.no_opendir.store(no_opendir, Ordering::Relaxed);
        let _ = config.set_max_readahead(1 << 20);
        if self.requested != OpenMode::Cached {
            let granted = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(2).is_ok();
            if !granted && self.requested == OpenMode::Passthrough {
                return Err(std::io::Error::other(
                    "the kernel refused FUSE passthrough (open=passthrough)",
                ));
            }
            self.passthrough.store(granted, Ordering::Relaxed);
        }
        info!(
            "serving {} inodes, open mode {}",
            self.state.current().len(),
            if self.uses_passthrough() {
                "passthrough"
            } else {
                "cached"
            }
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let view = self.state.current();
        let found = name.to_str().and_then(|n| view.lookup(parent.0, n));
        match found.and_then(|ino| view.get(ino).map(|n| (ino, n))) {
            Some((ino, node)) => reply.entry(&TTL, &self.attr(ino, node), Generation(0)),
            // Inode 0 with a TTL is a cached negative entry: the import
            // system probes many names that never exist.
            None => match view.get(ROOT) {
                Some(root) => reply.entry(&TTL, &self.attr(0, root), Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state.holding(ino.0) {
            Some(view) => match view.get(ino.0) {
                Some(node) => reply.attr(&TTL, &self.attr(ino.0, node)),
                None => reply.error(Errno::ENOENT),
            },
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let (view, source) = match self.file_of(ino.0) {
            Ok((v, s, _)) => (v, s),
            Err(e) => return reply.error(e),
        };
        if self.uses_passthrough() {
            match self.open_passthrough(&view, ino.0, &source, reply) {
                Ok(()) => {}
                // Inline files and failed backing opens are served by us.
                Err((reply, Errno::ENOSYS)) => {
                    reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
                }
                Err((reply, e)) => reply.error(e),
            }
        } else {
            // Cached mode: ENOSYS tells the kernel to stop sending opens
            // for this mount and to keep its page cache.
            reply.error(Errno::ENOSYS);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let (view, source, len) = match self.file_of(ino.0) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let end = len.min(offset.saturating_add(size as u64));
        if offset >= end {
            return reply.data(&[]);
        }
        match &source {
            Source::Inline(bytes) => return reply.data(&bytes[offset as usize..end as usize]),
            Source::Lazy(lazy) => return reply.data(&lazy.get()[offset as usize..end as usize]),
            Source::Object(_) | Source::Pyc(_) => {}
        }
        let file = match self.backing_file(&view, ino.0, &source) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let mut buf = vec![0u8; (end - offset) as usize];
        match read_full_at(&file, &mut buf, offset) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => {
                warn!("read of inode {ino:?}: {e}");
                reply.error(Errno::EIO)
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut cache = self.backing.lock().unwrap_or_else(|e| e.into_inner());
        cache.by_handle.remove(&fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_opendir.load(Ordering::Relaxed) {
            // ENOSYS makes the kernel stop sending opendir/releasedir for
            // this mount and cache every listing (CACHE_DIR|KEEP_CACHE).
            return reply.error(Errno::ENOSYS);
        }
        match self.state.current().get(ino.0) {
            Some(n) if n.is_dir() => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Some(_) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let view = self.state.current();
        let entries = match dir_entries(&view, ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        for (i, (child, name, node)) in entries.enumerate().skip(offset as usize) {
            let kind = if node.is_dir() {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let view = self.state.current();
        let entries = match dir_entries(&view, ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        for (i, (child, name, node)) in entries.enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(child),
                i as u64 + 1,
                name,
                &TTL,
                &self.attr(child, node),
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    /// Files here are never terminals: CPython (before 3.14) asks
    /// `isatty()` on every `open()`, i.e. once per imported module, and
    /// the kernel forwards each such ioctl; answer at once and quietly.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// Nothing is ever written, so there is nothing to flush; ENOSYS
    /// stops the kernel from sending FLUSH on every close.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let view = self.state.current();
        let blocks = view.total_bytes.div_ceil(4096);
        reply.statfs(blocks, 0, 0, view.len() as u64, 0, 4096, 255, 4096);
    }
}

/// `.`, `..` and the children of a directory, in a stable order so
/// readdir offsets stay valid across calls.
fn dir_entries(view: &View, ino: Ino) -> Result<impl Iterator<Item = (Ino, &str, &Node)>, Errno> {
    let node = view.get(ino).ok_or(Errno::ENOENT)?;
    if !node.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let parent_ino = view.parent(ino);
    let parent = view.get(parent_ino).unwrap_or(node);
    let dots = [(ino, ".", node), (parent_ino, "..", parent)];
    Ok(dots.into_iter().chain(view.children(ino)))
}

/// Tell the kernel to forget what a reload changed: the listing and
/// attributes of each changed directory (and the root, whose mtime the
/// import system and importlib.metadata watch) and each changed name.
pub fn invalidate(notifier: &fuser::Notifier, changes: &[Change]) {
    let _ = notifier.inval_inode(INodeNo(ROOT), 0, 0);
    for c in changes {
        let _ = notifier.inval_inode(INodeNo(c.dir), 0, 0);
        for name in &c.names {
            let _ = notifier.inval_entry(INodeNo(c.dir), OsStr::new(name));
        }
    }
}

/// `pread` until `buf` is full or the file ends.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
