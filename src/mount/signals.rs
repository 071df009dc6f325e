//! Signals: the daemon blocks SIGTERM, SIGINT and SIGHUP in every thread
//! and waits for them on the main thread, which unmounts; the session's
//! end wakes it with SIGUSR1.

use std::mem::ManuallyDrop;
use std::path::Path;
use std::thread::JoinHandle;

use fuser::Session;
use log::info;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::getpid;

use crate::mount::error::MountError;
use crate::mount::fs::FuseAdapter;
use crate::mount::unmount::{lazy_unmount, unmount};

/// The termination signals, blocked from now on in this thread and every
/// thread it starts, so that only [`run_until_signalled`] sees them. Call
/// before any thread starts.
pub(crate) fn block_termination() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        log::warn!("cannot block termination signals: {e}");
    }
    set
}

/// Run the session on worker threads, and unmount on SIGTERM/SIGINT/
/// SIGHUP (the `signals` of [`block_termination`]). Returns when the
/// filesystem is unmounted, whoever unmounted it.
pub(crate) fn run_until_signalled(
    session: Session<FuseAdapter>,
    mountpoint: &Path,
    signals: &SigSet,
) -> Result<(), MountError> {
    let fuser_thread = run_without_unmount_on_exit(session)?;
    let runner = std::thread::spawn(move || {
        let r = fuser_thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the FUSE session thread panicked")));
        // Wake the main thread's wait.
        let _ = kill(getpid(), Signal::SIGUSR1);
        r
    });
    loop {
        let sig = match signals.wait() {
            Ok(Signal::SIGUSR1) => break,
            Ok(sig) => sig,
            Err(_) => continue,
        };
        info!("signal {}: unmounting {}", sig as i32, mountpoint.display());
        if let Err(MountError::Busy(_)) = unmount(mountpoint) {
            // Detach now; the kernel ends the session when the last user
            // lets go.
            let _ = lazy_unmount(mountpoint);
        }
    }
    match runner.join() {
        Ok(r) => r.map_err(MountError::Session),
        Err(_) => Err(MountError::SessionPanicked),
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
    let bg = ManuallyDrop::new(session.spawn().map_err(MountError::SessionStart)?);
    // SAFETY: `bg` is never used or dropped again, so the join handle is
    // moved out exactly once; the mount handle and channel sender it also
    // holds are leaked on purpose until the process exits.
    Ok(unsafe { std::ptr::read(&bg.guard) })
}
