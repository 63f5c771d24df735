//! How pods are called: transport security, time limits, and Pause's options.

use std::time::Duration;

use crate::contract::DEFAULT_DRAIN_LIMIT;
use crate::pb::PauseRequest;
use crate::tls::Tls;

/// Slack added to the drain limit for Pause's deadline: the pod reports a drain that
/// took the whole limit only after the limit, and the reply still has to travel back.
pub const PAUSE_DEADLINE_MARGIN: Duration = Duration::from_secs(5);

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How pods are called: transport security and time limits.
///
/// ```
/// use std::time::Duration;
/// use scalar_admin::ClientConfig;
///
/// let config = ClientConfig::default().connect_timeout(Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    tls: Option<Tls>,
    connect_timeout: Duration,
    call_timeout: Option<Duration>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            tls: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            call_timeout: None,
        }
    }
}

impl ClientConfig {
    /// Uses TLS. Plaintext by default.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the time allowed to connect to a pod: TCP, TLS, HTTP/2, and one CheckPaused
    /// that proves it answers the admin interface. 5 seconds by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the deadline of every call, overriding the defaults: 10 seconds for Unpause,
    /// CheckPaused and Pause without waiting; for a waiting Pause, the drain limit
    /// (30 seconds when unset) plus a 5-second margin, so that the pod can report a
    /// drain that failed instead of the client giving up first.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// The deadline of a Pause call with these options.
    pub fn pause_deadline(&self, pause: &PauseOptions) -> Duration {
        self.call_timeout.unwrap_or_else(|| {
            if pause.wait_outstanding {
                pause.drain_limit() + PAUSE_DEADLINE_MARGIN
            } else {
                DEFAULT_CALL_TIMEOUT
            }
        })
    }

    /// The deadline of an Unpause or CheckPaused call.
    pub fn call_deadline(&self) -> Duration {
        self.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT)
    }

    /// The time allowed to connect to a pod.
    pub fn connect_deadline(&self) -> Duration {
        self.connect_timeout
    }

    pub(crate) fn tls_config(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }
}

/// How Pause behaves on each pod, and what happens when it fails on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PauseOptions {
    wait_outstanding: bool,
    max_pause_wait: Option<Duration>,
    rollback: bool,
    take_over: bool,
}

impl Default for PauseOptions {
    fn default() -> Self {
        Self {
            wait_outstanding: true,
            max_pause_wait: None,
            rollback: true,
            take_over: false,
        }
    }
}

impl PauseOptions {
    /// Whether each pod waits for its in-flight requests to finish before answering.
    /// On by default; off is the Java tool's `--no-wait`.
    pub fn wait_outstanding(mut self, wait: bool) -> Self {
        self.wait_outstanding = wait;
        self
    }

    /// Sets how long each pod waits for in-flight requests before giving up with
    /// `FAILED_PRECONDITION`, sent in whole milliseconds. Unset by default: the pod's
    /// own limit, 30 seconds.
    ///
    /// Zero means unset too, and the field is then not sent: ScalarDB reads 0 as "the
    /// default" while ScalarDL rejects it, so this way both wait their default 30 s.
    pub fn max_pause_wait(mut self, limit: Duration) -> Self {
        self.max_pause_wait = (!limit.is_zero()).then_some(limit);
        self
    }

    /// Whether a Pause that failed on any pod is undone: every pod this run may have
    /// paused is unpaused again. On by default: a half-paused cluster serves some
    /// requests and refuses others, and a backup taken then is not consistent. Pods that
    /// were paused before this run stay paused either way.
    pub fn rollback(mut self, rollback: bool) -> Self {
        self.rollback = rollback;
        self
    }

    /// Whether pods found paused are taken over: counted as paused by this run, so that a
    /// rollback (or the end of a window) unpauses them too. Off by default: ending a
    /// pause that someone else made is not this tool's business unless asked.
    pub fn take_over(mut self, take_over: bool) -> Self {
        self.take_over = take_over;
        self
    }

    pub(crate) fn rollback_enabled(&self) -> bool {
        self.rollback
    }

    pub(crate) fn takes_over(&self) -> bool {
        self.take_over
    }

    fn drain_limit(&self) -> Duration {
        self.max_pause_wait.unwrap_or(DEFAULT_DRAIN_LIMIT)
    }

    pub(crate) fn request(&self) -> PauseRequest {
        PauseRequest {
            wait_outstanding: self.wait_outstanding,
            max_pause_wait_time: self
                .max_pause_wait
                .map(|d| i64::try_from(d.as_millis().max(1)).unwrap_or(i64::MAX)),
        }
    }
}
