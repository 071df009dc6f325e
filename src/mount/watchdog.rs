//! The watchdog: a tiny process forked by the daemon that waits for the
//! daemon to die and then clears its mount, so a crash never leaves
//! "Transport endpoint is not connected" behind.

use std::ffi::CString;
use std::io::stdin;
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{dup2_stdin, execvp, fork, geteuid, read, setsid, ForkResult};

use crate::mount::connection_gone;
use crate::mount::daemonize::pipe;
use crate::mount::error::MountError;
use crate::mount::mountinfo::mount_device;

/// Holds the pipe whose closing (at daemon exit, however it happens)
/// wakes the watchdog.
pub(crate) struct Watchdog(#[allow(dead_code)] OwnedFd);

/// Fork a watchdog that waits for this process to die and then clears
/// the mount if it is still there. Forked before any FUSE thread starts.
pub(crate) fn spawn_watchdog(mountpoint: &Path) -> Result<Watchdog, MountError> {
    let (rd, wr) = pipe()?;
    let device = mount_device(mountpoint);
    // SAFETY: the daemon is single-threaded here, so the child may run
    // arbitrary code; it makes syscalls, reads mountinfo and exits.
    match unsafe { fork() }.map_err(MountError::Fork)? {
        ForkResult::Child => watchdog_main(rd, mountpoint, device),
        ForkResult::Parent { .. } => {
            drop(rd);
            Ok(Watchdog(wr))
        }
    }
}

fn watchdog_main(rd: OwnedFd, target: &Path, device: Option<String>) -> ! {
    keep_only(rd);
    let _ = setsid();
    // The daemon's signals are not the watchdog's: it must outlive them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    let _ = signals.thread_block();
    let mut b = [0u8; 1];
    while read(stdin().as_fd(), &mut b) == Err(Errno::EINTR) {}
    // Touch the path only if our own mount is still there: after an
    // unmount the path may be an automount trigger (stat-ing it would
    // mount the environment again) or hold a newer mount of the same
    // manifest, which is not ours to clear.
    if device.is_some() && mount_device(target) == device && is_dead(target) {
        clear(target);
    }
    std::process::exit(0)
}

/// Keep only `rd`, as standard input: holding the FUSE device open would
/// keep a dead daemon's connection alive and hang every reader.
fn keep_only(rd: OwnedFd) {
    if dup2_stdin(rd.as_fd()).is_err() {
        std::process::exit(0);
    }
    let _ = rd.into_raw_fd();
    // SAFETY: no safe API closes every descriptor but one. Nothing in this
    // process uses a descriptor above 0 again: `rd` was moved to 0 and
    // given up above, and the daemon's own handles stay in frames of the
    // fork that this process never returns to.
    unsafe { libc::syscall(libc::SYS_close_range, 1u32, u32::MAX, 0u32) };
}

/// Whether a request to the mount fails as one to a dead daemon. A
/// cached attribute would make a dead mount look alive, hence the forced
/// statx (which no safe API of nix or std offers).
fn is_dead(target: &Path) -> bool {
    let Ok(c) = CString::new(target.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated path and `stx` a writable statx
    // buffer, both live for the call.
    let failed = unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_STATX_FORCE_SYNC,
            libc::STATX_TYPE,
            &mut stx,
        ) != 0
    };
    failed && connection_gone(Errno::last())
}

/// Detach the dead mount: directly as root, through fusermount3
/// otherwise (which this process becomes).
fn clear(target: &Path) {
    if geteuid().is_root() {
        let _ = umount2(target, MntFlags::MNT_DETACH);
        return;
    }
    let Ok(c) = CString::new(target.as_os_str().as_bytes()) else {
        return;
    };
    let _ = execvp(
        c"fusermount3",
        &[c"fusermount3", c"-u", c"-z", c.as_c_str()],
    );
}
