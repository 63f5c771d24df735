//! A network-like delay for pods on loopback: each wait lasts a set time plus uniform
//! jitter, to a precision finer than tokio's millisecond timer.
//!
//! Loopback answers in microseconds, while pods on other nodes answer in 0.2 to 1 ms;
//! the kernel of the CI machines has no `netem` to add that. The waits are kept by one
//! thread that sleeps until the earliest is due (the kernel's timer slack, about 50 µs,
//! is the error) and then wakes every wait that is due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The delay each wait takes: `base` plus uniform jitter in `[-jitter, +jitter]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delay {
    /// The mean.
    pub base: Duration,
    /// The half-width of the jitter.
    pub jitter: Duration,
}

/// The thread keeping the waits. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DelayLine {
    delay: Delay,
    waits: mpsc::Sender<(Instant, oneshot::Sender<()>)>,
}

impl DelayLine {
    /// Starts the thread.
    pub fn start(delay: Delay) -> DelayLine {
        let (waits, incoming) = mpsc::channel::<(Instant, oneshot::Sender<()>)>();
        std::thread::spawn(move || {
            let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
            let mut senders = std::collections::HashMap::new();
            let mut next_id = 0u64;
            loop {
                let now = Instant::now();
                while let Some(Reverse((at, id))) = due.peek().copied() {
                    if at > now {
                        break;
                    }
                    due.pop();
                    if let Some(tx) = senders.remove(&id) {
                        let _: Result<(), ()> = oneshot::Sender::send(tx, ());
                    }
                }
                let received = match due.peek() {
                    Some(Reverse((at, _))) => {
                        incoming.recv_timeout(at.saturating_duration_since(now))
                    }
                    None => incoming
                        .recv()
                        .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                };
                match received {
                    Ok((at, tx)) => {
                        due.push(Reverse((at, next_id)));
                        senders.insert(next_id, tx);
                        next_id += 1;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        DelayLine { delay, waits }
    }

    /// Waits one delay. `seed` varies the jitter (any number: a counter, an address).
    pub async fn wait(&self, seed: u64) {
        let jitter = self.delay.jitter.as_nanos() as u64;
        let offset = if jitter == 0 {
            0
        } else {
            (mix(seed) % (2 * jitter + 1)) as i64 - jitter as i64
        };
        let base = self.delay.base.as_nanos() as i64;
        let nanos = (base + offset).max(0) as u64;
        let (tx, rx) = oneshot::channel();
        if self
            .waits
            .send((Instant::now() + Duration::from_nanos(nanos), tx))
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

/// splitmix64: a well-spread number from any seed, no dependency.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
