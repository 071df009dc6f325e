//! Serving a view to the kernel: [`fs`] answers FUSE operations from a
//! [`crate::view::View`], [`uring`] carries them over FUSE-over-io_uring
//! when the kernel offers it (fuser's `/dev/fuse` loop otherwise), and
//! [`daemon`] owns a mount's life: checks, daemonizing, serving, reloading
//! and unmounting.

pub mod daemon;
pub mod fs;
pub mod uring;
