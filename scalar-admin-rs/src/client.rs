//! How pods are called: transport security, time limits, and Pause's options.

use std::time::Duration;

use tokio::time::Instant;

use crate::contract::DEFAULT_DRAIN_LIMIT;
use crate::pb::PauseRequest;
use crate::tls::Tls;

/// Slack added to the drain limit for Pause's deadline: the pod reports a drain that
/// took the whole limit only after the limit, and the reply still has to travel back.
pub const PAUSE_DEADLINE_MARGIN: Duration = Duration::from_secs(5);

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_ROLLBACK_BUDGET: Duration = Duration::from_secs(15);
const DEFAULT_ROLLBACK_WATCH: Duration = Duration::from_secs(1);
/// Bounds of a pod connection's `TCP_USER_TIMEOUT` ([`ClientConfig::user_timeout`]).
const MIN_USER_TIMEOUT: Duration = Duration::from_millis(250);
const MAX_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The instant `after` from now, or a far-future one when that does not fit an
/// `Instant` (`Duration::MAX` means "no limit", not a panic).
pub(crate) fn deadline_in(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

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
    rollback_budget: Duration,
    rollback_watch: Duration,
    fresh_for: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            tls: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            call_timeout: None,
            rollback_budget: DEFAULT_ROLLBACK_BUDGET,
            rollback_watch: DEFAULT_ROLLBACK_WATCH,
            fresh_for: crate::fleet::FRESH_FOR,
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

    /// Sets how long a rollback may take, all rounds together: Unpause to every pod this
    /// run may have paused (on a fresh connection where the last call timed out or
    /// broke), then CheckPaused after a short settling delay and again, with a doubling
    /// backoff up to 1 second, while a pod still reports paused. 15 seconds by default:
    /// half of Kubernetes' default termination grace period, so that a rollback started
    /// by SIGTERM ends before the SIGKILL. A Pause still unanswered when the rollback
    /// starts is waited for within it, until 2 s (at most half of it) are left.
    pub fn rollback_budget(mut self, budget: Duration) -> Self {
        self.rollback_budget = budget;
        self
    }

    /// Sets how long a rollback keeps checking a pod whose Pause outcome is unknown (a
    /// time-out, a broken connection) after it was seen unpaused: a server may keep
    /// running a Pause handler after the client gave up and close the gate after the
    /// rollback's Unpause, and a check in this period catches it and unpauses again.
    /// 1 second by default; within [`rollback_budget`](Self::rollback_budget). Every pod
    /// connection's `TCP_USER_TIMEOUT` is three quarters of it (250 ms to 30 s).
    pub fn rollback_watch(mut self, watch: Duration) -> Self {
        self.rollback_watch = watch;
        self
    }

    /// Sets how old the pods' last answers may be for a Pause to decide from them alone;
    /// older ones are refreshed with a CheckPaused to every pod first.
    /// [`FRESH_FOR`](crate::FRESH_FOR) (1 second) by default; zero always checks.
    pub fn fresh_for(mut self, age: Duration) -> Self {
        self.fresh_for = age;
        self
    }

    /// How old an answer a Pause may decide from.
    pub(crate) fn fresh_for_value(&self) -> Duration {
        self.fresh_for
    }

    /// How long a rollback may take.
    pub(crate) fn rollback_budget_value(&self) -> Duration {
        self.rollback_budget
    }

    /// How long a rollback watches a pod in doubt.
    pub(crate) fn rollback_watch_value(&self) -> Duration {
        self.rollback_watch
    }

    /// The `TCP_USER_TIMEOUT` of every pod connection: three quarters of the rollback
    /// watch, between 250 ms and 30 s. Below the watch, so that a request the kernel
    /// still retransmits when a rollback starts (a partition) is given up before the
    /// watch ends, not delivered minutes later.
    pub(crate) fn user_timeout(&self) -> Duration {
        let watch = self.rollback_watch;
        (watch - watch / 4).clamp(MIN_USER_TIMEOUT, MAX_USER_TIMEOUT)
    }

    /// The deadline of a Pause call with these options.
    pub fn pause_deadline(&self, pause: &PauseOptions) -> Duration {
        self.call_timeout.unwrap_or_else(|| {
            if pause.wait_outstanding {
                pause.drain_limit().saturating_add(PAUSE_DEADLINE_MARGIN)
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

    /// How long a rollback waits for the answer of a Pause still in flight when the call
    /// is given up (its deadline, a cancel): the pods' wait limit (none without
    /// `wait_outstanding`) plus [`PAUSE_DEADLINE_MARGIN`], so that a handler that
    /// starts late (queued on a busy executor) still answers within it. The rollback
    /// keeps this within its own budget.
    pub(crate) fn answer_wait(&self) -> Duration {
        let limit = if self.wait_outstanding {
            self.drain_limit()
        } else {
            Duration::ZERO
        };
        limit.saturating_add(PAUSE_DEADLINE_MARGIN)
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
