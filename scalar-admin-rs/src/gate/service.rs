//! The admin interface over a [`Gate`]: what `Gate::admin_server` serves.

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::{Drain, DrainError, Gate};
use crate::contract::GATE_ERROR_DOMAIN;
use crate::pb::admin_server::Admin;
use crate::pb::{CheckPausedResponse, PauseRequest, google_rpc};

/// The admin interface over a [`Gate`].
#[derive(Debug, Clone)]
pub struct AdminService {
    gate: Gate,
}

impl AdminService {
    pub(super) fn new(gate: Gate) -> Self {
        Self { gate }
    }
}

impl From<DrainError> for Status {
    /// `FAILED_PRECONDITION` for a drain that timed out, `ABORTED` for one an Unpause
    /// ended, each with an `ErrorInfo` reason in `grpc-status-details-bin`, as ScalarDL
    /// sends them.
    fn from(e: DrainError) -> Self {
        let code = match e {
            DrainError::TimedOut { .. } => tonic::Code::FailedPrecondition,
            DrainError::Unpaused { .. } => tonic::Code::Aborted,
        };
        let message = e.to_string();
        let details = google_rpc::Status::with_error_info(
            code as i32,
            &message,
            e.reason(),
            GATE_ERROR_DOMAIN,
        );
        Status::with_details(
            code,
            message,
            prost::Message::encode_to_vec(&details).into(),
        )
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn pause(&self, request: Request<PauseRequest>) -> Result<Response<()>, Status> {
        let drain = Drain::from_request(request.get_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Dropped with the request if the caller goes away: the gate then reopens.
        match self.gate.pause(drain).await {
            Ok(()) => {
                info!(?drain, "paused");
                Ok(Response::new(()))
            }
            Err(e) => {
                warn!(error = %e, "pause failed");
                Err(e.into())
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
