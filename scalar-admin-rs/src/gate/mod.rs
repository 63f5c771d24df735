//! The server side: the gate a Rust service puts in front of its request handlers, the
//! tower layer that puts every request through it, and the admin service that opens and
//! closes it.
//!
//! It behaves as Scalar's servers do: Pause closes the gate, so new requests are refused
//! (`UNAVAILABLE`, as ScalarDB answers); with `wait_outstanding` it then waits for
//! in-flight requests to finish, up to `max_pause_wait_time` (30 s when absent or 0).
//! If they have not, the gate is reopened and Pause answers `FAILED_PRECONDITION`
//! with the reason `TIMED_OUT`, unless an earlier Pause had closed the gate: then it
//! stays closed and the reason is `TIMED_OUT_STILL_PAUSED`, as ScalarDL answers. A Pause
//! whose caller goes away during its drain reopens the gate it closed: nobody is left
//! to report the pause to. Unpause opens the gate; CheckPaused reports it. The state
//! lives in the process, so a restarted service comes back unpaused.
//!
//! - [`Gate`]: the state, cheap to clone; [`Gate::enter`] hands out a [`Pass`].
//! - [`GateLayer`]: `Server::builder().layer(GateLayer::new(gate))` gates every request
//!   of a tonic server, except the admin calls themselves.
//! - [`AdminService`]: the admin interface over a gate, from [`Gate::admin_server`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use scalar_admin::gate::{Drain, Gate};
//!
//! let gate = Gate::new();
//! // tonic::transport::Server::builder().add_service(gate.admin_server())...
//! let _admin = gate.admin_server();
//!
//! // In a request handler (or through `GateLayer`): hold a pass while the request runs.
//! let pass = gate.enter().expect("open");
//! assert_eq!(gate.in_flight(), 1);
//! drop(pass);
//! gate.pause(Drain::Skip).await.unwrap();
//! assert!(gate.enter().is_err(), "a paused gate refuses new requests");
//! gate.unpause();
//! # }
//! ```

pub(crate) mod codec;
mod layer;
mod service;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use layer::{GateLayer, GateService, ResponseFuture};
pub use service::AdminService;

use crate::contract::{DEFAULT_DRAIN_LIMIT, reason};
use crate::pb::PauseRequest;

#[derive(Debug, Clone, Copy, Default)]
struct State {
    paused: bool,
    /// Counts closings, so that a Pause knows whether the gate it waits on is still the
    /// one it closed.
    epoch: u64,
    in_flight: usize,
}

/// The gate. Cheap to clone; clones share one state.
#[derive(Debug, Clone)]
pub struct Gate {
    // A watch channel, so that a draining Pause can await "no request in flight"
    // instead of polling.
    state: Arc<watch::Sender<State>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

/// Proof that a request passed the gate. The request counts as in flight until the pass
/// is dropped.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the pass is held"]
pub struct Pass {
    gate: Gate,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.state.send_modify(|s| s.in_flight -= 1);
    }
}

/// A request refused because the gate is closed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the service is paused")]
pub struct Paused(());

impl From<Paused> for tonic::Status {
    fn from(e: Paused) -> Self {
        tonic::Status::unavailable(e.to_string())
    }
}

/// Whether and how long a Pause waits for in-flight requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Drain {
    /// Close the gate and answer at once (`wait_outstanding = false`).
    Skip,
    /// Close the gate, then wait for in-flight requests up to this limit.
    UpTo(Duration),
}

impl Default for Drain {
    /// Waiting, up to the servers' default limit of 30 seconds.
    fn default() -> Self {
        Drain::UpTo(DEFAULT_DRAIN_LIMIT)
    }
}

impl Drain {
    /// The drain a Pause request asks for: a `max_pause_wait_time` absent or 0 means
    /// the default limit (as ScalarDB reads it); a negative one is refused.
    pub fn from_request(request: &PauseRequest) -> Result<Self, InvalidDrain> {
        if !request.wait_outstanding {
            return Ok(Drain::Skip);
        }
        match request.max_pause_wait_time {
            None | Some(0) => Ok(Drain::default()),
            Some(ms) => u64::try_from(ms)
                .map(|ms| Drain::UpTo(Duration::from_millis(ms)))
                .map_err(|_| InvalidDrain(ms)),
        }
    }
}

/// A Pause request with a negative `max_pause_wait_time`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("max_pause_wait_time must not be negative, got {0} ms")]
pub struct InvalidDrain(i64);

/// A waiting Pause that did not complete.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DrainError {
    /// Requests were still in flight when the drain limit passed. The gate was reopened,
    /// unless an earlier Pause had closed it (`still_paused`).
    #[error(
        "Pause did not complete: {in_flight} outstanding requests were not drained within {} ms; {}",
        limit.as_millis(),
        if *still_paused { "the gate stays closed by an earlier pause" } else { "the gate has been reopened" }
    )]
    TimedOut {
        /// Requests in flight at the limit.
        in_flight: usize,
        /// The drain limit.
        limit: Duration,
        /// Whether the gate stays closed, by an earlier Pause.
        still_paused: bool,
    },
    /// An Unpause opened the gate while this Pause was waiting.
    #[error(
        "Pause did not complete: the gate was opened while waiting for {in_flight} in-flight requests"
    )]
    Unpaused {
        /// Requests in flight when the gate was opened.
        in_flight: usize,
    },
}

impl DrainError {
    /// The `ErrorInfo` reason the admin service sends with this error.
    pub fn reason(&self) -> &'static str {
        match self {
            DrainError::TimedOut {
                still_paused: false,
                ..
            } => reason::TIMED_OUT,
            DrainError::TimedOut {
                still_paused: true, ..
            } => reason::TIMED_OUT_STILL_PAUSED,
            DrainError::Unpaused { .. } => reason::GATE_OPEN,
        }
    }
}

/// Reopens the gate a Pause closed if the Pause ends before its drain did (its future
/// dropped: the caller disconnected, or `grpc-timeout` passed) or gives up at its limit.
struct Reopen<'a> {
    gate: &'a Gate,
    epoch: u64,
    armed: bool,
}

impl Drop for Reopen<'_> {
    fn drop(&mut self) {
        if self.armed {
            let epoch = self.epoch;
            self.gate.state.send_if_modified(|s| {
                let ours = s.paused && s.epoch == epoch;
                if ours {
                    s.paused = false;
                }
                ours
            });
        }
    }
}

impl Gate {
    /// An open gate with no request in flight.
    pub fn new() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(State::default())),
        }
    }

    /// Lets a request through, unless the gate is closed.
    pub fn enter(&self) -> Result<Pass, Paused> {
        let mut entered = false;
        self.state.send_if_modified(|s| {
            if !s.paused {
                s.in_flight += 1;
                entered = true;
            }
            entered
        });
        if entered {
            Ok(Pass { gate: self.clone() })
        } else {
            Err(Paused(()))
        }
    }

    /// Whether the gate is closed.
    pub fn is_paused(&self) -> bool {
        self.state.borrow().paused
    }

    /// Waits until the gate is closed (`paused`) or open (`!paused`): for work that must
    /// wait out a pause (a background job), and for tests that must not guess.
    pub async fn wait_for(&self, paused: bool) {
        let mut state = self.state.subscribe();
        // The sender lives in `self`: the wait ends only when the state matches.
        let _ = state.wait_for(|s| s.paused == paused).await;
    }

    /// How many requests hold a pass.
    pub fn in_flight(&self) -> usize {
        self.state.borrow().in_flight
    }

    /// Closes the gate and, for [`Drain::UpTo`], waits until no request is in flight.
    ///
    /// Past the limit the gate is reopened and the Pause fails, unless an earlier Pause
    /// had closed it, which keeps it closed. If this future is dropped before the drain
    /// completed, a gate it closed is reopened. A completed Pause stays paused until
    /// [`unpause`](Self::unpause).
    pub async fn pause(&self, drain: Drain) -> Result<(), DrainError> {
        let (mut epoch, mut closed_here) = (0, false);
        self.state.send_modify(|s| {
            if !s.paused {
                s.paused = true;
                s.epoch += 1;
                closed_here = true;
            }
            epoch = s.epoch;
        });
        let Drain::UpTo(limit) = drain else {
            return Ok(());
        };
        let mut reopen = Reopen {
            gate: self,
            epoch,
            armed: closed_here,
        };
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(
            limit,
            rx.wait_for(|s| s.in_flight == 0 || !s.paused || s.epoch != epoch),
        )
        .await
        .map(|state| state.map(|s| *s));
        match waited {
            Ok(Ok(s)) if s.paused && s.epoch == epoch => {
                reopen.armed = false;
                Ok(())
            }
            Ok(Ok(s)) => {
                reopen.armed = false;
                Err(DrainError::Unpaused {
                    in_flight: s.in_flight,
                })
            }
            // The sender lives in `self`, so the channel cannot close while we wait; were
            // it to, nothing says the drain completed.
            Ok(Err(_)) => Err(DrainError::Unpaused { in_flight: 0 }),
            Err(_) => Err(DrainError::TimedOut {
                in_flight: self.in_flight(),
                limit,
                // `reopen` reopens the gate on return when this Pause closed it.
                still_paused: !closed_here,
            }),
        }
    }

    /// Opens the gate.
    pub fn unpause(&self) {
        self.state.send_modify(|s| s.paused = false);
    }

    /// Waits until the gate is closed (`true`) or open (`false`).
    pub async fn wait_until_paused(&self, paused: bool) {
        let mut rx = self.state.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|s| s.paused == paused).await;
    }

    /// The tonic service answering Pause, Unpause and CheckPaused for this gate, ready for
    /// `Server::builder().add_service(..)`.
    pub fn admin_server(&self) -> crate::pb::admin_server::AdminServer<AdminService> {
        crate::pb::admin_server::AdminServer::new(self.admin_service())
    }

    /// The admin interface over this gate, for wrapping before it is served.
    pub fn admin_service(&self) -> AdminService {
        AdminService::new(self.clone())
    }
}
