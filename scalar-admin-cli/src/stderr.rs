//! The one way to stderr: a bounded queue that a thread of its own writes out.
//!
//! stderr is often a pipe that nobody reads for a while (`2>&1 | less`, a terminal
//! paused with Ctrl-S, a stalled `kubectl exec` or ssh stream). A blocking write there
//! would stop the single-threaded runtime, and with it every timer, signal and rollback,
//! with the pods still paused. So nothing here ever waits for stderr: diagnostics,
//! `tracing` records and the `--exec` relay queue whole lines (at most [`MAX_QUEUED`]
//! bytes), a writer thread takes them out, and when the queue is full a line is
//! dropped and counted; the count is written as soon as stderr takes lines again.
//! [`flush`] gives the queue a bounded time at exit.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The most bytes waiting for stderr; lines past it are dropped. A writer holds at most
/// one more such batch while it writes.
const MAX_QUEUED: usize = 1 << 20;

#[derive(Default)]
struct Queue {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Lines dropped since the last notice.
    dropped: u64,
    /// Whether the writer has a batch in hand.
    writing: bool,
}

struct Sink {
    queue: Mutex<Queue>,
    /// Lines are waiting.
    ready: Condvar,
    /// The queue is empty and the writer idle.
    idle: Condvar,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer thread: blocks on stderr so that nothing else does.
    fn write_out(&self) {
        let mut stderr = std::io::stderr();
        loop {
            let (batch, dropped) = {
                let mut queue = self.lock();
                while queue.lines.is_empty() && queue.dropped == 0 {
                    queue.writing = false;
                    self.idle.notify_all();
                    queue = self
                        .ready
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                queue.writing = true;
                queue.bytes = 0;
                (
                    std::mem::take(&mut queue.lines),
                    std::mem::take(&mut queue.dropped),
                )
            };
            for line in batch {
                let _ = stderr.write_all(&line);
            }
            if dropped > 0 {
                let _ = writeln!(
                    stderr,
                    "warning: {dropped} line(s) of stderr were dropped: stderr was not being read"
                );
            }
        }
    }
}

/// The sink, its writer thread started on first use; `None` if no thread could start.
fn sink() -> Option<&'static Sink> {
    static SINK: OnceLock<Option<&'static Sink>> = OnceLock::new();
    *SINK.get_or_init(|| {
        let sink: &'static Sink = Box::leak(Box::new(Sink {
            queue: Mutex::default(),
            ready: Condvar::new(),
            idle: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("stderr".to_owned())
            .spawn(|| sink.write_out())
            .ok()
            .map(|_| sink)
    })
}

/// Queues `record` (one or more whole lines) for stderr, or drops it when the queue is
/// full. Never blocks on stderr.
pub(crate) fn write(record: Vec<u8>) {
    push(record, MAX_QUEUED);
}

/// Queues a line of the `--exec` command's output: it may fill only half the queue, so
/// that a chatty command never crowds out the tool's own lines (an error, the command
/// that unpauses what is left).
pub(crate) fn relay(mut text: String) {
    text.push('\n');
    push(text.into_bytes(), MAX_QUEUED / 2);
}

fn push(record: Vec<u8>, limit: usize) {
    let Some(sink) = sink() else {
        // No thread (the process is out of them): drop rather than block.
        return;
    };
    let mut queue = sink.lock();
    if queue.bytes + record.len() > limit {
        queue.dropped += 1;
    } else {
        queue.bytes += record.len();
        queue.lines.push_back(record);
    }
    drop(queue);
    sink.ready.notify_one();
}

/// Queues one line, `\n` added.
pub(crate) fn line(mut text: String) {
    text.push('\n');
    write(text.into_bytes());
}

/// Waits, at most `within`, until every queued line is written: at exit, so that what
/// was said reaches a reader that reads, and no reader that does not can hold the exit.
pub(crate) fn flush(within: Duration) {
    let Some(sink) = sink() else { return };
    let deadline = Instant::now() + within;
    let mut queue = sink.lock();
    while !queue.lines.is_empty() || queue.writing || queue.dropped > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        queue = sink
            .idle
            .wait_timeout(queue, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Flushes the queue, within its bound, when dropped.
pub(crate) struct FlushOnExit(pub(crate) Duration);

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        flush(self.0);
    }
}

/// `tracing`'s writer: each record is queued whole when the formatter drops it.
pub(crate) struct Records;

/// One record being formatted.
pub(crate) struct Record(Vec<u8>);

impl std::io::Write for Record {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            write(std::mem::take(&mut self.0));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Records {
    type Writer = Record;

    fn make_writer(&'a self) -> Record {
        Record(Vec::new())
    }
}

/// Panic messages through the queue too: the default hook writes to stderr directly.
pub(crate) fn route_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = scalar_admin::panic_message(info.payload());
        line(format!(
            "thread '{}' panicked{at}:\n{message}",
            std::thread::current().name().unwrap_or("<unnamed>")
        ));
    }));
}
