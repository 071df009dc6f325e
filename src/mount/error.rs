//! Why a mount or unmount failed.

use std::path::PathBuf;

use nix::errno::Errno;

use crate::mount::uring::UringUnavailable;
use crate::store::StoreError;
use crate::view::build::BuildError;

/// Why a mount or unmount failed; one line each, saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    View(#[from] BuildError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mountpoint {} does not exist: create it with `mkdir -p {}`", .0.display(), .0.display())]
    NoMountpoint(PathBuf),
    #[error("mountpoint {} is not a directory", .0.display())]
    NotADir(PathBuf),
    #[error("{}: {err}", path.display())]
    Canonicalize {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("{} is already a mount point: unmount it first with `sitefs umount {}`", .0.display(), .0.display())]
    AlreadyMounted(PathBuf),
    #[error("{} is a dead FUSE mount (its daemon died): clear it with `sitefs umount {}`", .0.display(), .0.display())]
    DeadMount(PathBuf),
    #[error("{} is not mounted", .0.display())]
    NotMounted(PathBuf),
    #[error(
        "{} is busy: a process still uses it (see `fuser -vm {}`); close it or use `umount -l`",
        .0.display(), .0.display()
    )]
    Busy(PathBuf),
    #[error("unknown mount option {0:?} (known: allow_other, allow_root, open=auto|passthrough|cached, uring=auto|on|off, pyc=link|file, threads=N, and the generic ro, nosuid, nodev, noatime, defaults, nofail, ...)")]
    UnknownOption(String),
    #[error("mount option {0:?} is not supported: {1}")]
    BadOption(String, &'static str),
    #[error(
        "allow_other needs `user_allow_other` in /etc/fuse.conf when mounting as a non-root user"
    )]
    NeedsUserAllowOther,
    #[error("mounting {}: this user may not open /dev/fuse: ask an admin to allow FUSE (distributions ship it crw-rw-rw-; `chmod 0666 /dev/fuse`)", .0.display())]
    NoDevFuse(PathBuf),
    #[error("mounting {}: {err}", mountpoint.display())]
    Mount {
        mountpoint: PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("uring=on: {0}")]
    UringOn(#[source] UringUnavailable),
    #[error("starting FUSE over io_uring: {0}")]
    UringStart(#[source] std::io::Error),
    #[error("starting the FUSE session: {0}")]
    SessionStart(#[source] std::io::Error),
    #[error("FUSE session: {0}")]
    Session(#[source] std::io::Error),
    #[error("the FUSE session thread panicked")]
    SessionPanicked,
    /// The daemon's own one-line message, passed back through its status
    /// pipe: the error itself stayed in the daemon's process.
    #[error("{0}")]
    Daemon(String),
    #[error("the mount daemon exited before the mount was live (run `sitefs -v mount -f ...` to see why)")]
    DaemonDied,
    #[error("pipe: {0}")]
    Pipe(#[source] Errno),
    #[error("fork: {0}")]
    Fork(#[source] Errno),
    #[error("umount {}: {err}", path.display())]
    Umount {
        path: PathBuf,
        #[source]
        err: Errno,
    },
    #[error("running fusermount3: {0} (install fuse3)")]
    NoFusermount(#[source] std::io::Error),
    #[error("fusermount3 -u {}: {stderr}", path.display())]
    Fusermount { path: PathBuf, stderr: String },
}
