//! Mount lifecycle: check, daemonize, serve, unmount.
//!
//! `sitefs mount` does every check that can fail (manifest, store,
//! conflicts, mountpoint) in the foreground, so errors reach the user's
//! terminal; then it forks a daemon ([`crate::mount::daemonize`]) and
//! exits 0 only once the daemon reports that the kernel finished INIT,
//! i.e. the mount is live. The daemon forks a tiny watchdog
//! ([`crate::mount::watchdog`]) that unmounts if the daemon dies, so a
//! crash never leaves "Transport endpoint is not connected" behind.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fuser::Session;
use log::info;
use nix::unistd::{access, geteuid, setsid, AccessFlags};

use crate::manifest::Manifest;
use crate::mount::daemonize::{daemonize, exit_daemon, notify_systemd_ready, Status};
use crate::mount::error::MountError;
use crate::mount::fs::{FuseAdapter, SiteFs};
use crate::mount::mountinfo::check_mountpoint;
use crate::mount::options::{fuse_config, MountOpts};
use crate::mount::signals::{block_termination, run_until_signalled};
use crate::mount::uring::Starter;
use crate::mount::watch::{watch_manifest, Reloader};
use crate::mount::watchdog::spawn_watchdog;
use crate::store::lock::UseGuard;
use crate::store::roots::MountRoot;
use crate::store::Store;
use crate::view::build::{self, Loaded};
use crate::view::live::ViewState;
use crate::view::View;

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
    manifest: PathBuf,
    mountpoint: PathBuf,
    loaded: Loaded,
    /// Keeps gc out from loading the view until the mount's root is
    /// recorded (see [`crate::store::lock`]).
    guard: Option<UseGuard>,
}

impl Prepared {
    /// A mount of a view its caller built from `m` (saved at
    /// `manifest_path`), as `env create` does: it takes no gc guard and
    /// writes no image, as for any manifest just written.
    pub fn of_view(
        manifest_path: &Path,
        m: &Manifest,
        store: Store,
        view: View,
        mountpoint: PathBuf,
    ) -> Prepared {
        let dists = m.dists.iter().map(|d| d.id.clone()).collect();
        Prepared {
            manifest: manifest_path.to_path_buf(),
            mountpoint,
            loaded: Loaded {
                store,
                view,
                dists,
                image: None,
            },
            guard: None,
        }
    }
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
    // gc must not run between reading the store and recording the
    // mount's root (see crate::store::lock).
    let (guard, loaded) = build::load_for_mount(&manifest)?;
    Ok(Prepared {
        manifest,
        mountpoint,
        loaded,
        guard: Some(guard),
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
            status.failed(&e);
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
        std::mem::forget(p.loaded);
        return Ok(());
    };
    exit_daemon(serve(p, opts, Some(status)))
}

/// Mount, report readiness, and serve until unmounted or signalled,
/// reloading the view whenever the manifest file is replaced.
fn serve(p: Prepared, opts: &MountOpts, status: Option<Status>) -> Result<(), MountError> {
    let mut status = status;
    let fail = |status: &mut Option<Status>, e: MountError| {
        if let Some(s) = status.take() {
            s.failed(&e);
        }
        e
    };
    // Block termination signals before any thread starts, so that every
    // thread inherits the mask and only `sigwait` sees them.
    let signals = block_termination();
    let fsname = opts
        .fsname
        .clone()
        .unwrap_or_else(|| p.manifest.display().to_string());
    let Loaded {
        store,
        view,
        dists,
        image,
    } = p.loaded;
    let state = ViewState::new(view);
    let fs = Arc::new(SiteFs::new(
        state.clone(),
        store.clone(),
        opts.open,
        opts.pycs,
    ));
    let uring =
        Starter::prepare(opts.uring).map_err(|e| fail(&mut status, MountError::UringOn(e)))?;
    let adapter = FuseAdapter::new(fs.clone(), uring.as_ref().map(Starter::offer));
    // Mounts and completes INIT.
    let session = Session::new(adapter, &p.mountpoint, &fuse_config(opts, &fsname))
        .map_err(|e| fail(&mut status, mount_error(&p.mountpoint, e)))?;
    if status.is_some() {
        // Leave the caller's session only now that the mount exists: autofs
        // serves lookups of a mountpoint it is mounting only to automount's
        // process group, so a daemon that had already left it would wait
        // forever for its own mount.
        let _ = setsid();
    }
    let watchdog =
        spawn_watchdog(&p.mountpoint, opts.stuck_after).map_err(|e| fail(&mut status, e))?;
    let root = MountRoot::register(&store, &p.mountpoint, &p.manifest, &dists)
        .map_err(|e| fail(&mut status, e.into()))?;
    let root = Arc::new(Mutex::new(root));
    drop(p.guard);
    // After the watchdog's fork, which must see one thread. Until every
    // queue is registered the kernel holds this mount's requests.
    let transport = match uring {
        Some(starter) => starter
            .start(fs, session.as_fd())
            .map_err(|e| fail(&mut status, MountError::UringStart(e)))?,
        None => false,
    };
    let reloader = Reloader {
        manifest: p.manifest.clone(),
        state: state.clone(),
        notifier: session.notifier(),
        root: root.clone(),
    };
    if let Err(e) = watch_manifest(reloader) {
        log::warn!(
            "live reload disabled: cannot watch {}: {e}",
            p.manifest.display()
        );
    }
    let over = if transport { "io_uring" } else { "/dev/fuse" };
    info!("mounted {fsname} on {} over {over}", p.mountpoint.display());
    if let Some(s) = status {
        s.ready();
    }
    notify_systemd_ready();
    if let Some(image) = image {
        // Off the mount's critical path: the caller has its answer.
        let view = state.current();
        std::thread::spawn(move || image.save(&view));
    }
    let result = run_until_signalled(session, &p.mountpoint, &signals);
    root.lock().unwrap_or_else(|e| e.into_inner()).remove();
    drop(watchdog);
    result
}

/// The one-line reason `Session::new` failed, with the fix when there is
/// one.
fn mount_error(mountpoint: &Path, err: std::io::Error) -> MountError {
    if err.to_string().contains("user_allow_other") {
        return MountError::NeedsUserAllowOther;
    }
    let rw = AccessFlags::R_OK | AccessFlags::W_OK;
    if !geteuid().is_root() && access("/dev/fuse", rw).is_err() {
        return MountError::NoDevFuse(mountpoint.to_path_buf());
    }
    MountError::Mount {
        mountpoint: mountpoint.to_path_buf(),
        err,
    }
}
