//! FUSE over io_uring: a second transport for [`SiteFs`], used when the
//! kernel offers it (Linux ≥ 6.14 with `fuse.enable_uring=Y`).
//!
//! Why: on `/dev/fuse` every request wakes whichever daemon thread has
//! waited longest, usually on another CPU. When that CPU is idle, waking
//! it costs 100–250 µs on a virtual machine, paid by every lookup and
//! read of a cold import and every `isatty()` CPython (before 3.14) asks
//! of a file it opens through the mount (pycs opened through it, before
//! they became links into the store, cost a heavy import ~7 %). With
//! io_uring the kernel keeps one request queue per CPU and hands each
//! request to the queue of the CPU that issued it; our thread for that
//! queue is pinned there, so the request is answered on the same CPU,
//! without waking another (~25 µs round trip instead of ~150 µs).
//!
//! Protocol (linux `fs/fuse/dev_uring.c`, ABI 7.42): each queue thread
//! registers ring entries, each a header buffer (`fuse_in_header`, the
//! op's first argument, and a trailer with the request id and payload
//! size) and a payload buffer (the remaining arguments; the reply's
//! arguments). A completion means the entry holds a request; the reply is
//! written in place and committed with `COMMIT_AND_FETCH`, which also
//! waits for the next request. FORGET, INTERRUPT and notifications still
//! travel over `/dev/fuse`, served by fuser.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType};
use io_uring::{cqueue, opcode, squeue, types, EnterFlags, IoUring};
use log::{debug, error, info, trace};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use crate::mount::connection_gone;
use crate::mount::fs::{BackingCache, Opened, SiteFs, MAX_IO};

/// Whether to serve requests over io_uring (`-o uring=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UringMode {
    /// When the kernel offers it and io_uring works in this process.
    Auto,
    /// Fail the mount if it cannot be used.
    On,
    /// Always `/dev/fuse`.
    Off,
}

impl UringMode {
    /// Its `-o uring=` words.
    pub const WORDS: &'static [(&'static str, UringMode)] = &[
        ("auto", UringMode::Auto),
        ("on", UringMode::On),
        ("yes", UringMode::On),
        ("off", UringMode::Off),
        ("no", UringMode::Off),
    ];
}

/// The kernel switch for FUSE over io_uring.
pub const ENABLE_PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// Why io_uring cannot serve this mount, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum UringUnavailable {
    #[error("this kernel has no FUSE over io_uring ({})", .0.display())]
    NoKernelSupport(PathBuf),
    #[error("FUSE over io_uring is switched off: as root, `echo Y > {}`", .0.display())]
    SwitchedOff(PathBuf),
    #[error("io_uring is not available to this process: {0}")]
    Blocked(#[source] io::Error),
}

/// Ring entries per queue: requests of one CPU are mostly synchronous;
/// a second entry takes readahead issued meanwhile.
const ENTRIES_PER_QUEUE: usize = 2;

// include/uapi/linux/fuse.h
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
const OUT_HEADER_LEN: usize = 16;
const FOPEN_KEEP_CACHE: u32 = 1 << 1;
const FOPEN_CACHE_DIR: u32 = 1 << 3;
const FOPEN_PASSTHROUGH: u32 = 1 << 7;
const BACKING_OPEN: libc::c_ulong = 0x4010_e501; // _IOW(229, 1, struct fuse_backing_map)
const BACKING_CLOSE: libc::c_ulong = 0x4004_e502; // _IOW(229, 2, uint32_t)

/// FUSE opcodes this transport answers; any other gets ENOSYS, as from
/// fuser's defaults.
mod op {
    pub const LOOKUP: u32 = 1;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const SETXATTR: u32 = 21;
    pub const REMOVEXATTR: u32 = 24;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const CREATE: u32 = 35;
    pub const DESTROY: u32 = 38;
    pub const IOCTL: u32 = 39;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const TMPFILE: u32 = 51;
}

/// Per-entry header buffer (`struct fuse_uring_req_header`).
#[repr(C)]
struct Header {
    /// `fuse_in_header` on fetch, `fuse_out_header` on commit.
    in_out: [u8; 128],
    /// The op's first argument (e.g. `fuse_read_in`).
    op_in: [u8; 128],
    /// `fuse_uring_ent_in_out`.
    flags: u64,
    commit_id: u64,
    payload_sz: u32,
    padding: u32,
    reserved: u64,
}

/// Set up before the mount: knows io_uring works in this process, learns
/// at INIT whether the kernel agreed, and then starts the queue threads.
pub struct Starter(Offer);

/// What INIT needs: whether to ask for io_uring, and where to put the
/// kernel's answer.
#[derive(Clone)]
pub struct Offer {
    mode: UringMode,
    granted: Arc<OnceLock<bool>>,
}

impl Offer {
    /// Record the kernel's answer; an error when `uring=on` was refused.
    pub fn settle(&self, granted: bool) -> io::Result<()> {
        let _ = self.granted.set(granted);
        if !granted && self.mode == UringMode::On {
            return Err(io::Error::other(format!(
                "the kernel refused FUSE over io_uring (uring=on; is {ENABLE_PARAM} Y?)"
            )));
        }
        Ok(())
    }
}

impl Starter {
    /// `None` when this mount will use `/dev/fuse` (mode off, or auto
    /// and io_uring unavailable); an error, naming the fix, when mode on
    /// and unavailable.
    pub fn prepare(mode: UringMode) -> Result<Option<Starter>, UringUnavailable> {
        if mode == UringMode::Off {
            return Ok(None);
        }
        match availability() {
            Ok(()) => Ok(Some(Starter(Offer {
                mode,
                granted: Arc::new(OnceLock::new()),
            }))),
            Err(why) if mode == UringMode::On => Err(why),
            Err(why) => {
                debug!("serving over /dev/fuse: {why}");
                Ok(None)
            }
        }
    }

    pub fn offer(&self) -> Offer {
        self.0.clone()
    }

    /// After INIT: if the kernel granted io_uring, start one thread per
    /// CPU serving that CPU's queue, and say whether it did. Until every
    /// queue has registered, the kernel holds all requests, so a failure
    /// here must fail the mount.
    pub fn start(self, fs: Arc<SiteFs>, device: BorrowedFd) -> io::Result<bool> {
        if self.0.granted.get() != Some(&true) {
            return Ok(false);
        }
        let device = Arc::new(device.try_clone_to_owned()?);
        let queues = cpu_count("possible")?;
        let online = cpu_list("online")?;
        let backing = Arc::new(Mutex::new(BackingCache::default()));
        let mut plan: Vec<(Option<usize>, Vec<u16>)> = online
            .iter()
            .filter(|&&c| c < queues)
            .map(|&c| (Some(c), vec![c as u16]))
            .collect();
        if plan.is_empty() {
            plan.push((None, Vec::new()));
        }
        // Queues of offline CPUs must be registered too before the kernel
        // switches over; the first thread takes them.
        let orphans = (0..queues)
            .filter(|q| !online.contains(q))
            .map(|q| q as u16);
        plan[0].1.extend(orphans);
        info!("io_uring: {queues} queues on {} threads", plan.len());
        for (cpu, qids) in plan {
            let worker = Worker {
                fs: fs.clone(),
                device: device.clone(),
                backing: backing.clone(),
            };
            std::thread::Builder::new()
                .name(format!("sitefs-uring-{}", qids[0]))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    if let Err(e) = worker.run(&qids) {
                        // The kernel would hold this queue's requests
                        // forever: end the daemon, whose watchdog then
                        // unmounts, rather than leave a hanging mount.
                        error!("io_uring queue {qids:?} failed: {e}; ending the mount");
                        std::process::exit(1);
                    }
                })?;
        }
        Ok(true)
    }
}

/// Why io_uring cannot serve this mount, if it cannot.
fn availability() -> Result<(), UringUnavailable> {
    switched_on(Path::new(ENABLE_PARAM))?;
    IoUring::<squeue::Entry128, cqueue::Entry>::builder()
        .build(2)
        .map(drop)
        .map_err(UringUnavailable::Blocked)
}

/// Whether the kernel switch `param` is on, or what to do about it.
fn switched_on(param: &Path) -> Result<(), UringUnavailable> {
    let value = std::fs::read_to_string(param)
        .map_err(|_| UringUnavailable::NoKernelSupport(param.to_path_buf()))?;
    if value.trim() != "Y" {
        return Err(UringUnavailable::SwitchedOff(param.to_path_buf()));
    }
    Ok(())
}

/// A passthrough backing file registered with the kernel; unregistered
/// when the last open of its inode is gone and it is evicted.
pub(crate) struct Backing {
    id: u32,
    device: Arc<OwnedFd>,
}

impl Backing {
    fn register(device: &Arc<OwnedFd>, file: &File) -> io::Result<Backing> {
        #[repr(C)]
        struct Map {
            fd: i32,
            flags: u32,
            padding: u64,
        }
        let map = Map {
            fd: file.as_raw_fd(),
            flags: 0,
            padding: 0,
        };
        // SAFETY: FUSE_DEV_IOC_BACKING_OPEN reads a fuse_backing_map.
        let id = unsafe { libc::ioctl(device.as_raw_fd(), BACKING_OPEN, &map) };
        if id < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Backing {
            id: id as u32,
            device: device.clone(),
        })
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        // SAFETY: FUSE_DEV_IOC_BACKING_CLOSE reads a u32 id.
        unsafe { libc::ioctl(self.device.as_raw_fd(), BACKING_CLOSE, &self.id) };
    }
}

/// One ring entry: its buffers and the queue it serves.
struct Entry {
    header: Box<Header>,
    payload: Box<[u8]>,
    iov: Box<[libc::iovec; 2]>,
    qid: u16,
    live: bool,
}

impl Entry {
    fn new(qid: u16) -> Entry {
        // SAFETY: Header is plain bytes and integers; all-zero is valid.
        let mut header: Box<Header> = Box::new(unsafe { std::mem::zeroed() });
        let mut payload = vec![0u8; MAX_IO].into_boxed_slice();
        let iov = Box::new([
            libc::iovec {
                iov_base: (&mut *header as *mut Header).cast(),
                iov_len: std::mem::size_of::<Header>(),
            },
            libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            },
        ]);
        Entry {
            header,
            payload,
            iov,
            qid,
            live: true,
        }
    }

    /// The SQE that registers this entry (`cmd_op` REGISTER) or commits
    /// its reply and fetches the next request (COMMIT_AND_FETCH).
    fn sqe(&self, device: RawFd, cmd_op: u32, index: usize) -> squeue::Entry128 {
        let mut cmd = [0u8; 80];
        // struct fuse_uring_cmd_req { u64 flags; u64 commit_id; u16 qid; }
        cmd[8..16].copy_from_slice(&self.header.commit_id.to_ne_bytes());
        cmd[16..18].copy_from_slice(&self.qid.to_ne_bytes());
        let sqe = opcode::UringCmd80::new(types::Fd(device), cmd_op)
            .cmd(cmd)
            .addr(Some(self.iov.as_ptr() as u64))
            .build()
            .user_data(index as u64);
        with_len(sqe, 2)
    }
}

/// Set `sqe->len`, which the io_uring crate has no builder for: FUSE
/// reads the number of iovecs (header, payload) from it.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // SAFETY: Entry128 is repr(C): a 64-byte `struct io_uring_sqe` then
    // 64 command bytes; `len` is the u32 at byte 24 of io_uring_sqe
    // (include/uapi/linux/io_uring.h). All bit patterns are valid.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[24..28].copy_from_slice(&len.to_ne_bytes());
    // SAFETY: as above, any 128 bytes are a valid Entry128.
    unsafe { std::mem::transmute(raw) }
}

/// One queue thread's shared state.
struct Worker {
    fs: Arc<SiteFs>,
    device: Arc<OwnedFd>,
    backing: Arc<Mutex<BackingCache<Backing>>>,
}

impl Worker {
    fn run(&self, qids: &[u16]) -> io::Result<()> {
        let mut entries: Vec<Entry> = qids
            .iter()
            .flat_map(|&q| (0..ENTRIES_PER_QUEUE).map(move |_| Entry::new(q)))
            .collect();
        let mut ring: IoUring<squeue::Entry128, cqueue::Entry> =
            IoUring::builder().build(entries.len().next_power_of_two() as u32)?;
        let dev = self.device.as_raw_fd();
        for (i, e) in entries.iter().enumerate() {
            push(&mut ring, &e.sqe(dev, CMD_REGISTER, i))?;
        }
        let wait = wait_flags(&ring);
        while entries.iter().any(|e| e.live) {
            match submit_and_wait_one(&mut ring, wait) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
            let done: Vec<(usize, i32)> = ring
                .completion()
                .map(|c| (c.user_data() as usize, c.result()))
                .collect();
            for (i, res) in done {
                let e = &mut entries[i];
                if res < 0 {
                    let err = io::Error::from_raw_os_error(-res);
                    if !connection_gone(nix::errno::Errno::from_raw(-res)) {
                        return Err(err);
                    }
                    // The connection is gone: unmounted or aborted.
                    debug!("io_uring entry {i}: {err}");
                    e.live = false;
                    continue;
                }
                self.serve(e);
                push(&mut ring, &e.sqe(dev, CMD_COMMIT_AND_FETCH, i))?;
            }
        }
        Ok(())
    }

    /// Answer the request in `e` in place.
    fn serve(&self, e: &mut Entry) {
        let h = &mut *e.header;
        let opcode = u32_at(&h.in_out, 4);
        let unique = u64_at(&h.in_out, 8);
        let ino = u64_at(&h.in_out, 16);
        let in_len = (h.payload_sz as usize).min(e.payload.len());
        let result = self.answer(opcode, ino, &h.op_in, &mut e.payload, in_len);
        trace!("op {opcode} ino {ino} -> {:?}", result.map_err(Errno::code));
        let (error, len) = match result {
            Ok(len) => (0, len),
            Err(errno) => (-errno.code(), 0),
        };
        h.in_out[..OUT_HEADER_LEN].fill(0);
        put_u32(&mut h.in_out, 0, (OUT_HEADER_LEN + len) as u32);
        put_u32(&mut h.in_out, 4, error as u32);
        put_u64(&mut h.in_out, 8, unique);
        h.payload_sz = len as u32;
        h.commit_id = unique;
    }

    /// The reply's arguments, written at the start of `payload`; the
    /// request's own payload arguments are its first `in_len` bytes.
    fn answer(
        &self,
        opcode: u32,
        ino: u64,
        op_in: &[u8; 128],
        payload: &mut [u8],
        in_len: usize,
    ) -> Result<usize, Errno> {
        let fs = &*self.fs;
        match opcode {
            op::LOOKUP => {
                let name = payload[..in_len].split(|&b| b == 0).next().unwrap_or(&[]);
                let attr = fs.lookup_attr(ino, name)?;
                Ok(put_entry(payload, &attr))
            }
            op::GETATTR => {
                let attr = fs.getattr_of(ino)?;
                put_u64(payload, 0, TTL_SECS);
                put_u32(payload, 8, 0);
                put_u32(payload, 12, 0);
                put_attr(&mut payload[16..], &attr);
                Ok(16 + ATTR_LEN)
            }
            op::READLINK => {
                let target = fs.readlink_of(ino)?;
                let n = target.len().min(payload.len());
                payload[..n].copy_from_slice(&target[..n]);
                Ok(n)
            }
            op::OPEN => {
                let flags = u32_at(op_in, 0) as i32;
                let device = &self.device;
                let opened =
                    fs.open_file(ino, flags, &self.backing, |f| Backing::register(device, f))?;
                let (fh, open_flags, id) = match opened {
                    Opened::NoOpen => return Err(Errno::ENOSYS),
                    Opened::Passthrough { fh, id } => (fh, FOPEN_PASSTHROUGH, id.id),
                    Opened::Daemon => (0, FOPEN_KEEP_CACHE, 0),
                };
                Ok(put_open(payload, fh, open_flags, id))
            }
            op::READ => {
                let offset = u64_at(op_in, 8);
                let size = (u32_at(op_in, 16) as usize).min(payload.len());
                fs.read_into(ino, offset, &mut payload[..size])
            }
            op::RELEASE => {
                let fh = u64_at(op_in, 0);
                self.backing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .release(fh);
                Ok(0)
            }
            op::STATFS => {
                let (blocks, files) = fs.statfs_figures();
                payload[..80].fill(0);
                put_u64(payload, 0, blocks);
                put_u64(payload, 24, files);
                put_u32(payload, 40, 4096); // bsize
                put_u32(payload, 44, 255); // namelen
                put_u32(payload, 48, 4096); // frsize
                Ok(80)
            }
            op::OPENDIR => {
                fs.opendir_check(ino)?;
                Ok(put_open(payload, 0, FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR, 0))
            }
            op::READDIR | op::READDIRPLUS => {
                let offset = u64_at(op_in, 8);
                let size = (u32_at(op_in, 16) as usize).min(payload.len());
                let plus = opcode == op::READDIRPLUS;
                let mut len = 0;
                fs.list_dir(ino, offset, |next, name, attr| {
                    match put_dirent(&mut payload[len..size], plus, next, name, attr) {
                        Some(n) => {
                            len += n;
                            false
                        }
                        None => true,
                    }
                })?;
                Ok(len)
            }
            op::RELEASEDIR | op::DESTROY => Ok(0),
            // Files here are never terminals (see FuseAdapter::ioctl).
            op::IOCTL => Err(Errno::ENOTTY),
            op::SETATTR
            | op::SYMLINK
            | op::MKNOD
            | op::MKDIR
            | op::UNLINK
            | op::RMDIR
            | op::RENAME
            | op::RENAME2
            | op::LINK
            | op::WRITE
            | op::CREATE
            | op::SETXATTR
            | op::REMOVEXATTR
            | op::FALLOCATE
            | op::COPY_FILE_RANGE
            | op::TMPFILE => Err(Errno::EROFS),
            // FLUSH, GETXATTR, ACCESS, LSEEK, STATX, ...: ENOSYS makes the
            // kernel stop asking (or answer itself).
            _ => Err(Errno::ENOSYS),
        }
    }
}

/// `io_uring_enter` flags for waiting on the next request. A queue thread
/// is parked in that wait whenever the mount is idle, and the kernel
/// counts such a wait as iowait unless told otherwise (Linux ≥ 6.15): an
/// idle mount would show as 100 % iowait and full IO pressure.
fn wait_flags(ring: &IoUring<squeue::Entry128, cqueue::Entry>) -> u32 {
    let mut flags = EnterFlags::GETEVENTS;
    if ring.params().is_feature_no_iowait() {
        flags |= EnterFlags::NO_IOWAIT;
    }
    flags.bits()
}

/// Submit what is queued and wait for at least one completion.
fn submit_and_wait_one(
    ring: &mut IoUring<squeue::Entry128, cqueue::Entry>,
    flags: u32,
) -> io::Result<usize> {
    let pending = ring.submission().len() as u32;
    // SAFETY: no argument is passed (size 0, null pointer), and the SQEs
    // being submitted name buffers that outlive the ring (see `push`).
    unsafe {
        ring.submitter()
            .enter::<libc::sigset_t>(pending, 1, flags, None)
    }
}

fn push(
    ring: &mut IoUring<squeue::Entry128, cqueue::Entry>,
    sqe: &squeue::Entry128,
) -> io::Result<()> {
    // SAFETY: the buffers an SQE names (iovecs, header, payload) live in
    // `entries`, which outlives the ring's use of them in `run`.
    unsafe { ring.submission().push(sqe) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))
}

/// Bind the calling thread to `cpu`, where its queue's requests are issued.
fn pin_to(cpu: usize) {
    let mut set = CpuSet::new();
    let pinned = set
        .set(cpu)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set));
    if pinned.is_err() {
        debug!("cannot pin io_uring thread to CPU {cpu}");
    }
}

/// CPUs in `/sys/devices/system/cpu/{which}` ("0-3,5").
fn cpu_list(which: &str) -> io::Result<Vec<usize>> {
    let text = std::fs::read_to_string(format!("/sys/devices/system/cpu/{which}"))?;
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let bad = |_| io::Error::other(format!("cannot parse CPU list {text:?}"));
        let (lo, hi): (usize, usize) = (lo.parse().map_err(bad)?, hi.parse().map_err(bad)?);
        cpus.extend(lo..=hi);
    }
    Ok(cpus)
}

/// The kernel makes one queue per possible CPU, numbered by CPU.
fn cpu_count(which: &str) -> io::Result<usize> {
    Ok(cpu_list(which)?.into_iter().max().map_or(1, |m| m + 1))
}

// ---- the FUSE wire format (little-endian host order) --------------------

const TTL_SECS: u64 = crate::mount::fs::TTL.as_secs();
const ATTR_LEN: usize = 88;
const ENTRY_LEN: usize = 40 + ATTR_LEN;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// The `S_IF*` mode bits and `DT_*` dirent type of the kinds a view has.
fn file_type(kind: FileType) -> (u32, u8) {
    match kind {
        FileType::Directory => (libc::S_IFDIR, libc::DT_DIR),
        FileType::Symlink => (libc::S_IFLNK, libc::DT_LNK),
        _ => (libc::S_IFREG, libc::DT_REG),
    }
}

/// `struct fuse_attr`.
fn put_attr(b: &mut [u8], a: &FileAttr) {
    let (secs, nsecs) = split_time(a.mtime);
    let kind = file_type(a.kind).0;
    put_u64(b, 0, a.ino.0);
    put_u64(b, 8, a.size);
    put_u64(b, 16, a.blocks);
    for at in [24, 32, 40] {
        put_u64(b, at, secs); // atime, mtime, ctime
    }
    for at in [48, 52, 56] {
        put_u32(b, at, nsecs);
    }
    put_u32(b, 60, kind | u32::from(a.perm));
    put_u32(b, 64, a.nlink);
    put_u32(b, 68, a.uid);
    put_u32(b, 72, a.gid);
    put_u32(b, 76, a.rdev);
    put_u32(b, 80, a.blksize);
    put_u32(b, 84, a.flags);
}

/// `struct fuse_entry_out`; inode 0 is a negative entry cached for the TTL.
fn put_entry(b: &mut [u8], a: &FileAttr) -> usize {
    put_u64(b, 0, a.ino.0);
    put_u64(b, 8, 0); // generation
    put_u64(b, 16, TTL_SECS);
    put_u64(b, 24, TTL_SECS);
    put_u64(b, 32, 0); // both nsec fields
    put_attr(&mut b[40..], a);
    ENTRY_LEN
}

/// `struct fuse_open_out`.
fn put_open(b: &mut [u8], fh: u64, flags: u32, backing_id: u32) -> usize {
    put_u64(b, 0, fh);
    put_u32(b, 8, flags);
    put_u32(b, 12, backing_id);
    16
}

/// A `fuse_dirent` (or `fuse_direntplus`), 8-byte aligned; `None` if it
/// does not fit in `b`.
fn put_dirent(b: &mut [u8], plus: bool, next: u64, name: &str, a: &FileAttr) -> Option<usize> {
    let head = if plus { ENTRY_LEN } else { 0 };
    let len = (head + 24 + name.len()).next_multiple_of(8);
    if len > b.len() {
        return None;
    }
    let b = &mut b[..len];
    b.fill(0);
    if plus {
        put_entry(b, a);
    }
    let d = &mut b[head..];
    let dtype = file_type(a.kind).1;
    put_u64(d, 0, a.ino.0);
    put_u64(d, 8, next);
    put_u32(d, 16, name.len() as u32);
    put_u32(d, 20, u32::from(dtype));
    d[24..24 + name.len()].copy_from_slice(name.as_bytes());
    Some(len)
}

fn split_time(t: SystemTime) -> (u64, u32) {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<Header>(), 128 + 128 + 32);
    }

    #[test]
    fn sqe_carries_iovec_count_and_queue() {
        let e = Entry::new(7);
        let sqe = e.sqe(3, CMD_REGISTER, 5);
        // SAFETY: as in with_len.
        let raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
        assert_eq!(u32_at(&raw, 24), 2, "sqe->len");
        assert_eq!(u32_at(&raw, 4), 3, "sqe->fd");
        assert_eq!(u64_at(&raw, 16), e.iov.as_ptr() as u64, "sqe->addr");
        assert_eq!(u64_at(&raw, 32), 5, "user_data");
        // cmd starts at byte 48: flags, commit_id, qid.
        assert_eq!(u16::from_ne_bytes([raw[64], raw[65]]), 7, "qid");
    }

    #[test]
    fn dirents_align_and_stop_when_full() {
        let a = FileAttr {
            ino: fuser::INodeNo(9),
            size: 0,
            blocks: 0,
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind: FileType::RegularFile,
            perm: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        let mut b = [0xffu8; 64];
        assert_eq!(put_dirent(&mut b, false, 3, "abc", &a), Some(32));
        assert_eq!(&b[24..27], b"abc");
        assert_eq!(b[27..32], [0; 5], "padding is zeroed");
        assert_eq!(put_dirent(&mut b[..31], false, 3, "abc", &a), None);
        assert_eq!(put_dirent(&mut [0u8; 256], true, 3, "abc", &a), Some(160));
    }

    #[test]
    fn an_off_or_missing_switch_says_how_to_turn_it_on() {
        let dir = tempfile::tempdir().unwrap();
        let param = dir.path().join("enable_uring");
        let e = switched_on(&param).unwrap_err().to_string();
        assert!(e.contains("this kernel has no FUSE over io_uring"), "{e}");
        std::fs::write(&param, "N\n").unwrap();
        let e = switched_on(&param).unwrap_err().to_string();
        assert!(
            e.contains(&format!("`echo Y > {}`", param.display())),
            "{e}"
        );
        std::fs::write(&param, "Y\n").unwrap();
        assert!(switched_on(&param).is_ok());
    }
}
