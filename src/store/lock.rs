//! Coordination between `store gc` and everything else that touches a
//! store, without `flock`/`fcntl` locks (NFS breaks or drops them) and
//! without a database.
//!
//! The protocol uses only operations that are atomic on local filesystems
//! and on NFSv3/v4: exclusive create (`O_CREAT|O_EXCL`), `rename`, unlink,
//! and directory listings (an `opendir` revalidates the directory on NFS,
//! close-to-open consistency).
//!
//! - A **user** (ingest, env create/add, mount, adopt) creates its own
//!   mark `locks/users/<host>.<pid>.<nonce>`, *then* lists `locks/` for a
//!   `gc` file. If there is one, it withdraws its mark and waits.
//! - **gc** creates `locks/gc` exclusively, *then* waits until
//!   `locks/users/` holds no live mark, and only then decides what is dead.
//!
//! Each side writes its own flag before reading the other's, so at least
//! one of two racing parties sees the other: gc never sweeps while a user
//! is between reading the store and recording a root for what it read.
//! Users hold their mark only until their root is written (an env root, a
//! mount root), so gc waits seconds, not for the lifetime of a mount.
//!
//! A lock or mark left by a dead process on this host (its pid is gone or
//! belongs to a newer process) is stale and removed by whoever finds it.
//! Marks from other hosts cannot be checked; they count as live until
//! they are [`REMOTE_STALE_AFTER`] old.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::store::layout::{Dir, Layout, GC_LOCK};

/// Marks from another host older than this are taken as left by a crash.
pub const REMOTE_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How long gc waits for ingests and env creations to finish.
const USERS_WAIT: Duration = Duration::from_secs(600);

/// A process, identified so that a recycled pid is not mistaken for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start: u64,
}

impl Owner {
    /// The calling process.
    pub fn me() -> Owner {
        let pid = std::process::id();
        Owner {
            host: hostname(),
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    }

    /// One line: `host pid start`.
    pub fn to_line(&self) -> String {
        format!("{} {} {}", self.host, self.pid, self.start)
    }

    pub fn parse(line: &str) -> Option<Owner> {
        let mut it = line.split_whitespace();
        let host = it.next()?.to_string();
        let pid = it.next()?.parse().ok()?;
        let start = it.next()?.parse().ok()?;
        Some(Owner { host, pid, start })
    }

    /// Whether the owner may still be running. Only a process on this
    /// host can be proven dead; `None` means "cannot tell".
    pub fn alive_here(&self) -> Option<bool> {
        if self.host != hostname() {
            return None;
        }
        Some(start_time(self.pid).is_some_and(|s| s == self.start))
    }
}

/// This host's name (what `uname -n` prints).
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
        .unwrap_or_else(|| "localhost".to_string())
}

fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|s| s.start)
}

/// What `/proc/PID/stat` says of a local process: whether it is the one
/// a mark names (its start time) and, for the mount watchdog, whether it
/// runs at all (its state and CPU time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The state letter: `R`, `S`, `D`, `T` (stopped), ...
    pub state: char,
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks since boot (field 22).
    pub start: u64,
}

pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let num = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        cpu_ticks: num(11)? + num(12)?,
        start: num(19)?,
    })
}

/// Whether a lock/mark file was left by a process that is gone, or was
/// never a real one. Marks live in a directory every user of a shared
/// store can write, so one is believed only if it is a small regular file
/// (never a link or FIFO), a local owner process belongs to the file's
/// owner (a mark naming someone else's process, init's say, does not
/// hold gc up), and its mtime is not in the future (a mark dated years
/// ahead would never age).
fn is_stale(path: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let Ok(f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        // Gone (not stale: nothing to remove), or a link: never ours.
        return fs::symlink_metadata(path).is_ok();
    };
    let Ok(meta) = f.metadata() else {
        return false;
    };
    let mut text = String::new();
    if !meta.is_file() || f.take(4096).read_to_string(&mut text).is_err() {
        return true;
    }
    let age = SystemTime::now().duration_since(meta.modified().unwrap_or(SystemTime::now()));
    let Ok(age) = age else {
        return true; // dated in the future
    };
    let Some(owner) = Owner::parse(&text) else {
        // Unparseable: a writer between create and write, or garbage.
        return age > Duration::from_secs(60);
    };
    match owner.alive_here() {
        Some(alive) => !alive || process_uid(owner.pid) != Some(meta.uid()),
        None => age > REMOTE_STALE_AFTER,
    }
}

/// The uid a local process runs as (the owner of `/proc/PID`).
fn process_uid(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
}

/// Create `path` exclusively with the caller as owner.
fn create_owned(path: &Path) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    let written = f.write_all(format!("{}\n", Owner::me().to_line()).as_bytes());
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

fn unique_name() -> String {
    Owner::me().unique_name()
}

impl Owner {
    /// A file name no other process, here or on another host, makes:
    /// `<pid>.<start>.<nonce>.<host>`. The owner can be read back from it
    /// ([`Owner::of_unique_name`]), so litter a killed process left under
    /// such a name is recognised as dead by whoever finds it.
    pub fn unique_name(&self) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{}.{}.{nanos:x}{n:x}.{}", self.pid, self.start, self.host)
    }

    /// The owner a [`Owner::unique_name`] names.
    pub fn of_unique_name(name: &str) -> Option<Owner> {
        let mut it = name.splitn(4, '.');
        let pid = it.next()?.parse().ok()?;
        let start = it.next()?.parse().ok()?;
        let host = it.nth(1)?.to_string();
        Some(Owner { host, pid, start })
    }
}

fn locks_dir(store: &Path) -> PathBuf {
    Dir::Locks.under(store)
}

fn gc_lock_path(store: &Path) -> PathBuf {
    Layout::new(store).gc_lock()
}

fn users_dir(store: &Path) -> PathBuf {
    Dir::UseMarks.under(store)
}

/// Whether gc holds the store, judged from a fresh directory listing.
fn gc_running(store: &Path) -> bool {
    fs::read_dir(locks_dir(store))
        .map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.file_name() == GC_LOCK))
        .unwrap_or(false)
}

/// Remove a stale gc lock. It is first renamed to a unique name, so of
/// several processes breaking it at once only one succeeds, and a lock a
/// new gc created meanwhile is put back rather than lost.
fn break_stale_gc_lock(store: &Path) {
    let lock = gc_lock_path(store);
    if !is_stale(&lock) {
        return;
    }
    let aside = locks_dir(store).join(format!("gc.broken.{}", unique_name()));
    if fs::rename(&lock, &aside).is_err() {
        return;
    }
    if is_stale(&aside) {
        log::warn!("removed the lock of a gc that is no longer running");
        let _ = fs::remove_file(&aside);
    } else {
        // We moved a live lock; hand it back (fails only if yet another gc
        // locked meanwhile, which then excludes users just as well).
        let _ = fs::hard_link(&aside, &lock);
        let _ = fs::remove_file(&aside);
    }
}

/// Held while a process reads the store and records a root for what it
/// read; gc does not start while any is held. Dropping releases it.
#[derive(Debug)]
pub struct UseGuard {
    mark: Option<PathBuf>,
}

impl UseGuard {
    /// Announce use of `store`, waiting while a gc runs. A store the
    /// caller cannot write to (read-only media) needs no mark: no gc can
    /// run on it either.
    pub fn acquire(store: &Path) -> UseGuard {
        let users = users_dir(store);
        let mut wait = Wait::warning_after(Duration::from_millis(200));
        loop {
            let mark = users.join(unique_name());
            if let Err(e) = create_owned(&mark) {
                log::debug!("no use mark in {}: {e}", users.display());
                return UseGuard { mark: None };
            }
            if !gc_running(store) {
                return UseGuard { mark: Some(mark) };
            }
            let _ = fs::remove_file(&mark);
            break_stale_gc_lock(store);
            wait.pause(|| {
                format!(
                    "waiting for `sitefs store gc` to finish on {}",
                    store.display()
                )
            });
        }
    }
}

impl Drop for UseGuard {
    fn drop(&mut self) {
        if let Some(m) = self.mark.take() {
            let _ = fs::remove_file(m);
        }
    }
}

/// Why gc could not lock the store.
#[derive(Debug, thiserror::Error)]
pub enum GcLockError {
    #[error("another `sitefs store gc` has held {} for too long ({owner}); if that process is gone, delete {}", store.display(), Layout::new(store).gc_lock().display())]
    Busy { store: PathBuf, owner: String },
    #[error("{}: {source}: gc needs write access to the store", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store {} stayed in use for {waited:?} by: {users}; retry when they finish", store.display())]
    InUse {
        store: PathBuf,
        waited: Duration,
        users: String,
    },
}

/// The store's exclusive gc lock. Dropping releases it.
#[derive(Debug)]
pub struct GcLock {
    path: PathBuf,
}

impl GcLock {
    /// Lock `store` for gc, then wait until no user holds it.
    pub fn acquire(store: &Path) -> Result<GcLock, GcLockError> {
        let path = gc_lock_path(store);
        let io_err = |p: &Path| {
            let path = p.to_path_buf();
            move |source| GcLockError::Io { path, source }
        };
        fs::create_dir_all(users_dir(store)).map_err(io_err(&users_dir(store)))?;
        let mut wait = Wait::warning_after(Duration::from_millis(500));
        while let Err(e) = create_owned(&path) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(io_err(&path)(e));
            }
            break_stale_gc_lock(store);
            if wait.elapsed() > USERS_WAIT {
                let owner = fs::read_to_string(&path).unwrap_or_default();
                return Err(GcLockError::Busy {
                    store: store.to_path_buf(),
                    owner: owner.trim().to_string(),
                });
            }
            wait.pause(|| {
                format!(
                    "waiting for another `sitefs store gc` on {}",
                    store.display()
                )
            });
        }
        let lock = GcLock { path };
        lock.wait_for_users(store, USERS_WAIT)?;
        Ok(lock)
    }

    fn wait_for_users(&self, store: &Path, limit: Duration) -> Result<(), GcLockError> {
        let mut wait = Wait::warning_after(Duration::from_millis(500));
        loop {
            let live = live_users(store);
            if live.is_empty() {
                return Ok(());
            }
            if wait.elapsed() > limit {
                return Err(GcLockError::InUse {
                    store: store.to_path_buf(),
                    waited: limit,
                    users: live.join(", "),
                });
            }
            wait.pause(|| {
                format!(
                    "waiting for {} store user(s) to finish (ingest, env create, mount): {}",
                    live.len(),
                    live.join(", ")
                )
            });
        }
    }
}

/// A polling wait that says once, after `warn_after`, what it waits for:
/// the shape of every wait in this module.
struct Wait {
    started: Instant,
    warn_after: Duration,
    told: bool,
}

impl Wait {
    fn warning_after(warn_after: Duration) -> Wait {
        Wait {
            started: Instant::now(),
            warn_after,
            told: false,
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sleep one poll interval, warning first if this is the first pause
    /// past `warn_after`.
    fn pause(&mut self, warning: impl FnOnce() -> String) {
        if !self.told && self.elapsed() > self.warn_after {
            log::warn!("{}", warning());
            self.told = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for GcLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The live use marks, removing stale ones on the way.
fn live_users(store: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(users_dir(store)) else {
        return Vec::new();
    };
    let mut live = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if is_stale(&p) {
            let _ = fs::remove_file(&p);
        } else if p.exists() {
            live.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_round_trips_and_is_alive() {
        let me = Owner::me();
        assert!(me.start > 0);
        assert_eq!(Owner::parse(&me.to_line()), Some(me.clone()));
        assert_eq!(me.alive_here(), Some(true));
        let recycled = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert_eq!(recycled.alive_here(), Some(false));
        let remote = Owner {
            host: "elsewhere.invalid".into(),
            ..me
        };
        assert_eq!(remote.alive_here(), None);
    }

    #[test]
    fn gc_excludes_users_and_stale_locks_are_broken() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        fs::create_dir_all(users_dir(store)).unwrap();
        {
            let _gc = GcLock::acquire(store).unwrap();
            assert!(gc_running(store));
        }
        assert!(!gc_running(store));
        // A lock left by a dead process is broken by the next user.
        let dead = Owner {
            start: 1,
            ..Owner::me()
        };
        fs::write(gc_lock_path(store), dead.to_line()).unwrap();
        let guard = UseGuard::acquire(store);
        assert!(guard.mark.as_ref().is_some_and(|m| m.exists()));
        assert!(!gc_running(store));
        assert_eq!(live_users(store).len(), 1);
        drop(guard);
        assert!(live_users(store).is_empty());
    }

    #[test]
    fn planted_marks_do_not_hold_gc() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        let users = users_dir(store);
        fs::create_dir_all(&users).unwrap();
        let me = Owner::me();
        // A real mark of ours is live.
        let ours = users.join("ours");
        fs::write(&ours, me.to_line()).unwrap();
        assert!(!is_stale(&ours));
        // The same live process claimed by a file another uid owns.
        let claimed = users.join("claimed");
        fs::write(&claimed, me.to_line()).unwrap();
        std::os::unix::fs::chown(&claimed, Some(65534), Some(65534)).unwrap();
        assert!(is_stale(&claimed), "a mark naming another user's process");
        // Another host's mark dated far in the future never ages: stale.
        let future = users.join("future");
        fs::write(&future, "elsewhere.invalid 1 1\n").unwrap();
        let f = fs::File::options().write(true).open(&future).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(10 * 365 * 86400))
            .unwrap();
        assert!(is_stale(&future));
        // A FIFO is never waited on (reading it would block).
        let fifo = users.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(is_stale(&fifo));
        let live = live_users(store);
        assert_eq!(live, vec!["ours".to_string()]);
    }
}
