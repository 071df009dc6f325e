//! Compile `.py` sources into pycs with the target interpreter itself.
//!
//! Only the target interpreter knows its own bytecode format, so the pool
//! runs N long-lived `python -c WORKER_SCRIPT` processes (starting Python
//! per file would cost more than compiling it) and feeds them batches of
//! jobs over a line protocol on stdin/stdout.
//!
//! The pycs are PEP 552 *unchecked-hash* pycs (flags = 0b01): the importer
//! never stats or reads the source to validate them, which is what a
//! read-only mount needs (nothing is ever recompiled or rewritten), and
//! since `co_filename` is fixed up on load, one pyc per (source bytes,
//! interpreter) is valid at every path the source is served under.
//!
//! Protocol (one worker): the worker prints `ready <magic hex> <cache_tag>`
//! once. Each request is a line `<count>` followed by `count` lines
//! `source NUL display NUL output`. The worker reads the whole batch before
//! answering, then answers one line per job, in order: `ok`, `err <message>`
//! (the source does not compile) or `io <message>` (reading the source or
//! writing the pyc failed).
//!
//! Jobs wait in a queue that one driver thread per worker drains; each
//! driver keeps two batches in flight, so the next batch is already in the
//! worker's stdin when it finishes one and it never idles on a round trip.
//! That cannot deadlock: a worker writes at most `MAX_BATCH` short replies
//! (under 16 KiB, less than a pipe buffer) before it reads the next batch,
//! so it never blocks on a driver that is itself blocked writing.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::interpreter::Interpreter;

/// Most jobs sent to one worker at once: big enough to amortise the round
/// trip, small enough to balance work across workers, and few enough that
/// the replies to one batch (at most ~510 bytes each) fit in a pipe buffer.
const MAX_BATCH: usize = 32;

/// Batches a driver keeps sent but unanswered: the one the worker compiles
/// and the one waiting in its stdin.
const IN_FLIGHT: usize = 2;

/// Bytes of a worker's stderr kept for crash reports.
const STDERR_TAIL: usize = 4096;

/// How long a worker gets to exit after its stdin is closed before it is
/// killed (an idle worker exits at once).
const REAP_GRACE: Duration = Duration::from_secs(5);

/// The worker. Kept small and dependency-free: only modules that are part
/// of every CPython (3.8+). Replies are flushed per job so that a crash
/// can be pinned on the job that caused it.
const WORKER_SCRIPT: &str = include_str!("compile_worker.py");

/// Why compiling could not proceed. Per-file compile errors are not
/// errors: they are [`CompileOutcome::Failed`].
#[derive(Debug, thiserror::Error)]
pub enum BytecodeError {
    /// The worker process could not be started.
    #[error("cannot start bytecode compiler `{python}`: {source}")]
    Spawn {
        python: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A worker started but did not introduce itself as expected.
    #[error("bytecode compiler `{python}` failed to start: {detail}")]
    Handshake { python: PathBuf, detail: String },
    /// A job cannot be expressed in the line protocol.
    #[error("cannot compile {path:?}: a path contains a newline or NUL byte")]
    InvalidPath { path: String },
    /// A worker exited (or its pipes broke) while it had work.
    #[error("bytecode compiler `{python}` (pid {pid}) died {context}: {detail}")]
    WorkerDied {
        python: PathBuf,
        pid: u32,
        context: String,
        detail: String,
    },
    /// A worker answered something that is not part of the protocol.
    #[error("bytecode compiler `{python}` sent an unexpected reply: {reply:?}")]
    Protocol { python: PathBuf, reply: String },
    /// Reading a source or writing a pyc failed (not a compile error: the
    /// pyc set would silently be incomplete, so this stops the call).
    #[error("compiling `{path}` with `{python}`: {detail}")]
    JobIo {
        python: PathBuf,
        path: String,
        detail: String,
    },
    /// Every worker died and none could be restarted.
    #[error("no bytecode compiler workers left for `{python}` (all crashed and restarts failed)")]
    NoWorkers { python: PathBuf },
}

/// One source to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileJob {
    /// File to read the source bytes from.
    pub source: PathBuf,
    /// Name compiled into the code object (`co_filename` until the import
    /// system fixes it up) and shown in errors, e.g. "numpy/__init__.py".
    pub display_path: String,
    /// Where the pyc goes. Parent directories are created; the file is
    /// written under a temporary name in the same directory and renamed,
    /// so readers never see a partial pyc. Mode 0444.
    pub output: PathBuf,
}

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileOutcome {
    /// The pyc was written.
    Compiled,
    /// The source does not compile (SyntaxError and the like), one line.
    /// No pyc was written; Python will compile (and fail) at import time.
    Failed(String),
}

/// Replies one driver collected, keyed by job index.
type Replies = Vec<(usize, Reply)>;

/// An encoded job line and its index among the call's jobs.
type Line = (usize, Vec<u8>);

/// A reply line, before IO failures are turned into errors.
enum Reply {
    Ok,
    Err(String),
    Io(String),
}

/// A pool of long-lived compiler processes of one interpreter. Cheap to
/// share: `compile` takes `&self` and may be called from many threads at
/// once; every call spreads its jobs over all idle workers.
pub struct CompilerPool {
    python: PathBuf,
    cache_tag: String,
    size: usize,
    state: Mutex<PoolState>,
    idle_changed: Condvar,
}

/// Workers not currently running a batch, and how many exist in total
/// (including those not started yet).
struct PoolState {
    idle: Vec<Worker>,
    live: usize,
    unstarted: usize,
}

impl CompilerPool {
    /// Start `workers` worker processes (at least one) running
    /// `interp.executable`, and check that each speaks for `interp`.
    pub fn start(interp: &Interpreter, workers: usize) -> Result<Self, BytecodeError> {
        let size = workers.max(1);
        let python = interp.executable.clone();
        let spawned: Vec<Worker> = (0..size)
            .map(|_| Worker::spawn(&python))
            .collect::<Result<_, _>>()?;
        let mut idle = Vec::with_capacity(size);
        for mut worker in spawned {
            worker.handshake(&interp.cache_tag)?;
            idle.push(worker);
        }
        Ok(CompilerPool {
            python,
            cache_tag: interp.cache_tag.clone(),
            size,
            state: Mutex::new(PoolState {
                idle,
                live: size,
                unstarted: 0,
            }),
            idle_changed: Condvar::new(),
        })
    }

    /// Like [`CompilerPool::start`], but each worker process starts only
    /// when a `compile` call first needs it: commands that usually find
    /// everything compiled (`env create` from a warm store) then never pay
    /// for starting Python.
    pub fn lazy(interp: &Interpreter, workers: usize) -> Self {
        let size = workers.max(1);
        CompilerPool {
            python: interp.executable.clone(),
            cache_tag: interp.cache_tag.clone(),
            size,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                live: size,
                unstarted: size,
            }),
            idle_changed: Condvar::new(),
        }
    }

    /// Compile `jobs`; outcomes come back in job order. Fails as a whole on
    /// an invalid path, a source/output IO error, or a worker crash (the
    /// crashed worker is replaced for later calls).
    pub fn compile(&self, jobs: &[CompileJob]) -> Result<Vec<CompileOutcome>, BytecodeError> {
        let lines = jobs.iter().map(encode_job).collect::<Result<Vec<_>, _>>()?;
        let queue = Queue::default();
        queue.push(lines.into_iter().enumerate());
        let results = self.run(&queue, || Ok(()));
        self.collect(jobs, results)
    }

    /// Compile jobs as they arrive, until every sender of `jobs` is gone:
    /// workers start on the first jobs while later ones are still being
    /// produced, and no call boundary ever leaves a worker waiting for the
    /// others. Returns every job with its outcome, in arrival order; fails
    /// like [`CompilerPool::compile`] (jobs still arriving after a failure
    /// are received and dropped, so senders never see a closed channel
    /// early).
    pub fn compile_stream(
        &self,
        jobs: Receiver<Vec<CompileJob>>,
    ) -> Result<Vec<(CompileJob, CompileOutcome)>, BytecodeError> {
        let queue = Queue::default();
        let mut all: Vec<CompileJob> = Vec::new();
        let results = self.run(&queue, || {
            let mut first_error = Ok(());
            for batch in jobs {
                let lines: Result<Vec<_>, _> = batch.iter().map(encode_job).collect();
                match lines {
                    Ok(lines) if first_error.is_ok() => {
                        queue.push((all.len()..).zip(lines));
                        all.extend(batch);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        queue.fail();
                        first_error = first_error.and(Err(e));
                    }
                }
            }
            first_error
        });
        let outcomes = self.collect(&all, results)?;
        Ok(all.into_iter().zip(outcomes).collect())
    }

    /// The interpreter's `cache_tag` (e.g. "cpython-311"), confirmed by
    /// every worker at start.
    pub fn cache_tag(&self) -> &str {
        &self.cache_tag
    }

    /// The interpreter binary the workers run.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Number of worker processes.
    pub fn workers(&self) -> usize {
        self.size
    }

    /// Drain `queue` with one driver thread per worker while `feed` (on
    /// this thread) fills it; the queue is closed when `feed` returns.
    /// Returns the feed's result first, then each driver's.
    fn run(
        &self,
        queue: &Queue,
        feed: impl FnOnce() -> Result<(), BytecodeError>,
    ) -> Vec<Result<Replies, BytecodeError>> {
        std::thread::scope(|s| {
            let drivers: Vec<_> = (0..self.size)
                .map(|_| s.spawn(|| self.drive(queue)))
                .collect();
            let fed = feed();
            queue.close();
            let mut results = vec![fed.map(|()| Vec::new())];
            results.extend(drivers.into_iter().map(join_scoped));
            results
        })
    }

    /// One driver: take batches from the queue and run them on one worker
    /// (checked out when the first batch arrives, so a lazy pool starts no
    /// more workers than it has work for), keeping [`IN_FLIGHT`] batches
    /// sent. On failure the queue is failed, so the other drivers stop
    /// after their current batches, and the worker is replaced.
    fn drive(&self, queue: &Queue) -> Result<Replies, BytecodeError> {
        let mut driver = Driver {
            pool: self,
            queue,
            worker: None,
            sent: VecDeque::new(),
            done: Vec::new(),
        };
        let result = driver.run();
        let Driver { worker, done, .. } = driver;
        match result {
            Ok(()) => {
                if let Some(w) = worker {
                    self.checkin(w);
                }
                Ok(done)
            }
            Err(e) => {
                queue.fail();
                if let Some(w) = worker {
                    w.kill();
                    self.replace();
                }
                Err(e)
            }
        }
    }

    /// Merge per-thread results into job order, surfacing the first error.
    fn collect(
        &self,
        jobs: &[CompileJob],
        results: Vec<Result<Replies, BytecodeError>>,
    ) -> Result<Vec<CompileOutcome>, BytecodeError> {
        let mut replies: Vec<Option<Reply>> = (0..jobs.len()).map(|_| None).collect();
        for result in results {
            for (index, reply) in result? {
                replies[index] = Some(reply);
            }
        }
        jobs.iter()
            .zip(replies)
            .map(|(job, reply)| self.outcome(job, reply))
            .collect()
    }

    /// Turn one reply into an outcome (IO failures become errors).
    fn outcome(
        &self,
        job: &CompileJob,
        reply: Option<Reply>,
    ) -> Result<CompileOutcome, BytecodeError> {
        match reply {
            Some(Reply::Ok) => Ok(CompileOutcome::Compiled),
            Some(Reply::Err(message)) => Ok(CompileOutcome::Failed(message)),
            Some(Reply::Io(detail)) => Err(BytecodeError::JobIo {
                python: self.python.clone(),
                path: job.display_path.clone(),
                detail,
            }),
            None => Err(BytecodeError::Protocol {
                python: self.python.clone(),
                reply: format!("no reply for `{}`", job.display_path),
            }),
        }
    }

    /// Lock the pool state, surviving a poisoned lock (the state is a
    /// plain list and stays consistent).
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take an idle worker, waiting for one if all are busy.
    fn checkout(&self) -> Result<Worker, BytecodeError> {
        let mut state = self.lock();
        loop {
            if let Some(worker) = state.idle.pop() {
                return Ok(worker);
            }
            if state.unstarted > 0 {
                state.unstarted -= 1;
                drop(state);
                return self.start_worker();
            }
            if state.live == 0 {
                return Err(BytecodeError::NoWorkers {
                    python: self.python.clone(),
                });
            }
            state = self
                .idle_changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Start one worker of a lazy pool; on failure the pool shrinks.
    fn start_worker(&self) -> Result<Worker, BytecodeError> {
        let started = Worker::spawn(&self.python).and_then(|mut w| {
            w.handshake(&self.cache_tag)?;
            Ok(w)
        });
        if started.is_err() {
            self.lock().live -= 1;
            self.idle_changed.notify_all();
        }
        started
    }

    /// Give a healthy worker back.
    fn checkin(&self, worker: Worker) {
        self.lock().idle.push(worker);
        self.idle_changed.notify_one();
    }

    /// Replace a worker that failed; if no replacement starts, the pool
    /// shrinks (and callers waiting on an empty pool are told).
    fn replace(&self) {
        match Worker::spawn(&self.python).and_then(|mut w| {
            w.handshake(&self.cache_tag)?;
            Ok(w)
        }) {
            Ok(worker) => self.checkin(worker),
            Err(e) => {
                log::warn!("could not restart bytecode compiler: {e}");
                self.lock().live -= 1;
                self.idle_changed.notify_all();
            }
        }
    }
}

impl Drop for CompilerPool {
    /// Close every worker's stdin and wait for it to exit.
    fn drop(&mut self) {
        let mut workers = std::mem::take(&mut self.lock().idle);
        for worker in &mut workers {
            worker.stdin = None; // all exit in parallel, then each is reaped
        }
        drop(workers);
    }
}

/// The state of one driver thread (see [`CompilerPool::drive`]).
struct Driver<'a> {
    pool: &'a CompilerPool,
    queue: &'a Queue,
    worker: Option<Worker>,
    /// Batches sent to the worker and not answered yet, oldest first.
    sent: VecDeque<Vec<Line>>,
    done: Replies,
}

impl Driver<'_> {
    /// Keep the worker supplied until the queue is finished and every
    /// sent batch is answered.
    fn run(&mut self) -> Result<(), BytecodeError> {
        loop {
            if self.sent.len() < IN_FLIGHT {
                let wait = self.sent.is_empty();
                if let Some(batch) = self.queue.take(wait, self.pool.size) {
                    self.send(batch)?;
                    continue;
                }
            }
            if !self.answer_oldest()? {
                return Ok(());
            }
        }
    }

    /// Send a batch, checking out a worker first if this driver has none.
    fn send(&mut self, batch: Vec<Line>) -> Result<(), BytecodeError> {
        let worker = match self.worker.as_mut() {
            Some(w) => w,
            None => self.worker.insert(self.pool.checkout()?),
        };
        if worker.send(&batch).is_err() {
            // The worker died; if it was busy with an earlier batch, its
            // replies tell which job killed it.
            let err = match self.sent.pop_front() {
                Some(earlier) => worker.replies(&earlier).err(),
                None => None,
            };
            return Err(err.unwrap_or_else(|| worker.died(&job_context(&batch, 0))));
        }
        self.sent.push_back(batch);
        Ok(())
    }

    /// Read the replies to the oldest sent batch; false if none is sent.
    fn answer_oldest(&mut self) -> Result<bool, BytecodeError> {
        let (Some(batch), Some(worker)) = (self.sent.pop_front(), self.worker.as_mut()) else {
            return Ok(false);
        };
        let replies = worker.replies(&batch)?;
        self.done
            .extend(batch.iter().map(|(index, _)| *index).zip(replies));
        Ok(true)
    }
}

/// Jobs of one compile call waiting for a driver.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<Line>,
    /// No more jobs will be pushed.
    closed: bool,
    /// Something failed: drivers stop taking batches.
    failed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, lines: impl IntoIterator<Item = Line>) {
        self.lock().pending.extend(lines);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn fail(&self) {
        self.lock().failed = true;
        self.changed.notify_all();
    }

    /// The next batch: a fair share of what is pending (so the last jobs
    /// spread over all workers), at most [`MAX_BATCH`]. With `wait`, waits
    /// for jobs; `None` means the queue is finished (closed and empty, or
    /// failed), or, without `wait`, that nothing is pending right now.
    fn take(&self, wait: bool, workers: usize) -> Option<Vec<Line>> {
        let mut state = self.lock();
        loop {
            if state.failed {
                return None;
            }
            if !state.pending.is_empty() {
                let n = state
                    .pending
                    .len()
                    .div_ceil(workers * IN_FLIGHT)
                    .clamp(1, MAX_BATCH);
                return Some(state.pending.drain(..n).collect());
            }
            if state.closed || !wait {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Join a scoped thread, re-raising its panic.
fn join_scoped<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Encode a job as a protocol line (without the newline).
fn encode_job(job: &CompileJob) -> Result<Vec<u8>, BytecodeError> {
    let fields = [
        job.source.as_os_str().as_bytes(),
        job.display_path.as_bytes(),
        job.output.as_os_str().as_bytes(),
    ];
    if fields.iter().any(|f| f.contains(&b'\n') || f.contains(&0)) {
        return Err(BytecodeError::InvalidPath {
            path: job.display_path.clone(),
        });
    }
    Ok(fields.join(&0u8))
}

/// One worker process and its pipes.
struct Worker {
    python: PathBuf,
    child: Child,
    /// `None` once closed (so `Drop` can close it before waiting).
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Start `python -s -S -B -c WORKER_SCRIPT`. Instead of `-E`, `PYTHON*`
    /// variables are removed so that `PYTHONHASHSEED=0` can be set: it makes
    /// the marshalled set/frozenset constants, and so the pycs, stable.
    fn spawn(python: &Path) -> Result<Worker, BytecodeError> {
        let mut cmd = Command::new(python);
        cmd.args(["-s", "-S", "-B", "-c", WORKER_SCRIPT]);
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"PYTHON") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PYTHONHASHSEED", "0");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| BytecodeError::Spawn {
            python: python.to_owned(),
            source,
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BytecodeError::Spawn {
                python: python.to_owned(),
                source: io::Error::other("child process has no pipes"),
            });
        };
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = spawn_stderr_drain(stderr, Arc::clone(&stderr_tail));
        Ok(Worker {
            python: python.to_owned(),
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            stderr_tail,
            stderr_thread,
        })
    }

    /// Read the `ready` line and check the worker's cache tag.
    fn handshake(&mut self, cache_tag: &str) -> Result<(), BytecodeError> {
        let line = match self.read_line() {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => return Err(self.died("at start-up")),
        };
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["ready", _magic, tag] if *tag == cache_tag => Ok(()),
            ["ready", _magic, tag] => Err(BytecodeError::Handshake {
                python: self.python.clone(),
                detail: format!("its cache_tag is `{tag}`, the probe said `{cache_tag}`"),
            }),
            _ => Err(BytecodeError::Handshake {
                python: self.python.clone(),
                detail: format!("unexpected greeting {line:?}"),
            }),
        }
    }

    /// Read the replies to a sent batch, one per job.
    fn replies(&mut self, batch: &[Line]) -> Result<Vec<Reply>, BytecodeError> {
        let mut replies = Vec::with_capacity(batch.len());
        for index in 0..batch.len() {
            match self.read_line() {
                Ok(Some(line)) => replies.push(self.parse_reply(line)?),
                Ok(None) | Err(_) => return Err(self.died(&job_context(batch, index))),
            }
        }
        Ok(replies)
    }

    /// Write a whole batch (header + job lines) in one go.
    fn send(&mut self, batch: &[Line]) -> io::Result<()> {
        let size: usize = batch.iter().map(|(_, l)| l.len() + 1).sum();
        let mut buf = Vec::with_capacity(size + 8);
        buf.extend_from_slice(format!("{}\n", batch.len()).as_bytes());
        for (_, line) in batch {
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        stdin.write_all(&buf)?;
        stdin.flush()
    }

    /// Next line from the worker without its newline; `None` at EOF.
    fn read_line(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        if self.stdout.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
            return Ok(None);
        }
        line.pop();
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }

    /// Parse `ok` / `err MSG` / `io MSG`.
    fn parse_reply(&self, line: String) -> Result<Reply, BytecodeError> {
        if line == "ok" {
            Ok(Reply::Ok)
        } else if let Some(msg) = line.strip_prefix("err ") {
            Ok(Reply::Err(msg.to_owned()))
        } else if let Some(msg) = line.strip_prefix("io ") {
            Ok(Reply::Io(msg.to_owned()))
        } else {
            Err(BytecodeError::Protocol {
                python: self.python.clone(),
                reply: line,
            })
        }
    }

    /// Build the crash error: reap the process, then report its exit
    /// status and the last line of its stderr.
    fn died(&mut self, context: &str) -> BytecodeError {
        let status = self.reap();
        BytecodeError::WorkerDied {
            python: self.python.clone(),
            pid: self.child.id(),
            context: context.to_owned(),
            detail: crash_detail(status, &self.stderr_tail),
        }
    }

    /// Close stdin and wait for the process, killing it if it has not
    /// exited after [`REAP_GRACE`] (it may be mid-batch or wedged).
    fn reap(&mut self) -> io::Result<ExitStatus> {
        self.stdin = None;
        let deadline = Instant::now() + REAP_GRACE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    break self.child.wait();
                }
                Err(e) => break Err(e),
            }
        };
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
        status
    }

    /// Stop a worker whose state is unknown after an error.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.reap();
    }
}

impl Drop for Worker {
    /// Closing stdin makes the worker's read loop end; then reap it.
    fn drop(&mut self) {
        let _ = self.reap();
    }
}

/// "while compiling `display`" for job `index` of a batch.
fn job_context(batch: &[Line], index: usize) -> String {
    let display = batch
        .get(index)
        .and_then(|(_, line)| line.split(|&b| b == 0).nth(1))
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    format!("while compiling `{display}`")
}

/// Exit status plus the last stderr line, e.g. "signal: 9 (SIGKILL)" or
/// "exit status: 1; MemoryError".
fn crash_detail(status: io::Result<ExitStatus>, tail: &Mutex<Vec<u8>>) -> String {
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot reap it: {e}"),
    };
    let tail = tail.lock().unwrap_or_else(|e| e.into_inner());
    let text = String::from_utf8_lossy(&tail);
    match text.lines().map(str::trim).rfind(|l| !l.is_empty()) {
        Some(last) => format!("{status}; {last}"),
        None => status,
    }
}

/// Keep draining a worker's stderr (so it can never block on a full pipe),
/// remembering the last [`STDERR_TAIL`] bytes for crash reports.
fn spawn_stderr_drain(
    mut stderr: std::process::ChildStderr,
    tail: Arc<Mutex<Vec<u8>>>,
) -> Option<JoinHandle<()>> {
    let drain = move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            tail.extend_from_slice(&buf[..n]);
            let excess = tail.len().saturating_sub(STDERR_TAIL);
            tail.drain(..excess);
        }
    };
    std::thread::Builder::new()
        .name("pyc-stderr".into())
        .spawn(drain)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::fs;
    use std::process::Command;
    use std::sync::OnceLock;

    fn python3() -> &'static Interpreter {
        static INTERP: OnceLock<Interpreter> = OnceLock::new();
        INTERP.get_or_init(|| Interpreter::probe(OsStr::new("python3")).expect("probe python3"))
    }

    fn job(source: &Path, display: &str, output: &Path) -> CompileJob {
        CompileJob {
            source: source.to_owned(),
            display_path: display.to_owned(),
            output: output.to_owned(),
        }
    }

    fn flags(pyc: &Path) -> u32 {
        let bytes = fs::read(pyc).expect("read pyc");
        u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"))
    }

    /// The worker ships inside the binary, so a syntax error in it would
    /// only show when a pool starts; compile it on its own.
    #[test]
    fn worker_script_compiles() {
        crate::interpreter::assert_py_compiles("compile_worker.py", WORKER_SCRIPT);
    }

    #[test]
    fn compiles_good_and_reports_bad() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.py");
        let bad = dir.path().join("bad.py");
        fs::write(&good, "x = {'a', 'b'}\n").expect("write");
        fs::write(&bad, "def f(:\n").expect("write");
        let out_good = dir.path().join("out/deep/good.pyc");
        let out_bad = dir.path().join("out/bad.pyc");
        let pool = CompilerPool::start(python3(), 2).expect("start");
        assert_eq!(pool.cache_tag(), python3().cache_tag);
        let outcomes = pool
            .compile(&[
                job(&good, "pkg/good.py", &out_good),
                job(&bad, "pkg/bad.py", &out_bad),
            ])
            .expect("compile");
        assert_eq!(outcomes[0], CompileOutcome::Compiled);
        match &outcomes[1] {
            CompileOutcome::Failed(msg) => {
                assert!(msg.starts_with("SyntaxError: "), "{msg}");
                assert!(msg.contains("pkg/bad.py"), "{msg}");
                assert!(!msg.contains('\n'));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(flags(&out_good), 0b01, "hash-based, unchecked");
        let bytes = fs::read(&out_good).expect("read");
        assert_eq!(hex::encode(&bytes[..4]), python3().magic_number);
        assert!(!out_bad.exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("out/deep"))
            .expect("readdir")
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn empty_call_and_invalid_paths() {
        let pool = CompilerPool::start(python3(), 1).expect("start");
        assert!(pool.compile(&[]).expect("empty").is_empty());
        let bad = job(Path::new("a\nb.py"), "a\nb.py", Path::new("x.pyc"));
        let err = pool.compile(&[bad]).unwrap_err();
        assert!(matches!(err, BytecodeError::InvalidPath { .. }), "{err}");
    }

    #[test]
    fn missing_source_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = CompilerPool::start(python3(), 1).expect("start");
        let missing = job(
            &dir.path().join("nope.py"),
            "nope.py",
            &dir.path().join("n.pyc"),
        );
        let err = pool.compile(&[missing]).unwrap_err();
        assert!(matches!(err, BytecodeError::JobIo { .. }), "{err}");
        assert!(err.to_string().contains("FileNotFoundError"), "{err}");
    }

    /// Python must load our pyc from `__pycache__` without recompiling it,
    /// even though the source's mtime is unrelated to the pyc.
    #[test]
    fn python_imports_the_unchecked_pyc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pkg = dir.path().join("pkg");
        fs::create_dir(&pkg).expect("mkdir");
        let source = pkg.join("mod.py");
        fs::write(&source, "VALUE = 42\n").expect("write");
        let tag = python3().cache_tag.clone();
        let pyc = pkg
            .join("__pycache__")
            .join(crate::store::pyc::pyc_name("mod", &tag));
        let pool = CompilerPool::start(python3(), 1).expect("start");
        let outcomes = pool
            .compile(&[job(&source, "mod.py", &pyc)])
            .expect("compile");
        assert_eq!(outcomes, vec![CompileOutcome::Compiled]);
        let before = fs::metadata(&pyc)
            .and_then(|m| m.modified())
            .expect("mtime");
        // Give the source another mtime (a day later, whole seconds apart,
        // which is all a timestamp pyc records), another size and another
        // hash: a timestamp pyc and a checked-hash pyc would both be stale
        // now and be rewritten; an unchecked-hash pyc is still used.
        fs::write(&source, "VALUE = 42  # edited\n").expect("rewrite");
        let later = before + std::time::Duration::from_secs(86_400);
        fs::File::options()
            .write(true)
            .open(&source)
            .and_then(|f| f.set_modified(later))
            .expect("set mtime");
        let out = Command::new(&python3().executable)
            .args(["-v", "-c", "import mod; print(mod.VALUE)"])
            .env("PYTHONPATH", &pkg)
            .env_remove("PYTHONDONTWRITEBYTECODE")
            .output()
            .expect("run python");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
        let pyc_str = pyc.display().to_string();
        assert!(stderr.contains(&format!("# {pyc_str} matches")), "{stderr}");
        assert!(stderr.contains(&format!("# code object from '{pyc_str}'")));
        let after = fs::metadata(&pyc)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(before, after, "python rewrote the pyc");
    }

    #[test]
    fn concurrent_callers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = CompilerPool::start(python3(), 2).expect("start");
        let mut all = Vec::new();
        for i in 0..200 {
            let src = dir.path().join(format!("m{i}.py"));
            let text = if i % 17 == 0 {
                "if\n".to_owned()
            } else {
                format!("X = {i}\n")
            };
            fs::write(&src, text).expect("write");
            all.push(job(
                &src,
                &format!("m{i}.py"),
                &dir.path().join(format!("out/{}/m{i}.pyc", i % 7)),
            ));
        }
        std::thread::scope(|s| {
            for chunk in all.chunks(50) {
                let pool = &pool;
                s.spawn(move || {
                    let outcomes = pool.compile(chunk).expect("compile");
                    assert_eq!(outcomes.len(), chunk.len());
                    for (job, outcome) in chunk.iter().zip(outcomes) {
                        let bad = job
                            .display_path
                            .trim_start_matches('m')
                            .trim_end_matches(".py");
                        let expect_fail = bad.parse::<usize>().expect("index") % 17 == 0;
                        assert_eq!(matches!(outcome, CompileOutcome::Failed(_)), expect_fail);
                        assert_eq!(job.output.exists(), !expect_fail);
                    }
                });
            }
        });
    }

    /// Jobs sent in chunks from another thread while earlier chunks
    /// compile all come back, in arrival order, with their pycs written.
    #[test]
    fn stream_compiles_jobs_as_they_arrive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let pool = CompilerPool::lazy(python3(), 2);
        let (tx, rx) = std::sync::mpsc::channel();
        let (sent, stream) = std::thread::scope(|s| {
            let sender = s.spawn(move || {
                let mut sent = Vec::new();
                for chunk in 0..6 {
                    let jobs: Vec<CompileJob> = (0..chunk * 7)
                        .map(|i| {
                            let name = format!("c{chunk}_{i}");
                            let src = root.join(format!("{name}.py"));
                            let text = if i == 3 { "def f(:\n" } else { "X = [1, 2]\n" };
                            fs::write(&src, text).expect("write");
                            job(&src, &name, &root.join(format!("out/{name}.pyc")))
                        })
                        .collect();
                    sent.extend(jobs.iter().map(|j| j.display_path.clone()));
                    tx.send(jobs).expect("send");
                }
                sent
            });
            let stream = pool.compile_stream(rx);
            (sender.join().expect("sender"), stream)
        });
        let outcomes = stream.expect("stream");
        let names: Vec<String> = outcomes
            .iter()
            .map(|(j, _)| j.display_path.clone())
            .collect();
        assert_eq!(names, sent);
        for (job, outcome) in &outcomes {
            let bad = job.display_path.ends_with("_3");
            assert_eq!(matches!(outcome, CompileOutcome::Failed(_)), bad, "{job:?}");
            assert_eq!(job.output.exists(), !bad, "{job:?}");
        }
    }

    /// A bad job stops the stream with an error, yet senders can go on
    /// sending until they are done.
    #[test]
    fn stream_fails_on_an_invalid_job_without_blocking_senders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = CompilerPool::start(python3(), 1).expect("start");
        let src = dir.path().join("a.py");
        fs::write(&src, "A = 1\n").expect("write");
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(vec![job(&src, "a.py", &dir.path().join("a.pyc"))])
            .expect("send");
        tx.send(vec![job(Path::new("b\n.py"), "b\n.py", Path::new("b.pyc"))])
            .expect("send");
        tx.send(vec![job(&src, "c.py", &dir.path().join("c.pyc"))])
            .expect("send");
        drop(tx);
        let err = pool.compile_stream(rx).unwrap_err();
        assert!(matches!(err, BytecodeError::InvalidPath { .. }), "{err}");
        assert!(
            !dir.path().join("c.pyc").exists(),
            "compiled after a failure"
        );
    }

    #[test]
    fn worker_crash_is_reported_and_pool_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = CompilerPool::start(python3(), 1).expect("start");
        let pid = {
            let state = pool.lock();
            state.idle[0].child.id()
        };
        let killed = Command::new("kill").args(["-9", &pid.to_string()]).status();
        assert!(killed.expect("kill").success());
        let src = dir.path().join("a.py");
        fs::write(&src, "A = 1\n").expect("write");
        let jobs = [job(&src, "a.py", &dir.path().join("a.pyc"))];
        let err = pool.compile(&jobs).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BytecodeError::WorkerDied { .. }), "{text}");
        assert!(
            text.contains(&python3().executable.display().to_string()),
            "{text}"
        );
        assert!(text.contains("a.py"), "{text}");
        assert_eq!(
            pool.compile(&jobs).expect("recovered"),
            vec![CompileOutcome::Compiled]
        );
    }

    /// Throughput on the interpreter's own stdlib; run with
    /// `cargo test --release --lib bytecode -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn stdlib_throughput() {
        let stdlib = PathBuf::from(&python3().stdlib);
        let mut sources = Vec::new();
        collect_py(&stdlib, &mut sources);
        let dir = tempfile::tempdir().expect("tempdir");
        let jobs: Vec<CompileJob> = sources
            .iter()
            .enumerate()
            .map(|(i, src)| {
                let display = src
                    .strip_prefix(&stdlib)
                    .unwrap_or(src)
                    .display()
                    .to_string();
                let out = dir.path().join(format!("{:02x}/{i}.pyc", i % 256));
                job(src, &display, &out)
            })
            .collect();
        let workers = std::env::var("SITEFS_PYC_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2);
        let pool = CompilerPool::start(python3(), workers).expect("start");
        let cpu_before = children_cpu_secs();
        let start = Instant::now();
        let outcomes = pool.compile(&jobs).expect("compile");
        let secs = start.elapsed().as_secs_f64();
        drop(pool);
        let cpu = children_cpu_secs() - cpu_before;
        let failed = outcomes
            .iter()
            .filter(|o| matches!(o, CompileOutcome::Failed(_)))
            .count();
        let n = jobs.len() as f64;
        eprintln!(
            "{} files ({failed} failed), {workers} workers: {secs:.2}s wall = {:.0} files/s; \
             worker CPU {cpu:.2}s = {:.0} files per CPU-second",
            jobs.len(),
            n / secs,
            n / cpu
        );
    }

    /// User+system CPU seconds of reaped children (the pool's workers).
    fn children_cpu_secs() -> f64 {
        use nix::sys::resource::{getrusage, UsageWho};
        use nix::sys::time::TimeValLike;
        let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
        (usage.user_time() + usage.system_time()).num_microseconds() as f64 / 1e6
    }

    fn collect_py(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && path.file_name() != Some(OsStr::new("site-packages")) {
                collect_py(&path, out);
            } else if kind.is_file() && path.extension() == Some(OsStr::new("py")) {
                out.push(path);
            }
        }
    }
}
