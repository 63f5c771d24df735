//! What clients and servers of the Scalar Admin interface agree on: the calls, the status
//! codes, the server's default drain limit and the reasons its errors carry.
//!
//! Neither side owns these: the wire client ([`Fleet`](crate::Fleet)) reads them to judge
//! a pod's answer, and the server gate (feature `server`) writes them. The values follow
//! `proto/admin.proto` and the behaviour of Scalar's own servers (ScalarDB, ScalarDL).

use std::fmt;
use std::time::Duration;

/// How long a pod waits for in-flight requests when Pause leaves `max_pause_wait_time`
/// unset (or 0): 30 seconds, in ScalarDB and ScalarDL alike.
pub const DEFAULT_DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The largest reply message this crate accepts: 1 KiB.
///
/// The admin replies are `google.protobuf.Empty` (0 bytes) and `CheckPausedResponse`
/// (2 bytes). 1 KiB leaves room for the protocol to grow (a status string, a count of
/// requests in flight, a few more fields) 500 times over, while a fan-out to 1000 pods
/// holds at most about 1 MB of replies, where gRPC's default 4 MiB limit would let
/// those pods make the client hold 4 GB. A message over it is a broken or hostile peer.
pub const MAX_REPLY_SIZE: usize = 1024;

/// `google.rpc.ErrorInfo` reasons that Scalar servers attach to a failed Pause, and what
/// each says about the gate.
pub mod reason {
    /// The drain limit passed; the gate was reopened.
    pub const TIMED_OUT: &str = "TIMED_OUT";
    /// The drain limit passed, but an earlier Pause had closed the gate and it stays
    /// closed: the pod is still paused, by someone else.
    pub const TIMED_OUT_STILL_PAUSED: &str = "TIMED_OUT_STILL_PAUSED";
    /// Another waiting Pause holds the gate and was still draining when this one gave up.
    pub const PAUSE_IN_PROGRESS: &str = "PAUSE_IN_PROGRESS";
    /// An Unpause reopened the gate while this Pause was waiting.
    pub const GATE_OPEN: &str = "GATE_OPEN";
}

/// The `ErrorInfo` domain of the errors this crate's gate sends.
pub const GATE_ERROR_DOMAIN: &str = "scalar-admin.gate";

/// The admin calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Operation {
    /// Connecting to a pod, with one CheckPaused to prove it answers the interface.
    Connect,
    /// Close each pod's gate.
    Pause,
    /// Open each pod's gate.
    Unpause,
    /// Ask each pod whether its gate is closed.
    CheckPaused,
}

impl Operation {
    /// The HTTP/2 path of the call.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Operation::Pause => "/rpc.Admin/Pause",
            Operation::Unpause => "/rpc.Admin/Unpause",
            Operation::Connect | Operation::CheckPaused => "/rpc.Admin/CheckPaused",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Connect => "connect",
            Operation::Pause => "pause",
            Operation::Unpause => "unpause",
            Operation::CheckPaused => "check",
        })
    }
}

/// A gRPC status code.
///
/// Displayed by its canonical name (`FAILED_PRECONDITION`), as gRPC tools print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Code {
    /// Not an error.
    Ok = 0,
    /// The operation was cancelled.
    Cancelled = 1,
    /// Unknown error, or a reply that could not be read as a status.
    Unknown = 2,
    /// The client sent an invalid argument.
    InvalidArgument = 3,
    /// The deadline passed before the operation completed.
    DeadlineExceeded = 4,
    /// Something was not found (for an admin call: the path, so not an admin server).
    NotFound = 5,
    /// Something already exists.
    AlreadyExists = 6,
    /// The caller may not do this.
    PermissionDenied = 7,
    /// A resource ran out, or a reply was too large.
    ResourceExhausted = 8,
    /// The system is not in a state for the operation (a Pause that could not drain).
    FailedPrecondition = 9,
    /// The operation was aborted (another Pause was in progress).
    Aborted = 10,
    /// Out of range.
    OutOfRange = 11,
    /// The server does not implement the call.
    Unimplemented = 12,
    /// An internal error, or a reply that broke the protocol.
    Internal = 13,
    /// The service is unavailable (down, or paused).
    Unavailable = 14,
    /// Data was lost.
    DataLoss = 15,
    /// The caller is not authenticated.
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code with this number; `None` outside 0 to 16.
    pub fn from_i32(value: i32) -> Option<Code> {
        usize::try_from(value)
            .ok()
            .and_then(|i| Code::ALL.get(i))
            .copied()
    }

    /// The code's number on the wire.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The canonical upper-case name.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The gRPC code for an HTTP status other than 200, as gRPC's
    /// `doc/http-grpc-status-mapping.md` gives it: what a client reports when a proxy
    /// answers instead of a gRPC server.
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_by_number() {
        for (i, code) in Code::ALL.iter().enumerate() {
            assert_eq!(code.as_i32(), i as i32);
            assert_eq!(Code::from_i32(i as i32), Some(*code));
        }
        assert_eq!(Code::from_i32(17), None);
        assert_eq!(Code::from_i32(-1), None);
        assert_eq!(Code::FailedPrecondition.to_string(), "FAILED_PRECONDITION");
    }

    #[test]
    fn http_statuses_map_as_the_grpc_doc_says() {
        assert_eq!(Code::from_http_status(503), Code::Unavailable);
        assert_eq!(Code::from_http_status(404), Code::Unimplemented);
        assert_eq!(Code::from_http_status(401), Code::Unauthenticated);
        assert_eq!(Code::from_http_status(418), Code::Unknown);
    }
}
