//! The watchdog: a tiny process forked by the daemon that waits for the
//! daemon to die and then clears its mount, so a crash never leaves
//! "Transport endpoint is not connected" behind.
//!
//! It also ends a daemon that stopped answering. A stopped or deadlocked
//! daemon leaves every process that touches the mount waiting (over FUSE
//! over io_uring in uninterruptible sleep, deaf even to SIGKILL), and the
//! kernel's per-connection request timeout cannot be set through fuser.
//! So once a second the watchdog looks, without sending the mount any
//! request, at whether the daemon owes the kernel an answer (the
//! connection's `waiting` count in fusectl, or, where fusectl is not
//! mounted, whether the daemon is stopped) while using no CPU at all. After
//! `-o stuck=SECS` (30 s) of that it kills the daemon, which aborts the
//! connection (the waiting processes get an error), and clears the mount
//! like a dead one.

use std::ffi::CString;
use std::io::stdin;
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::kill;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{dup2_stdin, execvp, fork, geteuid, getppid, setsid, ForkResult, Pid};

use crate::mount::connection_gone;
use crate::mount::daemonize::pipe;
use crate::mount::error::MountError;
use crate::mount::mountinfo::mount_device;
use crate::store::lock::{proc_stat, ProcStat};

/// Holds the pipe whose closing (at daemon exit, however it happens)
/// wakes the watchdog.
pub(crate) struct Watchdog(#[allow(dead_code)] OwnedFd);

/// Fork a watchdog that waits for this process to die and then clears
/// the mount if it is still there. Forked before any FUSE thread starts.
pub(crate) fn spawn_watchdog(
    mountpoint: &Path,
    stuck_after: Duration,
) -> Result<Watchdog, MountError> {
    let (rd, wr) = pipe()?;
    let device = mount_device(mountpoint);
    // SAFETY: the daemon is single-threaded here, so the child may run
    // arbitrary code; it makes syscalls, reads mountinfo and exits.
    match unsafe { fork() }.map_err(MountError::Fork)? {
        ForkResult::Child => watchdog_main(rd, mountpoint, device, stuck_after),
        ForkResult::Parent { .. } => {
            drop(rd);
            Ok(Watchdog(wr))
        }
    }
}

fn watchdog_main(rd: OwnedFd, target: &Path, device: Option<String>, stuck_after: Duration) -> ! {
    let daemon = getppid();
    keep_only(rd);
    let _ = setsid();
    // The daemon's signals are not the watchdog's: it must outlive them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    let _ = signals.thread_block();
    let mut stuck = Stuck::new(daemon, device.as_deref(), stuck_after);
    let input = stdin();
    let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
    // Until readable or hung up: the daemon exited (it never writes).
    while let Ok(0) | Err(Errno::EINTR) = poll(&mut fds, PollTimeout::from(1000u16)) {
        if stuck.check() {
            let _ = kill(daemon, Signal::SIGKILL);
        }
    }
    // Touch the path only if our own mount is still there: after an
    // unmount the path may be an automount trigger (stat-ing it would
    // mount the environment again) or hold a newer mount of the same
    // manifest, which is not ours to clear.
    if device.is_some() && mount_device(target) == device && is_dead(target) {
        clear(target);
    }
    std::process::exit(0)
}

/// Watches one daemon for being stuck (see the module's doc).
struct Stuck {
    daemon: Pid,
    /// `/sys/fs/fuse/connections/<minor>/waiting`, where fusectl is mounted.
    waiting: Option<PathBuf>,
    after: Duration,
    /// Since when the daemon owes an answer without running, and its CPU
    /// time then.
    since: Option<(Instant, u64)>,
}

impl Stuck {
    fn new(daemon: Pid, device: Option<&str>, after: Duration) -> Stuck {
        if geteuid().is_root() {
            mount_fusectl();
        }
        let waiting = device
            .and_then(|d| d.split_once(':'))
            .map(|(_, minor)| Path::new(FUSECTL).join(minor).join("waiting"))
            .filter(|p| p.exists());
        Stuck {
            daemon,
            waiting,
            after,
            since: None,
        }
    }

    /// One look; true once the daemon has been stuck for `after`.
    fn check(&mut self) -> bool {
        let Some(ProcStat {
            state,
            cpu_ticks: cpu,
            ..
        }) = u32::try_from(self.daemon.as_raw()).ok().and_then(proc_stat)
        else {
            return false;
        };
        let owes = match &self.waiting {
            Some(p) => std::fs::read_to_string(p)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0),
            None => state == 'T',
        };
        match self.since {
            Some((t, c)) if owes && c == cpu => t.elapsed() >= self.after,
            _ if owes => {
                self.since = Some((Instant::now(), cpu));
                false
            }
            _ => {
                self.since = None;
                false
            }
        }
    }
}

/// Where fusectl shows each FUSE connection.
const FUSECTL: &str = "/sys/fs/fuse/connections";

/// Mount fusectl if it is not (systemd does; minimal hosts and containers
/// may not). Best effort: without it a stopped daemon is still noticed.
fn mount_fusectl() {
    let empty = std::fs::read_dir(FUSECTL).is_ok_and(|mut d| d.next().is_none());
    if empty {
        let _ = nix::mount::mount(
            Some("fusectl"),
            FUSECTL,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
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
