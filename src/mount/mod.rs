//! Serving a view to the kernel: [`fs`] answers FUSE operations from a
//! [`crate::view::View`], [`uring`] carries them over FUSE-over-io_uring
//! when the kernel offers it (fuser's `/dev/fuse` loop otherwise), and
//! [`daemon`] owns a mount's life: checks, daemonizing, serving, reloading
//! and unmounting, with the help of the modules below it.

pub mod daemon;
mod daemonize;
pub mod error;
pub mod fs;
pub mod mountinfo;
pub mod options;
mod signals;
pub mod unmount;
pub mod uring;
mod watch;
mod watchdog;

use nix::errno::Errno;

/// Whether a failed request to a FUSE mount means its daemon side is
/// gone, so that no live sitefs will ever answer it: ENOTCONN once the
/// connection is down, ECONNABORTED while it is being aborted, ECANCELED
/// while the rings of an io_uring connection are torn down. ENODEV is what
/// the FUSE device answers an io_uring command whose connection has been
/// released; a request through a path (stat) does not see it from a live
/// mount either, so one list serves both the ring workers and the checks
/// of a mountpoint.
pub(crate) fn connection_gone(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::ENOTCONN | Errno::ECONNABORTED | Errno::ECANCELED | Errno::ENODEV
    )
}
