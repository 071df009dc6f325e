//! Mount lifecycle: check, daemonize, serve, unmount.
//!
//! `sitefs mount` does every check that can fail (manifest, store,
//! conflicts, mountpoint) in the foreground, so errors reach the user's
//! terminal; then it forks a daemon and exits 0 only once the daemon
//! reports that the kernel finished INIT, i.e. the mount is live. The
//! daemon forks a tiny watchdog that unmounts if the daemon dies, so a
//! crash never leaves "Transport endpoint is not connected" behind.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::UNIX_EPOCH;

use fuser::{Config, MountOption, Session, SessionACL};
use log::{error, info};

use crate::manifest::{open_store, Manifest, ManifestError};
use crate::mount::fs::{FuseAdapter, OpenMode, PycMode, SiteFs, ViewState};
use crate::mount::uring::{Starter, UringMode};
use crate::store::lock::UseGuard;
use crate::store::roots::MountRoot;
use crate::store::Store;
use crate::view::image::{self, PendingImage};
use crate::view::View;

/// Why a mount or unmount failed; one line each, saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("mountpoint {0} does not exist: create it with `mkdir -p {0}`")]
    NoMountpoint(String),
    #[error("mountpoint {0} is not a directory")]
    NotADir(String),
    #[error("{0} is already a mount point: unmount it first with `sitefs umount {0}`")]
    AlreadyMounted(String),
    #[error("{0} is a dead FUSE mount (its daemon died): clear it with `sitefs umount {0}`")]
    DeadMount(String),
    #[error("{0} is not mounted")]
    NotMounted(String),
    #[error(
        "{0} is busy: a process still uses it (see `fuser -vm {0}`); close it or use `umount -l`"
    )]
    Busy(String),
    #[error("unknown mount option {0:?} (known: allow_other, allow_root, open=auto|passthrough|cached, uring=auto|on|off, pyc=link|file, threads=N, and the generic ro, nosuid, nodev, noatime, defaults, nofail, ...)")]
    UnknownOption(String),
    #[error("mount option {0:?} is not supported: {1}")]
    BadOption(String, &'static str),
    #[error(
        "allow_other needs `user_allow_other` in /etc/fuse.conf when mounting as a non-root user"
    )]
    NeedsUserAllowOther,
    #[error("mounting {mountpoint}: {err}")]
    Mount { mountpoint: String, err: String },
    #[error("{0}")]
    Daemon(String),
    #[error("the mount daemon exited before the mount was live (run `sitefs -v mount -f ...` to see why)")]
    DaemonDied,
    #[error("{0}")]
    Sys(String),
}

/// Options given with `-o`, as mount(8) and fstab pass them.
#[derive(Debug, Clone, PartialEq)]
pub struct MountOpts {
    pub acl: SessionACL,
    pub open: OpenMode,
    pub uring: UringMode,
    pub pycs: PycMode,
    pub threads: usize,
    pub fsname: Option<String>,
}

impl Default for MountOpts {
    fn default() -> Self {
        MountOpts {
            acl: SessionACL::Owner,
            open: OpenMode::Cached,
            uring: UringMode::Auto,
            pycs: PycMode::Link,
            threads: 4,
            fsname: None,
        }
    }
}

/// Options mount(8), fstab and mount.fuse3 pass that mean nothing more
/// for a read-only, nosuid, nodev mount; accepted and ignored.
const IGNORED: [&str; 20] = [
    "ro",
    "defaults",
    "dev",
    "suid",
    "nodev",
    "nosuid",
    "noatime",
    "relatime",
    "atime",
    "exec",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "nofail",
    "_netdev",
    "default_permissions",
    "auto_unmount",
];

/// The value of `opt`, one of the option's `words`.
fn word<T: Copy>(opt: &str, value: &str, words: &[(&str, T)]) -> Result<T, MountError> {
    words
        .iter()
        .find(|(w, _)| *w == value)
        .map(|&(_, t)| t)
        .ok_or_else(|| MountError::UnknownOption(opt.into()))
}

impl MountOpts {
    /// Parse comma-separated options (several `-o` may be joined by `,`).
    pub fn parse(list: &str) -> Result<Self, MountError> {
        let mut o = MountOpts::default();
        for opt in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = opt
                .split_once('=')
                .map_or((opt, None), |(k, v)| (k, Some(v)));
            match (key, value) {
                ("allow_other", None) => o.acl = SessionACL::All,
                ("allow_root", None) => o.acl = SessionACL::RootAndOwner,
                ("open", Some(v)) => o.open = word(opt, v, OpenMode::WORDS)?,
                ("uring", Some(v)) => o.uring = word(opt, v, UringMode::WORDS)?,
                ("pyc", Some(v)) => o.pycs = word(opt, v, PycMode::WORDS)?,
                ("threads", Some(v)) => {
                    o.threads =
                        v.parse()
                            .ok()
                            .filter(|n| (1..=64).contains(n))
                            .ok_or_else(|| {
                                MountError::BadOption(
                                    opt.into(),
                                    "threads must be between 1 and 64",
                                )
                            })?
                }
                ("fsname", Some(v)) => o.fsname = Some(v.to_string()),
                ("rw", None) => {
                    return Err(MountError::BadOption(
                        opt.into(),
                        "sitefs mounts are read-only",
                    ))
                }
                ("noexec", None) => {
                    return Err(MountError::BadOption(
                        opt.into(),
                        "extension modules are mmapped executable and would fail to load",
                    ))
                }
                (k, _)
                    if IGNORED.contains(&k)
                        || k.starts_with("x-")
                        || k == "comment"
                        || k == "subtype" => {}
                _ => return Err(MountError::UnknownOption(opt.into())),
            }
        }
        Ok(o)
    }
}

/// What `sitefs mount` was asked to do.
pub struct MountRequest {
    pub manifest: PathBuf,
    pub mountpoint: PathBuf,
    pub opts: MountOpts,
    pub foreground: bool,
}

/// A manifest checked against its store and a mountpoint checked for
/// use: everything that can fail before the kernel is involved.
pub struct Prepared {
    pub manifest: PathBuf,
    pub store: Store,
    pub view: View,
    pub mountpoint: PathBuf,
    /// The store ids the view serves: the mount's gc root.
    pub dists: Vec<String>,
    /// Keeps gc out from loading the view until the mount's root is
    /// recorded (see [`crate::store::lock`]).
    pub guard: Option<UseGuard>,
    /// The view's image, to write once the mount is live, when the view
    /// was built rather than loaded from one.
    pub image: Option<PendingImage>,
}

/// Check a mountpoint and a manifest.
pub fn prepare(manifest: &Path, mountpoint: &Path) -> Result<Prepared, MountError> {
    let mountpoint = check_mountpoint(mountpoint)?;
    prepare_on(manifest, mountpoint)
}

/// Check a manifest and build its view, for a mount on `mountpoint`
/// (checked already).
fn prepare_on(manifest: &Path, mountpoint: PathBuf) -> Result<Prepared, MountError> {
    let manifest = std::path::absolute(manifest).unwrap_or(manifest.to_path_buf());
    let m = Manifest::load(&manifest)?;
    // gc must not run between reading the store and recording the
    // mount's root (see crate::store::lock).
    let guard = Some(UseGuard::acquire(&m.store_path(&manifest)));
    let (store, view, dists, image) = view_of(m, &manifest)?;
    Ok(Prepared {
        manifest,
        store,
        view,
        mountpoint,
        dists,
        guard,
        image,
    })
}

/// Mount a manifest; returns once the mount is live (daemon mode) or
/// once it is unmounted again (foreground).
///
/// In daemon mode the daemon itself reads the manifest and builds the
/// view, and the caller only checks the mountpoint, forks and waits: a
/// caller that built the view would pay for forking a large address
/// space and for tearing it down again at exit, both on the mount's
/// critical path. Errors reach the caller through the status pipe with
/// the same one-line message.
pub fn mount(req: MountRequest) -> Result<(), MountError> {
    if req.foreground {
        return serve(prepare(&req.manifest, &req.mountpoint)?, &req.opts, None);
    }
    let manifest = std::path::absolute(&req.manifest).unwrap_or(req.manifest.clone());
    let mountpoint = check_mountpoint(&req.mountpoint)?;
    let Some(status) = daemonize()? else {
        return Ok(());
    };
    let result = match prepare_on(&manifest, mountpoint) {
        Ok(p) => serve(p, &req.opts, Some(status)),
        Err(e) => {
            status.send(&format!("ERR {e}"));
            Err(e)
        }
    };
    exit_daemon(result)
}

/// Serve a prepared mount. In the background (the default) this forks:
/// the caller gets `Ok` once the mount is live, while the child serves it
/// and never returns.
pub fn launch(p: Prepared, opts: &MountOpts, foreground: bool) -> Result<(), MountError> {
    if foreground {
        return serve(p, opts, None);
    }
    let Some(status) = daemonize()? else {
        // The parent is about to exit: freeing the view and the store's
        // cached indexes would only cost time (and copy-on-write faults on
        // pages shared with the child) between the mount going live and
        // the command returning.
        std::mem::forget((p.view, p.store));
        return Ok(());
    };
    exit_daemon(serve(p, opts, Some(status)))
}

/// End a daemon: its caller has been told the outcome already.
fn exit_daemon(result: Result<(), MountError>) -> ! {
    if let Err(e) = &result {
        error!("{e}");
    }
    std::process::exit(i32::from(result.is_err()))
}

/// Load and check a manifest, building its view. The view's directory
/// mtime is the manifest's mtime: stable across remounts, and changed
/// whenever the manifest is rewritten.
pub fn load_view(manifest_path: &Path) -> Result<(Store, View, Vec<String>), ManifestError> {
    let (store, view, dists, _) = view_of(Manifest::load(manifest_path)?, manifest_path)?;
    Ok((store, view, dists))
}

/// [`load_view`] for a live mount: the manifest is parsed once, and gc
/// is kept out until the new view's root is recorded (the guard).
fn reload_view(manifest_path: &Path) -> Result<(UseGuard, View, Vec<String>), ManifestError> {
    let m = Manifest::load(manifest_path)?;
    let guard = UseGuard::acquire(&m.store_path(manifest_path));
    // No image: the manifest was just rewritten, like a new env's (see
    // `env::build_env`); the next mount of it writes one.
    let (_, view, dists, _no_image) = view_of(m, manifest_path)?;
    Ok((guard, view, dists))
}

/// The manifest's view (from its image when current), its dists' ids,
/// and the image to write when the view was built.
type ViewOf = (Store, View, Vec<String>, Option<PendingImage>);

fn view_of(m: Manifest, manifest_path: &Path) -> Result<ViewOf, ManifestError> {
    let mtime = std::fs::metadata(manifest_path)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    let store = open_store(&m, manifest_path)?;
    let (view, image) = image::load_or_build(&m, &store, manifest_path, mtime)?;
    Ok((
        store,
        view,
        m.dists.into_iter().map(|d| d.id).collect(),
        image,
    ))
}

/// Whether a failed request to a FUSE mount means its daemon is gone:
/// ENOTCONN, ECONNABORTED while aborting, ECANCELED while the rings of an
/// io_uring connection are torn down. No live sitefs answers these.
fn means_dead_mount(errno: i32) -> bool {
    matches!(errno, libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
}

/// The mountpoint must be an existing directory that is not already a
/// mount point (mounting over one would hide it, confusingly).
pub fn check_mountpoint(p: &Path) -> Result<PathBuf, MountError> {
    let shown = p.display().to_string();
    match std::fs::metadata(p) {
        Err(e) if e.raw_os_error().is_some_and(means_dead_mount) => {
            return Err(MountError::DeadMount(shown))
        }
        Err(_) => return Err(MountError::NoMountpoint(shown)),
        Ok(m) if !m.is_dir() => return Err(MountError::NotADir(shown)),
        Ok(_) => {}
    }
    let abs = p
        .canonicalize()
        .map_err(|e| MountError::Sys(format!("{shown}: {e}")))?;
    if is_mount_point(&abs) {
        return Err(MountError::AlreadyMounted(shown));
    }
    Ok(abs)
}

/// Whether `/proc/self/mountinfo` lists `p` as a mount point.
pub fn is_mount_point(p: &Path) -> bool {
    mount_device(p).is_some()
}

/// The `major:minor` device of the topmost mount on `p`, from mountinfo
/// (no request reaches the filesystem). Every FUSE connection has its own
/// device, so this tells one mount at a path from a later one.
fn mount_device(p: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = p.as_os_str().as_bytes();
    info.lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .rfind(|f| f.len() > 4 && unescape_mountinfo(f[4]).as_slice() == want)
        .map(|f| f[2].to_string())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The write end of the pipe on which the daemon tells the waiting
/// parent whether the mount went live.
pub struct Status(File);

impl Status {
    fn send(mut self, msg: &str) {
        let _ = self.0.write_all(msg.as_bytes());
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), MountError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(MountError::Sys(format!(
            "pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Fork. The parent waits for the child's status and returns `None`
/// once the mount is live, or the child's error once the child has
/// exited; the child returns the status pipe and continues as a detached
/// daemon.
fn daemonize() -> Result<Option<Status>, MountError> {
    let (rd, wr) = pipe()?;
    // SAFETY: the process is single-threaded here (no FUSE threads yet),
    // so the child may continue running arbitrary Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(MountError::Sys(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        ))),
        0 => {
            drop(rd);
            detach();
            Ok(Some(Status(File::from(wr))))
        }
        child => {
            drop(wr);
            let mut msg = String::new();
            let _ = File::from(rd).read_to_string(&mut msg);
            if msg == "OK" {
                return Ok(None);
            }
            // The child failed and is exiting: reap it, so that no process
            // of a failed mount outlives the error its caller reports.
            // SAFETY: plain syscall on our own child.
            unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
            match msg.strip_prefix("ERR ") {
                Some(e) => Err(MountError::Daemon(e.to_string())),
                None => Err(MountError::DaemonDied),
            }
        }
    }
}

/// Leave the caller's terminal (the session is left in `serve`, once the
/// mount exists). All three standard streams go to /dev/null: a daemon
/// holding the caller's stderr would keep a pipeline such as
/// `sitefs mount ... 2>&1 | tee log` open forever. Use `mount -f` to see
/// the daemon's logs.
fn detach() {
    // SAFETY: plain syscalls on valid arguments.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    let _ = std::env::set_current_dir("/");
}

fn fuse_config(opts: &MountOpts, fsname: &str) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoAtime,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::DefaultPermissions,
        MountOption::FSName(fsname.to_string()),
        MountOption::Subtype("sitefs".into()),
    ];
    config.acl = opts.acl;
    config.n_threads = Some(opts.threads);
    config.clone_fd = true;
    config
}

/// Mount, report readiness, and serve until unmounted or signalled,
/// reloading the view whenever the manifest file is replaced.
fn serve(p: Prepared, opts: &MountOpts, status: Option<Status>) -> Result<(), MountError> {
    let fail = |status: Option<Status>, e: MountError| {
        if let Some(s) = status {
            s.send(&format!("ERR {e}"));
        }
        e
    };
    // Block termination signals before any thread starts, so that every
    // thread inherits the mask and only `sigwait` sees them.
    let signals = signal_set(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1]);
    // SAFETY: signals is a valid, initialized sigset.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };
    let fsname = opts
        .fsname
        .clone()
        .unwrap_or_else(|| p.manifest.display().to_string());
    let state = ViewState::new(p.view);
    let store = p.store.clone();
    let fs = Arc::new(SiteFs::new(state.clone(), p.store, opts.open, opts.pycs));
    let uring = match Starter::prepare(opts.uring) {
        Ok(u) => u,
        Err(e) => return Err(fail(status, MountError::Sys(e))),
    };
    let adapter = FuseAdapter::new(fs.clone(), uring.as_ref().map(Starter::offer));
    // Mounts and completes INIT.
    let session = match Session::new(adapter, &p.mountpoint, &fuse_config(opts, &fsname)) {
        Ok(s) => s,
        Err(e) => return Err(fail(status, mount_error(&p.mountpoint, &e))),
    };
    if status.is_some() {
        // Leave the caller's session only now that the mount exists: autofs
        // serves lookups of a mountpoint it is mounting only to automount's
        // process group, so a daemon that had already left it would wait
        // forever for its own mount.
        // SAFETY: plain syscall.
        unsafe { libc::setsid() };
    }
    let watchdog = match spawn_watchdog(&p.mountpoint) {
        Ok(w) => w,
        Err(e) => return Err(fail(status, e)),
    };
    let root = match MountRoot::register(&store, &p.mountpoint, &p.manifest, &p.dists) {
        Ok(r) => Arc::new(Mutex::new(r)),
        Err(e) => return Err(fail(status, MountError::Sys(e.to_string()))),
    };
    drop(p.guard);
    // After the watchdog's fork, which must see one thread. Until every
    // queue is registered the kernel holds this mount's requests.
    if let Some(starter) = uring {
        if let Err(e) = starter.start(fs, session.as_fd()) {
            let e = MountError::Sys(format!("starting FUSE over io_uring: {e}"));
            return Err(fail(status, e));
        }
    }
    let notifier = session.notifier();
    if let Err(e) = watch_manifest(&p.manifest, state.clone(), notifier, root.clone()) {
        log::warn!(
            "live reload disabled: cannot watch {}: {e}",
            p.manifest.display()
        );
    }
    info!("mounted {fsname} on {}", p.mountpoint.display());
    if let Some(s) = status {
        s.send("OK");
    }
    notify_systemd_ready();
    if let Some(image) = p.image {
        // Off the mount's critical path: the caller has its answer.
        let view = state.current();
        std::thread::spawn(move || image.save(&view));
    }
    let result = run_until_signalled(session, &p.mountpoint, &signals);
    root.lock().unwrap_or_else(|e| e.into_inner()).remove();
    drop(watchdog);
    result
}

/// Tell systemd the mount is live when run as a `Type=notify` service
/// (`sitefs mount -f` under systemd sets `$NOTIFY_SOCKET`).
fn notify_systemd_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(Path::new(&path)),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(b"READY=1", &a));
    if let Err(e) = sent {
        log::warn!("cannot notify systemd: {e}");
    }
}

/// Watch the manifest's directory; when the manifest is replaced (as
/// `Manifest::save` does, by rename), rebuild the view and swap it in.
/// A manifest that fails to load leaves the old view serving.
fn watch_manifest(
    manifest: &Path,
    state: Arc<ViewState>,
    notifier: fuser::Notifier,
    root: Arc<Mutex<MountRoot>>,
) -> std::io::Result<()> {
    let dir = manifest.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = manifest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let cdir = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: plain syscalls; the fd is owned below.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by inotify_init1.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mask = libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;
    // SAFETY: fd and cdir are valid.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), cdir.as_ptr(), mask) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let manifest = manifest.to_path_buf();
    std::thread::Builder::new()
        .name("manifest-watch".into())
        .spawn(move || {
            let mut file = File::from(fd);
            let mut buf = [0u8; 4096];
            while let Ok(n) = file.read(&mut buf) {
                if n == 0 || !inotify_names(&buf[..n]).any(|e| e == name.as_bytes()) {
                    continue;
                }
                match reload_view(&manifest) {
                    Ok((_use, view, dists)) => {
                        let recorded = root
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .update(&dists);
                        if let Err(e) = recorded {
                            log::error!("not reloading: cannot record the mount's gc root: {e}");
                            continue;
                        }
                        let changes = state.replace(view);
                        crate::mount::fs::invalidate(&notifier, &changes);
                        info!(
                            "reloaded {} ({} directories changed)",
                            manifest.display(),
                            changes.len()
                        );
                    }
                    Err(e) => log::error!("not reloading: {e}"),
                }
            }
        })?;
    Ok(())
}

/// The names in a buffer of `struct inotify_event`s.
fn inotify_names(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let header = std::mem::size_of::<libc::inotify_event>();
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + header > buf.len() {
            return None;
        }
        let len = u32::from_ne_bytes(buf[off + 12..off + 16].try_into().ok()?) as usize;
        let name = buf.get(off + header..off + header + len)?;
        off += header + len;
        Some(name.split(|&b| b == 0).next().unwrap_or_default())
    })
}

fn mount_error(mountpoint: &Path, e: &std::io::Error) -> MountError {
    let msg = e.to_string();
    if msg.contains("user_allow_other") {
        return MountError::NeedsUserAllowOther;
    }
    // SAFETY: plain syscalls on a static NUL-terminated path.
    let no_dev_fuse = unsafe {
        libc::geteuid() != 0 && libc::access(c"/dev/fuse".as_ptr(), libc::R_OK | libc::W_OK) != 0
    };
    if no_dev_fuse {
        return MountError::Mount {
            mountpoint: mountpoint.display().to_string(),
            err: "this user may not open /dev/fuse: ask an admin to allow FUSE (distributions ship it crw-rw-rw-; `chmod 0666 /dev/fuse`)".into(),
        };
    }
    MountError::Mount {
        mountpoint: mountpoint.display().to_string(),
        err: msg,
    }
}

/// Block the termination signals in every thread, run the session on
/// worker threads, and unmount on SIGTERM/SIGINT/SIGHUP. Returns when the
/// filesystem is unmounted, whoever unmounted it.
fn run_until_signalled(
    session: Session<FuseAdapter>,
    mountpoint: &Path,
    set: &libc::sigset_t,
) -> Result<(), MountError> {
    let fuser_thread = run_without_unmount_on_exit(session)?;
    let runner = std::thread::spawn(move || {
        let r = fuser_thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the FUSE session thread panicked")));
        // SAFETY: wakes the main thread's sigwait.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
        r
    });
    loop {
        let mut sig = 0;
        // SAFETY: set and sig are valid.
        unsafe { libc::sigwait(set, &mut sig) };
        if sig == libc::SIGUSR1 {
            break;
        }
        info!("signal {sig}: unmounting {}", mountpoint.display());
        if let Err(MountError::Busy(_)) = unmount(mountpoint) {
            // Detach now; the kernel ends the session when the last user
            // lets go.
            let _ = lazy_unmount(mountpoint);
        }
    }
    match runner.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(MountError::Sys(format!("FUSE session: {e}"))),
        Err(_) => Err(MountError::Sys("the FUSE session thread panicked".into())),
    }
}

/// Start the session's request loop without fuser's unmount-at-exit.
///
/// When a session ends, fuser unmounts its mountpoint *by path*, even
/// when the session ended because someone else unmounted it. By then the
/// path is no longer ours: under autofs that lookup mounts the env again
/// (the expired key is a trigger), and after a quick remount it unmounts
/// the new mount. This daemon unmounts only on a signal, while its mount
/// is still live (`run_until_signalled`).
fn run_without_unmount_on_exit(
    session: Session<FuseAdapter>,
) -> Result<JoinHandle<std::io::Result<()>>, MountError> {
    // `spawn` moves fuser's mount handle out of the session into the
    // BackgroundSession, whose drop would unmount the path.
    let bg = ManuallyDrop::new(
        session
            .spawn()
            .map_err(|e| MountError::Sys(format!("starting the FUSE session: {e}")))?,
    );
    // SAFETY: `bg` is never used or dropped again, so the join handle is
    // moved out exactly once; the mount handle and channel sender it also
    // holds are leaked on purpose until the process exits.
    Ok(unsafe { std::ptr::read(&bg.guard) })
}

fn signal_set(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset initializes the set before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Holds the pipe whose closing (at daemon exit, however it happens)
/// wakes the watchdog.
struct Watchdog(#[allow(dead_code)] OwnedFd);

/// Fork a watchdog that waits for this process to die and then clears
/// the mount if it is still there. Forked before any FUSE thread starts.
fn spawn_watchdog(mountpoint: &Path) -> Result<Watchdog, MountError> {
    let (rd, wr) = pipe()?;
    let target = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|e| MountError::Sys(e.to_string()))?;
    let device = mount_device(mountpoint);
    // SAFETY: single-threaded here; the child only makes syscalls and
    // exits with _exit.
    match unsafe { libc::fork() } {
        -1 => Err(MountError::Sys(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        ))),
        0 => watchdog_main(rd.as_raw_fd(), &target, device),
        _ => {
            drop(rd);
            Ok(Watchdog(wr))
        }
    }
}

fn watchdog_main(rd: RawFd, target: &CString, device: Option<String>) -> ! {
    // SAFETY: syscalls, and reading mountinfo, which allocates: fine, as
    // the daemon forks the watchdog while it is still single-threaded.
    unsafe {
        // Keep only the pipe: holding the FUSE device open would keep a
        // dead daemon's connection alive and hang every reader.
        libc::dup2(rd, 3);
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
        for fd in 0..3 {
            libc::close(fd);
        }
        libc::setsid();
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        let mut b = [0u8; 1];
        while libc::read(3, b.as_mut_ptr().cast(), 1) != 0 {
            if *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        // Touch the path only if our own mount is still there: after an
        // unmount the path may be an automount trigger (stat-ing it would
        // mount the environment again) or hold a newer mount of the same
        // manifest, which is not ours to clear.
        let now = mount_device(Path::new(std::ffi::OsStr::from_bytes(target.as_bytes())));
        if device.is_none() || now != device {
            libc::_exit(0)
        }
        // Force a request to the daemon: a cached attribute would make a
        // dead mount look alive.
        let mut stx: libc::statx = std::mem::zeroed();
        let failed = libc::statx(
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_STATX_FORCE_SYNC,
            libc::STATX_TYPE,
            &mut stx,
        ) != 0;
        let dead = failed && means_dead_mount(*libc::__errno_location());
        if dead {
            if libc::geteuid() == 0 {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            } else {
                let prog = c"fusermount3";
                let args = [
                    prog.as_ptr(),
                    c"-u".as_ptr(),
                    c"-z".as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                ];
                libc::execvp(prog.as_ptr(), args.as_ptr());
            }
        }
        libc::_exit(0)
    }
}

fn lazy_unmount(p: &Path) -> std::io::Result<()> {
    let c = CString::new(p.as_os_str().as_bytes())?;
    // SAFETY: c is a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EPERM) {
        return Err(err);
    }
    // Not root: the setuid helper may unmount what this user mounted.
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg("--")
        .arg(p)
        .stderr(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(err)
    }
}

/// `sitefs umount`: unmount directly as root, through fusermount3
/// otherwise. The daemon notices and exits.
pub fn unmount(p: &Path) -> Result<(), MountError> {
    let shown = p.display().to_string();
    let abs = std::path::absolute(p).unwrap_or(p.to_path_buf());
    if !is_mount_point(&abs) {
        return Err(MountError::NotMounted(shown));
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return fusermount_unmount(&abs, &shown);
    }
    let c = CString::new(abs.as_os_str().as_bytes()).map_err(|e| MountError::Sys(e.to_string()))?;
    // SAFETY: c is a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EBUSY) => Err(MountError::Busy(shown)),
        Some(libc::EINVAL) => Err(MountError::NotMounted(shown)),
        e => Err(MountError::Sys(format!(
            "umount {shown}: {}",
            std::io::Error::from_raw_os_error(e.unwrap_or(0))
        ))),
    }
}

fn fusermount_unmount(abs: &Path, shown: &str) -> Result<(), MountError> {
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(abs)
        .output()
        .map_err(|e| MountError::Sys(format!("running fusermount3: {e} (install fuse3)")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("busy") {
        return Err(MountError::Busy(shown.to_string()));
    }
    Err(MountError::Sys(format!(
        "fusermount3 -u {shown}: {}",
        err.trim()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_options() {
        let o = MountOpts::parse(
            "ro,nosuid,nodev,allow_other,nofail,open=passthrough,uring=off,pyc=file,threads=2,x-systemd.automount",
        )
        .unwrap();
        assert_eq!(o.acl, SessionACL::All);
        assert_eq!(o.open, OpenMode::Passthrough);
        assert_eq!(o.uring, UringMode::Off);
        assert_eq!(o.pycs, PycMode::File);
        assert_eq!(MountOpts::parse("uring=yes").unwrap().uring, UringMode::On);
        assert_eq!(MountOpts::default().pycs, PycMode::Link);
        assert!(MountOpts::parse("pyc=copy").is_err());
        assert_eq!(o.threads, 2);
        assert_eq!(MountOpts::default().uring, UringMode::Auto);
        assert!(MountOpts::parse("uring=maybe").is_err());
        assert_eq!(MountOpts::parse("").unwrap(), MountOpts::default());
        let e = MountOpts::parse("ro,bogus").unwrap_err().to_string();
        assert!(e.contains("unknown mount option \"bogus\""), "{e}");
        assert!(MountOpts::parse("rw")
            .unwrap_err()
            .to_string()
            .contains("read-only"));
        assert!(MountOpts::parse("noexec").is_err());
        assert!(MountOpts::parse("open=fast").is_err());
        assert!(MountOpts::parse("threads=0").is_err());
    }

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_mountinfo("/a\\040b"), b"/a b");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
    }

    #[test]
    fn mountpoint_checks() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            check_mountpoint(&missing),
            Err(MountError::NoMountpoint(_))
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            check_mountpoint(&file),
            Err(MountError::NotADir(_))
        ));
        assert!(matches!(
            check_mountpoint(Path::new("/proc")),
            Err(MountError::AlreadyMounted(_))
        ));
        assert!(check_mountpoint(dir.path()).is_ok());
    }
}
