//! `--journal FILE`: one JSON line per window attempt, written and fsynced when the
//! window opens and when it closes, so that a crash leaves an "open" line the next run
//! reports; `-c HISTORY` lists the restorable (VALID) periods from it. `--journal k8s:`
//! keeps the same entries in the cluster instead ([`cluster`]).
//!
//! # One journal, several runs
//!
//! Runs share a journal: two CronJobs, an operator beside one, each maybe in a container
//! of its own with the file on a shared volume. Each rule here is there for that.
//!
//! - Every append and every trim holds an exclusive `flock` on a lock file beside the
//!   journal, `.{name}.lock`, which is never renamed; readers hold it shared. A lock on
//!   the journal itself would not do: the trim renames a new file over it, and a run
//!   waiting for the old file's lock would then append to a file that is no longer in
//!   the directory, and its line would be lost.
//! - An append opens the journal's path again once it holds the lock, so that it writes
//!   to the file the last trim put in place.
//! - The trim is linear (one pass to order the windows, one to copy the lines kept), and
//!   writes a temporary file named after this run's id (process id, start instant and a
//!   random number: process ids repeat across containers), created exclusively, fsynced,
//!   renamed over the journal; then the directory is fsynced, as it is when an append
//!   creates the journal, so that a crash leaves the old file or the new one.
//! - A run holds an exclusive `flock` on `.{name}.run-{run id}` from before its first
//!   "open" line until after its last "close" line. The kernel lets go of it when the
//!   process ends, however it ends (SIGKILL included), and no child keeps it: the file is
//!   opened close-on-exec, so neither the guardian nor the `--exec` command inherits it.
//!   A reader that finds an "open" line without its "close" tries a non-blocking shared
//!   lock on that file: refused, the run is alive and still holds the window; granted,
//!   or no file, the run died during it. A process id could not tell: each container
//!   has its own. The trim keeps the windows a live run still holds, whatever their age.
//! - The file work (open, write, fsync, trim) runs in order on a writer thread of the
//!   run's own, and the window waits for each step at most [`BOUND`]: a slow or hung
//!   disk must not stall the one-thread runtime that keeps the hold's clock and talks
//!   to the guardian.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::hash::BuildHasher as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, flock};
use scalar_admin::unix_micros;
use scalar_admin::window::{Paused, WindowReport};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::args::{Config, Output};
use crate::exec::ExecResult;
use crate::output::{ExitStatus, Instants};

mod cluster;

pub(crate) use cluster::MAX_RETAINED as MAX_RETAINED_IN_CLUSTER;

/// How long a window waits for one journal step (a line written and fsynced, or the
/// trim) before it goes on with a warning: the pods' hold must not wait on a hung disk.
/// The step still completes, in order, if the disk comes back before the run ends.
const BOUND: Duration = Duration::from_secs(10);
/// How long a run waits for a window's close and for its last step: the pods are
/// unpaused by then, so a slow API server may only delay the exit, and a close lost to
/// an exit would leave a window that looks never closed.
const CLOSE_BOUND: Duration = Duration::from_secs(30);

/// A window's key: the run that opened it, and the attempt.
type Key = (String, u64);

/// The journal's path and the files beside it through which runs sharing it agree.
#[derive(Clone)]
struct Paths {
    journal: PathBuf,
    dir: PathBuf,
    name: String,
}

impl Paths {
    fn new(journal: &Path) -> Paths {
        let name = journal
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = match journal.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        Paths {
            journal: journal.to_owned(),
            dir,
            name,
        }
    }

    fn beside(&self, what: &str) -> PathBuf {
        self.dir.join(format!(".{}.{what}", self.name))
    }

    /// The lock every append and trim holds exclusively, and readers shared.
    fn lock(&self) -> PathBuf {
        self.beside("lock")
    }

    /// The file a run holds locked while it may have windows open. None for a run id
    /// this tool does not make: the id comes from the file, and names a path.
    fn run(&self, run: &str) -> Option<PathBuf> {
        let plain = !run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        plain.then(|| self.beside(&format!("run-{run}")))
    }

    /// Opens the lock file, creating it; else, for a reader of a read-only directory,
    /// opens it as it is.
    fn open_lock(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.lock())
            .or_else(|_| File::open(self.lock()))
    }
}

/// Takes a `flock`, again when a signal interrupts the wait.
fn lock(file: &File, operation: FlockOperation) -> std::io::Result<Locked<'_>> {
    loop {
        match flock(file, operation) {
            Ok(()) => return Ok(Locked(file)),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A `flock` held, let go when dropped.
struct Locked<'a>(&'a File);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = flock(self.0, FlockOperation::Unlock);
    }
}

/// Makes a create or a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether the run still holds its run file: it refuses a non-blocking shared lock. No
/// file, or a lock granted (let go at once, with the file), means the run ended.
///
/// Called with the journal's lock held since the lines were read: a run appends its
/// "close" line under that lock before it lets go of its run file, so a window seen
/// open is one whose run is alive until the lock is let go, or one whose run died.
fn run_alive(paths: &Paths, run: &str) -> bool {
    let Some(path) = paths.run(run) else {
        return false;
    };
    let Ok(file) = File::open(path) else {
        return false;
    };
    flock(&file, FlockOperation::NonBlockingLockShared) == Err(rustix::io::Errno::WOULDBLOCK)
}

/// This run's run file, locked; removed before its lock is let go (when the file
/// closes, after `drop`), so a reader never finds it unlocked while the run is alive.
struct RunFile {
    path: PathBuf,
    _file: File,
}

impl RunFile {
    fn create(paths: &Paths, run: &str) -> Result<RunFile, String> {
        let path = paths.run(run).unwrap_or_else(|| paths.beside("run"));
        let err = |e: std::io::Error| format!("cannot create {}: {e}", path.display());
        // Close-on-exec, as std opens every file: no child keeps the lock.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(err)?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            let _ = std::fs::remove_file(&path);
            return Err(err(e.into()));
        }
        Ok(RunFile { path, _file: file })
    }
}

impl Drop for RunFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One entry read back.
struct Line {
    number: usize,
    /// The line as read: the trim writes it back unchanged.
    raw: String,
    value: Value,
    key: Key,
    /// An "open" line, else a "close" one.
    open: bool,
}

/// Reads every entry, and the numbers of the lines that are not one.
fn read(path: &Path) -> Result<(Vec<Line>, Vec<usize>), String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read the journal {}: {e}", path.display())),
    };
    Ok(parse(&text))
}

/// The entries of a journal's text, and the numbers of the lines that are not one.
fn parse(text: &str) -> (Vec<Line>, Vec<usize>) {
    let (mut lines, mut skipped) = (Vec::new(), Vec::new());
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        let key = || {
            Some((
                value.get("run")?.as_str()?.to_owned(),
                value.get("attempt")?.as_u64()?,
            ))
        };
        let open = match value.get("event").and_then(Value::as_str) {
            Some("open") => Some(true),
            Some("close") => Some(false),
            _ => None,
        };
        match (key(), open) {
            (Some(key), Some(open)) => lines.push(Line {
                number: i + 1,
                raw: raw.to_owned(),
                value,
                key,
                open,
            }),
            _ => skipped.push(i + 1),
        }
    }
    (lines, skipped)
}

/// Reads the journal under its lock, shared, and reports on stderr the lines that are
/// not entries and the windows never closed. A WINDOW run (`clean`) also removes the run
/// files of runs that died with a window open; HISTORY only reads.
fn read_and_report(paths: &Paths, clean: bool) -> Result<Vec<Line>, String> {
    // Without a lock file (a read-only directory, for HISTORY) the read goes on unlocked.
    let lock_file = paths.open_lock();
    let _shared = match &lock_file {
        Ok(file) => Some(
            lock(file, FlockOperation::LockShared)
                .map_err(|e| format!("cannot lock {}: {e}", paths.lock().display()))?,
        ),
        Err(_) => None,
    };
    let (lines, skipped) = read(&paths.journal)?;
    for number in skipped {
        tell!(
            "warning: journal {} line {number}: not a journal entry, skipped",
            paths.journal.display()
        );
    }
    let closed: HashSet<&Key> = lines.iter().filter(|l| !l.open).map(|l| &l.key).collect();
    let mut alive: HashMap<&str, bool> = HashMap::new();
    for line in lines.iter().filter(|l| l.open && !closed.contains(&l.key)) {
        let run = line.key.0.as_str();
        let is_alive = *alive.entry(run).or_insert_with(|| run_alive(paths, run));
        let at = line
            .value
            .get("pause_completed_at")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let (journal, number, attempt) = (paths.journal.display(), line.number, line.key.1);
        if is_alive {
            tell!(
                "note: journal {journal} line {number}: the window opened at {at} (attempt \
                 {attempt}) is still open: the run that opened it is still running"
            );
            continue;
        }
        tell!(
            "warning: journal {journal} line {number}: the window opened at {at} (attempt \
             {attempt}) was never closed: the tool died during it; its pods may have been left \
             paused, and it is no restore point"
        );
        // Its run is dead and wrote this "open" line after locking its file: nobody
        // locks that file again.
        if clean && let Some(path) = paths.run(run) {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(lines)
}

/// What a trim writes.
#[derive(Debug, PartialEq)]
struct Trim {
    /// The journal's new text.
    text: String,
    /// The runs whose windows were dropped and that have ended: their run files, if
    /// any are left, can go.
    ended: Vec<String>,
}

/// Keeps the last `keep` windows (by their first line), and every older window not
/// closed whose run is `alive`; None when that is every window. Linear: one pass
/// orders the windows, one copies the lines kept; `alive` is asked once per run.
fn trimmed(lines: &[Line], keep: usize, mut alive: impl FnMut(&str) -> bool) -> Option<Trim> {
    let mut order: Vec<&Key> = Vec::new();
    let mut seen: HashSet<&Key> = HashSet::new();
    let mut closed: HashSet<&Key> = HashSet::new();
    for line in lines {
        if seen.insert(&line.key) {
            order.push(&line.key);
        }
        if !line.open {
            closed.insert(&line.key);
        }
    }
    if order.len() <= keep {
        return None;
    }
    let (old, last) = order.split_at(order.len() - keep);
    let mut kept: HashSet<&Key> = last.iter().copied().collect();
    let mut runs: HashMap<&str, bool> = HashMap::new();
    for key in old {
        let is_alive = *runs.entry(&key.0).or_insert_with(|| alive(&key.0));
        if is_alive && !closed.contains(key) {
            kept.insert(key);
        }
    }
    if kept.len() == order.len() {
        return None;
    }
    let mut text = String::new();
    for line in lines.iter().filter(|l| kept.contains(&l.key)) {
        text.push_str(&line.raw);
        text.push('\n');
    }
    let mut ended: Vec<String> = runs
        .into_iter()
        .filter(|(_, is_alive)| !is_alive)
        .map(|(run, _)| run.to_owned())
        .collect();
    ended.sort();
    Some(Trim { text, ended })
}

/// Work for the writer thread, each with where to say it is done.
enum Job {
    /// Appends these lines, in one write and one fsync; `opens`: they open a window, so
    /// the run file must be held first.
    Append {
        entries: Vec<Value>,
        opens: bool,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// The run's last step: the trim; then the run file goes.
    Finish(oneshot::Sender<Result<(), String>>),
}

/// The writer thread's state.
struct Writer {
    paths: Paths,
    /// The lock file, open for the whole run.
    lock: File,
    keep: usize,
    run: String,
    /// Taken before the first "open" line, so a run that never paused leaves none.
    run_file: Option<RunFile>,
}

impl Writer {
    fn serve(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.blocking_recv() {
            match job {
                Job::Append {
                    entries,
                    opens,
                    done,
                } => {
                    let mut text = String::new();
                    for entry in entries {
                        text.push_str(&entry.to_string());
                        text.push('\n');
                    }
                    let _ = done.send(self.append(&text, opens));
                }
                Job::Finish(done) => {
                    let result = self.trim();
                    self.run_file = None;
                    let _ = done.send(result);
                }
            }
        }
        // The run ended without its last step (a panic): the run file goes all the same.
    }

    fn append(&mut self, text: &str, opens: bool) -> Result<(), String> {
        let path = &self.paths.journal;
        let err =
            |e: std::io::Error| format!("cannot write to the journal {}: {e}", path.display());
        let mut warning = None;
        if opens && self.run_file.is_none() {
            match RunFile::create(&self.paths, &self.run) {
                Ok(file) => self.run_file = Some(file),
                Err(e) => {
                    warning = Some(format!(
                        "{e}: another run would report this run's open window as never closed"
                    ));
                }
            }
        }
        let _held = lock(&self.lock, FlockOperation::LockExclusive).map_err(err)?;
        // Under the lock, the path names the journal the last trim put in place.
        let (mut file, created) = match OpenOptions::new().append(true).create_new(true).open(path)
        {
            Ok(file) => (file, true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (
                OpenOptions::new().append(true).open(path).map_err(err)?,
                false,
            ),
            Err(e) => return Err(err(e)),
        };
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(err)?;
        if created {
            sync_dir(&self.paths.dir).map_err(err)?;
        }
        warning.map_or(Ok(()), Err)
    }

    /// Keeps the last `keep` windows, and those a live run holds: once the journal
    /// holds more, it is rewritten to a temporary file renamed over it.
    fn trim(&mut self) -> Result<(), String> {
        let path = &self.paths.journal;
        let err = |e: std::io::Error| format!("cannot rewrite the journal {}: {e}", path.display());
        let _held = lock(&self.lock, FlockOperation::LockExclusive).map_err(err)?;
        let (lines, _) = read(path)?;
        // This run is alive without asking: where `flock` is emulated with byte-range
        // locks (NFS), closing the probe's descriptor would let go of this run's lock.
        let alive = |run: &str| run == self.run || run_alive(&self.paths, run);
        let Some(trim) = trimmed(&lines, self.keep, alive) else {
            return Ok(());
        };
        let tmp = self.paths.beside(&format!("tmp-{}", self.run));
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(trim.text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            sync_dir(&self.paths.dir)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        for run in &trim.ended {
            if let Some(file) = self.paths.run(run) {
                let _ = std::fs::remove_file(file);
            }
        }
        Ok(())
    }
}

/// Opens the journal file for append (creating it) and starts its writer thread.
fn open_file(
    path: &Path,
    keep: usize,
    run: &str,
    receiver: mpsc::UnboundedReceiver<Job>,
) -> Result<(), String> {
    let paths = Paths::new(path);
    let err =
        |e: std::io::Error| format!("cannot open the journal {} for append: {e}", path.display());
    let created = match OpenOptions::new().append(true).create_new(true).open(path) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            OpenOptions::new().append(true).open(path).map_err(err)?;
            false
        }
        Err(e) => return Err(err(e)),
    };
    if created {
        sync_dir(&paths.dir).map_err(err)?;
    }
    let lock_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(paths.lock())
        .map_err(|e| {
            format!(
                "cannot open the journal's lock file {}: {e}",
                paths.lock().display()
            )
        })?;
    if let Err(e) = read_and_report(&paths, true) {
        tell!("warning: {e}");
    }
    let writer = Writer {
        paths,
        lock: lock_file,
        keep,
        run: run.to_owned(),
        run_file: None,
    };
    std::thread::Builder::new()
        .name("journal".to_owned())
        .spawn(move || writer.serve(receiver))
        .map_err(|e| format!("cannot start the journal's writer thread: {e}"))?;
    Ok(())
}

/// A journal step handed to the writer thread.
#[must_use = "the window goes on once its line is written: wait for it"]
pub(crate) struct Pending {
    journal: String,
    bound: Duration,
    done: Option<oneshot::Receiver<Result<(), String>>>,
}

impl Pending {
    /// Waits for the step, at most its bound ([`BOUND`], [`CLOSE_BOUND`]); says on
    /// stderr what went wrong, if anything.
    pub(crate) async fn wait(self) {
        let Some(done) = self.done else { return };
        match tokio::time::timeout(self.bound, done).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tell!("warning: {e}"),
            Ok(Err(_)) => tell!(
                "warning: cannot write to the journal {}: its writer stopped",
                self.journal
            ),
            Err(_) => tell!(
                "warning: the journal {} was not written within {} s; going on without waiting",
                self.journal,
                self.bound.as_secs()
            ),
        }
    }
}

/// Where the windows are recorded: `--journal FILE`, or `--journal k8s:[NAMESPACE]`,
/// objects in the Kubernetes API.
#[derive(Debug, Clone)]
pub(crate) enum Place {
    File(PathBuf),
    Cluster(cluster::Place),
}

impl Place {
    /// Reads `--journal`'s value: `k8s:` names the cluster (a file of that name is
    /// `./k8s:...`).
    pub(crate) fn parse(
        value: &Path,
        kubeconfig: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Place, String> {
        match value.to_str().and_then(|v| v.strip_prefix(cluster::SCHEME)) {
            Some(namespace) => Ok(Place::Cluster(cluster::Place::new(
                namespace, kubeconfig, context,
            )?)),
            None if value.as_os_str().is_empty() => {
                Err("a journal needs a file or k8s:NAMESPACE".to_owned())
            }
            None => Ok(Place::File(value.to_owned())),
        }
    }

    /// Whether it is kept through the Kubernetes API.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Place::Cluster(_))
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::File(path) => write!(f, "{}", path.display()),
            Place::Cluster(place) => write!(f, "{place}"),
        }
    }
}

/// The journal, open for append: this run's side; the file or API work is the writer
/// thread's.
pub(crate) struct Journal {
    name: String,
    /// This run's id: the process id, the start instant and a random number.
    run: String,
    /// Attempts opened and not yet closed.
    open: Vec<usize>,
    jobs: mpsc::UnboundedSender<Job>,
}

impl Journal {
    /// Opens the journal for append (creating it), before anything is paused, and warns
    /// about windows a previous run left open. `bound`: the longest an attempt may last
    /// from its pause (the guardian's lease), after which a window not closed is taken
    /// as left by a run that died, where no lock can tell.
    pub(crate) fn open(place: &Place, keep: usize, bound: Duration) -> Result<Journal, String> {
        let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        let run = format!(
            "{}-{}-{random:016x}",
            std::process::id(),
            unix_micros(SystemTime::now())
        );
        let (jobs, receiver) = mpsc::unbounded_channel();
        match place {
            Place::File(path) => open_file(path, keep, &run, receiver)?,
            Place::Cluster(place) => cluster::open(place, keep, bound, &run, receiver)?,
        }
        Ok(Journal {
            name: place.to_string(),
            run,
            open: Vec::new(),
            jobs,
        })
    }

    /// Hands a job to the writer; the window waits for it at most `bound`.
    fn submit(
        &self,
        bound: Duration,
        job: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Job,
    ) -> Pending {
        let (done, receiver) = oneshot::channel();
        // A writer that stopped drops `done`: the wait says so.
        let _ = self.jobs.send(job(done));
        Pending {
            journal: self.name.clone(),
            bound,
            done: Some(receiver),
        }
    }

    /// Hands entries to the writer. An "open" entry is waited for at most [`BOUND`]
    /// (the pods are paused meanwhile), a "close" one at most [`CLOSE_BOUND`].
    fn append(&self, entries: &[Value], opens: bool) -> Pending {
        if entries.is_empty() {
            return Pending {
                journal: self.name.clone(),
                bound: BOUND,
                done: None,
            };
        }
        let entries = entries.to_vec();
        let bound = if opens { BOUND } else { CLOSE_BOUND };
        self.submit(bound, |done| Job::Append {
            entries,
            opens,
            done,
        })
    }

    /// The window is open: every pod paused.
    pub(crate) fn opened(&mut self, paused: &Paused) -> Pending {
        let (at, _) = crate::output::java_instant(paused.pause_completed_at());
        let pods: Vec<&str> = paused.pods().map(|t| t.name()).collect();
        let entry = json!({
            "event": "open",
            "run": self.run,
            "attempt": paused.attempt(),
            "pause_completed_at_us": unix_micros(paused.pause_completed_at()),
            "pause_completed_at": at,
            "pod_count": pods.len(),
            "snapshot_digest": snapshot_digest(paused),
            "pods": pods,
        });
        self.open.push(paused.attempt());
        self.append(&[entry], true)
    }

    /// The window closed with this report.
    pub(crate) fn closed(
        &mut self,
        attempt: usize,
        w: &WindowReport,
        exec: Option<&ExecResult>,
    ) -> Pending {
        let (start, end) = (
            unix_micros(w.pause_completed_at()),
            unix_micros(w.unpause_started_at()),
        );
        let reasons: Vec<String> = w
            .verdict()
            .findings()
            .iter()
            .map(ToString::to_string)
            .collect();
        let entry = json!({
            "event": "close",
            "run": self.run,
            "attempt": attempt,
            "pause_completed_at_us": start,
            "unpause_started_at_us": end,
            "midpoint_us": unix_micros(w.midpoint()),
            "length_us": end - start,
            "verdict": if w.verdict().is_valid() { "VALID" } else { "INVALID" },
            "reasons": reasons,
            "exec": exec,
        });
        self.open.retain(|a| *a != attempt);
        self.append(&[entry], false)
    }

    /// The run failed: every window still open closes as FAILED with the error.
    pub(crate) fn failed(&mut self, error: &str, exec: &[ExecResult]) -> Pending {
        let entries: Vec<Value> = std::mem::take(&mut self.open)
            .into_iter()
            .map(|attempt| {
                json!({
                    "event": "close",
                    "run": self.run,
                    "attempt": attempt,
                    "verdict": "FAILED",
                    "reasons": [error],
                    "exec": exec.iter().find(|e| e.attempt == attempt),
                })
            })
            .collect();
        self.append(&entries, false)
    }

    /// The run's last step: keeps the last `keep` windows (and those other runs still
    /// hold), then lets go of this run's run file.
    pub(crate) fn finish(self) -> Pending {
        self.submit(CLOSE_BOUND, Job::Finish)
    }
}

/// SHA-256 of what the window paused, as JSON: each group with its pods and, for the
/// Kubernetes way, the snapshot taken before the pause (names, UIDs, restart counts,
/// owners' generations). Two windows with the same digest paused the same pods in the
/// same state; the cluster journal keeps it instead of a thousand pod names.
fn snapshot_digest(paused: &Paused) -> String {
    let groups = serde_json::to_vec(paused.groups()).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &groups);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// One restorable period in HISTORY's JSON.
#[derive(Serialize)]
struct Period {
    #[serde(flatten)]
    instants: Instants,
    attempt: u64,
    /// The pods' names (a file journal; the cluster's keeps their count).
    #[serde(skip_serializing_if = "Value::is_null")]
    pods: Value,
    pod_count: usize,
    /// Of what was paused ([`snapshot_digest`]), when recorded.
    snapshot_digest: Value,
    exec: Value,
}

/// `-c HISTORY`: the VALID windows of the journal, newest first. Contacts no pod.
pub(crate) fn history(config: &Config) -> ExitStatus {
    let Some(place) = &config.journal else {
        tell!("error: -c HISTORY needs --journal FILE or k8s:NAMESPACE");
        return ExitStatus::Usage;
    };
    let read = match place {
        Place::File(path) => read_and_report(&Paths::new(path), false),
        Place::Cluster(place) => cluster::read(place),
    };
    let lines = match read {
        Ok(lines) => lines,
        Err(e) => {
            tell!("error: {e}");
            return ExitStatus::Failure;
        }
    };
    let tz = &config.time_zone;
    let opens: HashMap<_, _> = lines
        .iter()
        .filter(|l| l.open)
        .map(|l| (&l.key, &l.value))
        .collect();
    let mut periods: Vec<Period> = lines
        .iter()
        .filter(|l| !l.open && l.value["verdict"] == "VALID")
        .filter_map(|l| {
            let v = &l.value;
            let (start, end, mid) = (
                v["pause_completed_at_us"].as_i64()?,
                v["unpause_started_at_us"].as_i64()?,
                v["midpoint_us"].as_i64()?,
            );
            let open = opens.get(&l.key);
            let field = |name: &str| open.map_or(Value::Null, |o| o[name].clone());
            let pods = field("pods");
            let pod_count = field("pod_count")
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or_else(|| pods.as_array().map_or(0, Vec::len));
            Some(Period {
                instants: Instants::new(start, end, mid, tz),
                attempt: l.key.1,
                pods,
                pod_count,
                snapshot_digest: field("snapshot_digest"),
                exec: v.get("exec").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    periods.sort_by_key(|p| std::cmp::Reverse(p.instants.pause_completed_at_us));
    match config.output {
        Output::Json => {
            let doc = json!({
                "command": "history",
                "journal": place.to_string(),
                "time_zone": tz.iana_name().unwrap_or("UTC"),
                "windows": periods,
            });
            say!(
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
            );
        }
        Output::Text => {
            if periods.is_empty() {
                say!("No restorable window in {place}");
            } else {
                say!(
                    "{:<44}  {:<44}  {:>12}  {:>4}  {}",
                    "RESTORE POINT (MIDPOINT)",
                    "WINDOW START",
                    "LENGTH S",
                    "PODS",
                    "EXEC"
                );
                for p in &periods {
                    let pods = p.pod_count;
                    let exec = match &p.exec {
                        Value::Null => "-".to_owned(),
                        e => match (e["exit_code"].as_i64(), e["timed_out"].as_bool()) {
                            (_, Some(true)) => "timed out".to_owned(),
                            (Some(code), _) => format!("exit {code}"),
                            _ => "failed".to_owned(),
                        },
                    };
                    say!(
                        "{:<44}  {:<44}  {:>12.6}  {:>4}  {}",
                        p.instants.midpoint,
                        p.instants.pause_completed_at,
                        p.instants.length_us as f64 / 1e6,
                        pods,
                        exec
                    );
                }
            }
        }
    }
    ExitStatus::Success
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(run: &str, attempt: u64) -> String {
        format!(r#"{{"event":"open","run":"{run}","attempt":{attempt},"pods":[]}}"#)
    }

    fn close(run: &str, attempt: u64) -> String {
        format!(r#"{{"event":"close","run":"{run}","attempt":{attempt},"verdict":"VALID"}}"#)
    }

    /// 20,000 closed windows, and two older ones left open: one by a run still alive
    /// (kept whatever its age), one by a run that died (dropped, its run reported ended).
    #[test]
    fn the_trim_keeps_the_last_n_windows_and_those_a_live_run_holds_asking_once_per_run() {
        let mut text = vec![open("live", 1), open("dead", 1), open("old", 1)];
        for i in 0..20_000 {
            text.push(open(&format!("r{i}"), 1));
            text.push(close(&format!("r{i}"), 1));
        }
        // The old run's close comes late: it is one window, dropped with its two lines.
        text.push(close("old", 1));
        let (lines, skipped) = parse(&text.join("\n"));
        assert!(skipped.is_empty());
        let mut asked: Vec<String> = Vec::new();
        let trim = trimmed(&lines, 100, |run| {
            asked.push(run.to_owned());
            run == "live"
        })
        .expect("more than 100 windows");
        // One question per run of a window older than the last 100.
        let distinct: HashSet<&String> = asked.iter().collect();
        assert_eq!(asked.len(), distinct.len(), "asked twice about a run");
        assert_eq!(asked.len(), 3 + 20_000 - 100);

        let mut expected = vec![open("live", 1)];
        for i in 20_000 - 100..20_000 {
            expected.push(open(&format!("r{i}"), 1));
            expected.push(close(&format!("r{i}"), 1));
        }
        let expected = expected.join("\n") + "\n";
        assert_eq!(trim.text, expected);
        assert!(trim.ended.contains(&"dead".to_owned()));
        assert!(trim.ended.contains(&"old".to_owned()));
        assert!(!trim.ended.contains(&"live".to_owned()));
        assert_eq!(trim.ended.len(), 2 + 20_000 - 100);

        // At most `keep` windows, or nothing to drop: no rewrite.
        assert_eq!(trimmed(&lines, 20_003, |_| false), None);
        let (held, _) = parse(&[open("live", 1), open("a", 1), close("a", 1)].join("\n"));
        assert_eq!(trimmed(&held, 1, |run| run == "live"), None);
    }
}
