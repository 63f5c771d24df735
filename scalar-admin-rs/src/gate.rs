//! The server side: the gate a Rust service puts in front of its request handlers, and
//! the admin service that opens and closes it.
//!
//! It behaves as ScalarDB and ScalarDL servers do: Pause closes the gate so new requests
//! are refused; with `wait_outstanding` it then waits for in-flight requests to finish,
//! up to `max_pause_wait_time` (30 s when absent or 0), and if they have not, reopens the
//! gate and answers `FAILED_PRECONDITION`. Unpause opens the gate; CheckPaused reports it.
//! The state lives in the process, so a restarted service comes back unpaused.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use scalar_admin::gate::Gate;
//!
//! let gate = Gate::new();
//! // tonic::transport::Server::builder().add_service(gate.admin_server())...
//! let _admin = gate.admin_server();
//!
//! // In each request handler: hold a pass while the request runs.
//! let pass = gate.enter().expect("open");
//! assert_eq!(gate.in_flight(), 1);
//! drop(pass);
//! gate.pause(false, None).await.unwrap();
//! assert!(gate.enter().is_err(), "a paused gate refuses new requests");
//! gate.unpause();
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::client::SERVER_DEFAULT_MAX_PAUSE_WAIT;
use crate::pb::admin_server::{Admin, AdminServer};
use crate::pb::{CheckPausedResponse, PauseRequest};

#[derive(Debug, Clone, Copy, Default)]
struct State {
    paused: bool,
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

impl From<Paused> for Status {
    fn from(e: Paused) -> Self {
        Status::unavailable(e.to_string())
    }
}

/// A waiting Pause gave up; the gate is open.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DrainError {
    /// Requests were still in flight when the drain limit passed, so the gate was
    /// reopened.
    #[error("{in_flight} requests still in flight after {limit:?}; the gate is open again")]
    Timeout {
        /// Requests in flight at the limit.
        in_flight: usize,
        /// The drain limit.
        limit: Duration,
    },
    /// Unpause arrived while Pause was waiting for in-flight requests.
    #[error("unpaused while waiting for {in_flight} in-flight requests")]
    Unpaused {
        /// Requests in flight when the gate was opened.
        in_flight: usize,
    },
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

    /// How many requests hold a pass.
    pub fn in_flight(&self) -> usize {
        self.state.borrow().in_flight
    }

    /// Closes the gate. With `wait_outstanding`, waits until no request is in flight, up
    /// to `limit` (30 s when `None` or zero); past it, reopens the gate and fails.
    pub async fn pause(
        &self,
        wait_outstanding: bool,
        limit: Option<Duration>,
    ) -> Result<(), DrainError> {
        self.state.send_modify(|s| s.paused = true);
        if !wait_outstanding {
            return Ok(());
        }
        let limit = limit
            .filter(|l| !l.is_zero())
            .unwrap_or(SERVER_DEFAULT_MAX_PAUSE_WAIT);
        let mut rx = self.state.subscribe();
        let drained =
            tokio::time::timeout(limit, rx.wait_for(|s| s.in_flight == 0 || !s.paused)).await;
        match drained {
            Ok(Ok(state)) if !state.paused => Err(DrainError::Unpaused {
                in_flight: state.in_flight,
            }),
            Ok(_) => Ok(()),
            Err(_) => {
                let mut in_flight = 0;
                self.state.send_modify(|s| {
                    s.paused = false;
                    in_flight = s.in_flight;
                });
                Err(DrainError::Timeout { in_flight, limit })
            }
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
    pub fn admin_server(&self) -> AdminServer<AdminService> {
        AdminServer::new(self.admin_service())
    }

    /// The admin interface over this gate, for wrapping before it is served.
    pub fn admin_service(&self) -> AdminService {
        AdminService { gate: self.clone() }
    }
}

/// The admin interface over a [`Gate`].
#[derive(Debug, Clone)]
pub struct AdminService {
    gate: Gate,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn pause(&self, request: Request<PauseRequest>) -> Result<Response<()>, Status> {
        let req = request.into_inner();
        let limit = req
            .max_pause_wait_time
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64));
        match self.gate.pause(req.wait_outstanding, limit).await {
            Ok(()) => {
                info!(wait_outstanding = req.wait_outstanding, "paused");
                Ok(Response::new(()))
            }
            Err(e) => {
                warn!(error = %e, "pause failed");
                Err(Status::failed_precondition(format!("failed to pause: {e}")))
            }
        }
    }

    async fn unpause(&self, _: Request<()>) -> Result<Response<()>, Status> {
        self.gate.unpause();
        info!("unpaused");
        Ok(Response::new(()))
    }

    async fn check_paused(&self, _: Request<()>) -> Result<Response<CheckPausedResponse>, Status> {
        Ok(Response::new(CheckPausedResponse {
            paused: self.gate.is_paused(),
        }))
    }
}
