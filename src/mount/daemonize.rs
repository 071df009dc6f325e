//! Leaving the caller: fork a daemon, and tell the waiting parent through
//! a pipe (or systemd through `$NOTIFY_SOCKET`) once the mount is live, so
//! `sitefs mount` exits 0 only for a mount that works.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use log::error;
use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, ForkResult};

use crate::mount::error::MountError;

/// The write end of the pipe on which the daemon tells the waiting
/// parent whether the mount went live.
pub(crate) struct Status(File);

impl Status {
    /// Tell the parent the mount is live.
    pub(crate) fn ready(self) {
        self.send("OK");
    }

    /// Tell the parent why the mount failed, in the one line it prints.
    pub(crate) fn failed(self, e: &MountError) {
        self.send(&format!("ERR {e}"));
    }

    fn send(mut self, msg: &str) {
        let _ = self.0.write_all(msg.as_bytes());
    }
}

/// A pipe whose ends are closed on exec.
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), MountError> {
    pipe2(OFlag::O_CLOEXEC).map_err(MountError::Pipe)
}

/// Fork. The parent waits for the child's status and returns `None`
/// once the mount is live, or the child's error once the child has
/// exited; the child returns the status pipe and continues as a detached
/// daemon.
pub(crate) fn daemonize() -> Result<Option<Status>, MountError> {
    let (rd, wr) = pipe()?;
    // SAFETY: the process is single-threaded here (no FUSE threads yet),
    // so the child may continue running arbitrary Rust code.
    match unsafe { fork() }.map_err(MountError::Fork)? {
        ForkResult::Child => {
            drop(rd);
            detach();
            Ok(Some(Status(File::from(wr))))
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut msg = String::new();
            let _ = File::from(rd).read_to_string(&mut msg);
            if msg == "OK" {
                return Ok(None);
            }
            // The child failed and is exiting: reap it, so that no process
            // of a failed mount outlives the error its caller reports.
            let _ = waitpid(child, None);
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
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    if let Ok(null) = null {
        let _ = dup2_stdin(null.as_fd());
        let _ = dup2_stdout(null.as_fd());
        let _ = dup2_stderr(null.as_fd());
    }
    let _ = std::env::set_current_dir("/");
}

/// End a daemon: its caller has been told the outcome already.
pub(crate) fn exit_daemon(result: Result<(), MountError>) -> ! {
    if let Err(e) = &result {
        error!("{e}");
    }
    std::process::exit(i32::from(result.is_err()))
}

/// Tell systemd the mount is live when run as a `Type=notify` service
/// (`sitefs mount -f` under systemd sets `$NOTIFY_SOCKET`).
pub(crate) fn notify_systemd_ready() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
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
