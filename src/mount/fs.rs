//! The FUSE adapter: serves a [`View`] read-only. [`SiteFs`] answers each
//! operation in plain terms (attributes, bytes, directory entries); two
//! transports carry those answers to the kernel: fuser's `/dev/fuse`
//! loop ([`FuseAdapter`], which also negotiates the connection) and FUSE
//! over io_uring ([`crate::mount::uring`]), which answers each request on the
//! CPU that issued it. All tree logic is in [`crate::view`].
//!
//! Two ways to serve file contents (see [`OpenMode`]):
//! - passthrough: `open` hands the kernel the store file itself, so reads
//!   and mmaps never reach this daemon and every mount of the same store
//!   shares one page cache (N envs importing numpy hold one copy);
//! - cached ("no-open"): `open` answers ENOSYS once, after which the kernel
//!   stops sending opens and serves reads from its page cache, asking the
//!   daemon only on a miss.
//!
//! And two ways to present the pycs in `__pycache__` (see [`PycMode`]):
//! as symlinks to the store's pycs (the default), or as regular files.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyStatfs,
    Request,
};
use log::{debug, info, warn};
use nix::unistd::{getgid, getuid};

use crate::store::Store;
use crate::view::live::ViewState;
use crate::view::{Change, Ino, Kind, Node, Source, View, ROOT};

/// The tree never changes under a mount, so the kernel may cache names
/// and attributes for as long as it likes.
pub(crate) const TTL: Duration = Duration::from_secs(365 * 24 * 3600);

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

impl OpenMode {
    /// Its `-o open=` words.
    pub const WORDS: &'static [(&'static str, OpenMode)] = &[
        ("auto", OpenMode::Auto),
        ("passthrough", OpenMode::Passthrough),
        ("cached", OpenMode::Cached),
    ];
}

/// How `__pycache__` entries appear (`-o pyc=...`).
///
/// CPython before 3.14 asks `isatty()` of every file it opens, so each
/// imported module costs one ioctl, and on a FUSE file every ioctl is a
/// round trip to this daemon (the kernel cannot answer it alone). The
/// pyc is the only file a warm import opens, so serving it as a symlink
/// into the store makes the open, the ioctl and the read local
/// filesystem operations, and shares one page cache among all mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PycMode {
    /// Symlinks to the store's pycs; every process using the mount must
    /// see the store at the same path (else Python compiles in memory).
    Link,
    /// Regular files served through the mount, like every other file.
    File,
}

impl PycMode {
    /// Its `-o pyc=` words.
    pub const WORDS: &'static [(&'static str, PycMode)] =
        &[("link", PycMode::Link), ("file", PycMode::File)];
}

/// A read-only FUSE filesystem over one view.
pub struct SiteFs {
    state: Arc<ViewState>,
    store: Store,
    requested: OpenMode,
    pycs: PycMode,
    passthrough: AtomicBool,
    /// The kernel opens directories without asking us (FUSE_NO_OPENDIR_SUPPORT).
    no_opendir: AtomicBool,
    uid: u32,
    gid: u32,
    backing: Mutex<BackingCache<BackingId>>,
    files: Mutex<HashMap<Ino, Arc<File>>>,
    next_fh: AtomicU64,
}

/// One backing id per inode at a time (a kernel rule), shared by all
/// opens of that inode. Ids outlive their opens, so reopening a module
/// costs no `open(2)` and no registration ioctl; when too many are kept,
/// the ones no open file uses are released.
pub(crate) struct BackingCache<Id> {
    by_handle: HashMap<u64, Arc<Id>>,
    by_inode: HashMap<Ino, Arc<Id>>,
}

impl<Id> Default for BackingCache<Id> {
    fn default() -> Self {
        BackingCache {
            by_handle: HashMap::new(),
            by_inode: HashMap::new(),
        }
    }
}

/// Most backing ids kept registered with the kernel.
const MAX_BACKING: usize = 8192;

impl<Id> BackingCache<Id> {
    fn evict_idle(&mut self) {
        if self.by_inode.len() >= MAX_BACKING {
            self.by_inode.retain(|_, id| Arc::strong_count(id) > 1);
        }
    }

    /// The open file `fh` is closed: its inode's id may now be evicted.
    pub(crate) fn release(&mut self, fh: u64) {
        self.by_handle.remove(&fh);
    }
}

/// Most files descriptors kept open for cached-mode reads.
const MAX_OPEN_FILES: usize = 256;

/// How an `open` is answered.
pub(crate) enum Opened<Id> {
    /// Cached mode: ENOSYS, after which the kernel sends no more opens.
    NoOpen,
    /// Reads of handle `fh` go to the store file behind `id`.
    Passthrough { fh: u64, id: Arc<Id> },
    /// A file without a store file (inline, lazy) or whose backing
    /// failed: reads come to the daemon, the page cache is kept.
    Daemon,
}

impl SiteFs {
    pub fn new(state: Arc<ViewState>, store: Store, mode: OpenMode, pycs: PycMode) -> Self {
        let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
        SiteFs {
            state,
            store,
            requested: mode,
            pycs,
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

    fn attr(&self, view: &View, ino: Ino, node: &Node) -> FileAttr {
        let link = self.link_target(view, node);
        let size = match &link {
            Some(target) => target.as_os_str().len() as u64,
            None => node.size(),
        };
        let (kind, perm) = match &link {
            Some(_) => (FileType::Symlink, 0o777),
            None if node.is_dir() => (FileType::Directory, node.perm()),
            None => (FileType::RegularFile, node.perm()),
        };
        let mtime = view.mtime(node);
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink: if node.is_dir() { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    /// The store file a node links to: its pyc, under [`PycMode::Link`].
    fn link_target(&self, view: &View, node: &Node) -> Option<PathBuf> {
        match (&node.kind, self.pycs) {
            (
                Kind::File {
                    source: source @ Source::Pyc(_),
                    ..
                },
                PycMode::Link,
            ) => self.backing_path(view, source),
            _ => None,
        }
    }

    /// LOOKUP: the attributes of `name` in `parent`. A name that does not
    /// exist answers inode 0, which the kernel caches as a negative entry
    /// for the TTL: the import system probes many names that never exist.
    pub(crate) fn lookup_attr(&self, parent: Ino, name: &[u8]) -> Result<FileAttr, Errno> {
        let view = self.state.current();
        let found = std::str::from_utf8(name)
            .ok()
            .and_then(|n| view.lookup(parent, n));
        match found.and_then(|ino| view.get(ino).map(|n| (ino, n))) {
            Some((ino, node)) => Ok(self.attr(&view, ino, node)),
            None => view
                .get(ROOT)
                .map(|root| self.attr(&view, 0, root))
                .ok_or(Errno::ENOENT),
        }
    }

    /// GETATTR, also of inodes only a retired view still has.
    pub(crate) fn getattr_of(&self, ino: Ino) -> Result<FileAttr, Errno> {
        let view = self.state.holding(ino).ok_or(Errno::ENOENT)?;
        let node = view.get(ino).ok_or(Errno::ENOENT)?;
        Ok(self.attr(&view, ino, node))
    }

    /// READLINK: where a symlink points (EINVAL for anything else, as
    /// readlink(2) says).
    pub(crate) fn readlink_of(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        let view = self.state.holding(ino).ok_or(Errno::ENOENT)?;
        let node = view.get(ino).ok_or(Errno::ENOENT)?;
        let target = self.link_target(&view, node).ok_or(Errno::EINVAL)?;
        Ok(target.into_os_string().into_vec())
    }

    /// OPEN. `register` hands the kernel a store file for passthrough
    /// (through whichever transport carries the reply) and is called at
    /// most once per inode while its id stays cached.
    pub(crate) fn open_file<Id>(
        &self,
        ino: Ino,
        flags: i32,
        cache: &Mutex<BackingCache<Id>>,
        register: impl FnOnce(&File) -> std::io::Result<Id>,
    ) -> Result<Opened<Id>, Errno> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(Errno::EROFS);
        }
        let (view, source, _) = self.file_of(ino)?;
        if !self.uses_passthrough() {
            return Ok(Opened::NoOpen);
        }
        let Some(path) = self.backing_path(&view, &source) else {
            return Ok(Opened::Daemon);
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        let id = match cache.by_inode.get(&ino).cloned() {
            Some(id) => id,
            None => {
                let file = File::open(&path).map_err(|e| {
                    warn!("{}: {e}", path.display());
                    Errno::EIO
                })?;
                match register(&file) {
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
                        return Ok(Opened::Daemon);
                    }
                }
            }
        };
        cache.by_handle.insert(fh, id.clone());
        Ok(Opened::Passthrough { fh, id })
    }

    /// OPENDIR: ENOSYS once the kernel agreed to open directories itself
    /// (and then cache every listing, CACHE_DIR|KEEP_CACHE).
    pub(crate) fn opendir_check(&self, ino: Ino) -> Result<(), Errno> {
        if self.no_opendir.load(Ordering::Relaxed) {
            return Err(Errno::ENOSYS);
        }
        match self.state.current().get(ino) {
            Some(n) if n.is_dir() => Ok(()),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    /// READ into `buf` (whose length is the requested size); returns the
    /// bytes filled, short only at the end of the file.
    pub(crate) fn read_into(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let (view, source, len) = self.file_of(ino)?;
        let end = len.min(offset.saturating_add(buf.len() as u64));
        if offset >= end {
            return Ok(0);
        }
        let n = (end - offset) as usize;
        let (lo, hi) = (offset as usize, end as usize);
        match &source {
            Source::Inline(bytes) => buf[..n].copy_from_slice(&bytes[lo..hi]),
            Source::Lazy(lazy) => buf[..n].copy_from_slice(&lazy.get()[lo..hi]),
            Source::Object(_) | Source::Pyc(_) => {
                let file = self.backing_file(&view, ino, &source)?;
                return read_full_at(&file, &mut buf[..n], offset).map_err(|e| {
                    warn!("read of inode {ino}: {e}");
                    Errno::EIO
                });
            }
        }
        Ok(n)
    }

    /// READDIR/READDIRPLUS: calls `add(child, next_offset, name, attr)`
    /// for each entry from `offset` on until it returns true (full).
    pub(crate) fn list_dir(
        &self,
        ino: Ino,
        offset: u64,
        mut add: impl FnMut(u64, &str, &FileAttr) -> bool,
    ) -> Result<(), Errno> {
        let view = self.state.current();
        for (i, (child, name, node)) in dir_entries(&view, ino)?.enumerate().skip(offset as usize) {
            if add(i as u64 + 1, name, &self.attr(&view, child, node)) {
                break;
            }
        }
        Ok(())
    }

    /// STATFS figures: (4 KiB blocks, inodes).
    pub(crate) fn statfs_figures(&self) -> (u64, u64) {
        let view = self.state.current();
        (view.total_bytes.div_ceil(4096), view.len() as u64)
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

    /// INIT: what this filesystem asks of the kernel. Returns whether the
    /// kernel agreed to FUSE over io_uring, if `want_uring`.
    fn negotiate(&self, config: &mut KernelConfig, want_uring: bool) -> std::io::Result<bool> {
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
        let _ = config.set_max_readahead(MAX_IO as u32);
        // Nothing is written; this bounds the io_uring payload buffers.
        let _ = config.set_max_write(MAX_IO as u32);
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
        let uring = want_uring
            && config
                .add_capabilities(InitFlags::FUSE_OVER_IO_URING)
                .is_ok();
        info!(
            "serving {} inodes, open mode {}, transport {}",
            self.state.current().len(),
            if self.uses_passthrough() {
                "passthrough"
            } else {
                "cached"
            },
            if uring { "io_uring" } else { "/dev/fuse" }
        );
        Ok(uring)
    }
}

/// The largest read (and readahead) the kernel sends, which is also the
/// size of each io_uring payload buffer.
pub(crate) const MAX_IO: usize = 1 << 20;

/// fuser's side: negotiates the connection and serves `/dev/fuse`. Once
/// io_uring queues are registered, only FORGETs and INTERRUPTs still come
/// this way.
pub struct FuseAdapter {
    fs: Arc<SiteFs>,
    uring: Option<crate::mount::uring::Offer>,
}

impl FuseAdapter {
    /// `uring`: ask the kernel for FUSE over io_uring and record its answer.
    pub fn new(fs: Arc<SiteFs>, uring: Option<crate::mount::uring::Offer>) -> Self {
        FuseAdapter { fs, uring }
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let granted = self.fs.negotiate(config, self.uring.is_some())?;
        match &self.uring {
            Some(offer) => offer.settle(granted),
            None => Ok(()),
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup_attr(parent.0, name.as_bytes()) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr_of(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink_of(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let opened = self
            .fs
            .open_file(ino.0, flags.0, &self.fs.backing, |f| reply.open_backing(f));
        match opened {
            // Cached mode: ENOSYS tells the kernel to stop sending opens
            // for this mount and to keep its page cache.
            Ok(Opened::NoOpen) => reply.error(Errno::ENOSYS),
            Ok(Opened::Passthrough { fh, id }) => {
                reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id)
            }
            Ok(Opened::Daemon) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
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
        let mut buf = vec![0u8; (size as usize).min(MAX_IO)];
        match self.fs.read_into(ino.0, offset, &mut buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(e),
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
        let mut cache = self.fs.backing.lock().unwrap_or_else(|e| e.into_inner());
        cache.release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir_check(ino.0) {
            Ok(()) => reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(e),
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
        let listed = self.fs.list_dir(ino.0, offset, |next, name, attr| {
            reply.add(attr.ino, next, attr.kind, name)
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let listed = self.fs.list_dir(ino.0, offset, |next, name, attr| {
            reply.add(attr.ino, next, name, &TTL, attr, Generation(0))
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
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
        let (blocks, files) = self.fs.statfs_figures();
        reply.statfs(blocks, 0, 0, files, 0, 4096, 255, 4096);
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
