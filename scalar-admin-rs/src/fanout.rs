//! One call to every pod at once, and the report of what each pod answered and when.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::client::{ClientConfig, PauseOptions, PodClient};
use crate::error::{CallError, CallErrorKind, Error};
use crate::target::Target;

/// The admin calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
pub enum Operation {
    /// Close each pod's gate.
    Pause,
    /// Open each pod's gate.
    Unpause,
    /// Ask each pod whether its gate is closed.
    CheckPaused,
}

/// What a pod answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Pause or Unpause succeeded.
    Done,
    /// CheckPaused's answer.
    Paused(bool),
}

/// One pod's part in a fan-out.
#[derive(Debug, Clone)]
pub struct PodReport {
    target: Target,
    sent_at: SystemTime,
    received_at: SystemTime,
    outcome: Result<Reply, CallError>,
}

impl PodReport {
    /// The pod.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// What the pod answered, or why the call failed.
    pub fn outcome(&self) -> &Result<Reply, CallError> {
        &self.outcome
    }

    /// CheckPaused's answer, when this was a successful CheckPaused.
    pub fn paused(&self) -> Option<bool> {
        match self.outcome {
            Ok(Reply::Paused(p)) => Some(p),
            _ => None,
        }
    }

    /// UTC wall-clock time the request was handed to the connection.
    pub fn sent_at(&self) -> SystemTime {
        self.sent_at
    }

    /// UTC wall-clock time the reply (or the failure) arrived.
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// Time from sending to the reply.
    pub fn latency(&self) -> Duration {
        self.received_at
            .duration_since(self.sent_at)
            .unwrap_or_default()
    }
}

/// The result of one fan-out: every pod's outcome and the instants that matter for a
/// backup.
///
/// All timestamps come from one wall-clock reading plus a monotonic clock, so they are
/// ordered even if the system clock steps during the fan-out: every `sent_at` is at or
/// after [`started_at`](Self::started_at), every `received_at` at or after its `sent_at`,
/// and [`completed_at`](Self::completed_at) at or after every reply.
#[derive(Debug, Clone)]
pub struct Report {
    operation: Operation,
    started_at: SystemTime,
    completed_at: SystemTime,
    pods: Vec<PodReport>,
}

impl Report {
    /// Which call this was.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// Every pod, in target order.
    pub fn pods(&self) -> &[PodReport] {
        &self.pods
    }

    /// The pods whose call failed.
    pub fn failures(&self) -> impl Iterator<Item = &PodReport> {
        self.pods.iter().filter(|p| p.outcome.is_err())
    }

    /// Whether every pod's call succeeded.
    pub fn is_success(&self) -> bool {
        self.failures().next().is_none()
    }

    /// Taken right before the first request was written. For Unpause this is the
    /// instant the paused period ends ("Unpause started at").
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// Taken right after the last reply. For Pause this is the instant from which every
    /// pod is quiet ("Pause completed at").
    pub fn completed_at(&self) -> SystemTime {
        self.completed_at
    }

    /// Time between the first and the last successful reply: how far apart the pods'
    /// gates closed, as seen by the client. `None` without successful replies.
    pub fn reply_spread(&self) -> Option<Duration> {
        let ok = self.pods.iter().filter(|p| p.outcome.is_ok());
        let first = ok.clone().map(|p| p.received_at).min()?;
        let last = ok.map(|p| p.received_at).max()?;
        last.duration_since(first).ok()
    }

    /// Time from the first request to the last reply.
    pub fn wall_time(&self) -> Duration {
        self.completed_at
            .duration_since(self.started_at)
            .unwrap_or_default()
    }
}

/// A monotonic clock anchored to one wall-clock reading.
#[derive(Clone, Copy)]
struct Clock {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    fn start() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    fn now(&self) -> SystemTime {
        self.wall + self.mono.elapsed()
    }
}

struct Pod {
    target: Target,
    client: Result<PodClient, CallError>,
}

impl Pod {
    fn is_connected(&self) -> bool {
        self.client.as_ref().is_ok_and(|c| !c.is_closed())
    }
}

/// Every pod of a deployment, connected and ready to be called at once.
///
/// [`Fleet::connect`] opens a connection to each pod before any call, so that Pause
/// requests leave together and the pods' gates close within a short spread. Each
/// operation calls every pod concurrently, never stops early, and returns a [`Report`]
/// with every pod's outcome; it fails only when a pod failed, with the reports in the
/// [`Error`].
///
/// ```no_run
/// # async fn run() -> Result<(), scalar_admin::Error> {
/// use scalar_admin::{ClientConfig, Fleet, PauseOptions, parse_addresses};
///
/// let pods = parse_addresses("10.0.0.5:60051,10.0.0.6:60051")?;
/// let mut fleet = Fleet::connect(pods, ClientConfig::default()).await;
/// // On failure every pod that may have paused is unpaused again (rollback).
/// let pause = fleet.pause(PauseOptions::default()).await?;
/// println!("pause completed at {:?}", pause.completed_at());
/// let unpause = fleet.unpause().await?;
/// println!("unpause started at {:?}", unpause.started_at());
/// # Ok(()) }
/// ```
pub struct Fleet {
    config: Arc<ClientConfig>,
    pods: Vec<Pod>,
    connect_time: Duration,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field(
                "pods",
                &self
                    .pods
                    .iter()
                    .map(|p| p.target.name())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Connects to every target concurrently. Never fails: a pod that cannot be
    /// connected to is retried by the next operation, and Pause refuses to start while
    /// any pod is unreachable.
    pub async fn connect(targets: Vec<Target>, config: ClientConfig) -> Self {
        let config = Arc::new(config);
        let start = Instant::now();
        let timeout = config.connect_timeout_value();
        let clients = all_within(
            targets.iter().map(|target| {
                PodClient::open(&config, target).instrument(info_span!("connect", pod = %target))
            }),
            timeout,
            |_| {
                Err(CallError::new(CallErrorKind::Connect(format!(
                    "timed out after {timeout:?}"
                ))))
            },
        )
        .await;
        let connect_time = start.elapsed();
        for (target, client) in targets.iter().zip(&clients) {
            if let Err(e) = client {
                debug!(pod = %target, error = %e, "cannot connect");
            }
        }
        debug!(pods = targets.len(), ?connect_time, "connected");
        let pods = targets
            .into_iter()
            .zip(clients)
            .map(|(target, client)| Pod { target, client })
            .collect();
        Self {
            config,
            pods,
            connect_time,
        }
    }

    /// The pods, in the order reports list them.
    pub fn targets(&self) -> impl ExactSizeIterator<Item = &Target> {
        self.pods.iter().map(|p| &p.target)
    }

    /// How long [`Fleet::connect`] took to connect every pod.
    pub fn connect_time(&self) -> Duration {
        self.connect_time
    }

    /// Pauses every pod.
    ///
    /// Starts only when every pod is connected; otherwise nothing is sent and the error
    /// names the unreachable pods. When Pause fails on any pod, every pod is unpaused
    /// again unless [`PauseOptions::rollback`] is off, and the error carries both
    /// reports. Every pod is unpaused, not only those that answered OK: a pod whose call
    /// timed out may still have closed its gate.
    pub async fn pause(&mut self, options: PauseOptions) -> Result<Report, Error> {
        self.reconnect().await;
        if self.pods.iter().any(|p| p.client.is_err()) {
            let report = self.unsent_pause();
            warn!(
                failed = report.failures().count(),
                "pods unreachable; no Pause sent"
            );
            return Err(Error::Pause {
                pause: Box::new(report),
                rollback: None,
            });
        }
        let deadline = self.config.pause_deadline(&options);
        let request = options.request();
        let report = self
            .fan_out(Operation::Pause, deadline, move |client| async move {
                client.pause(request, deadline).await.map(|()| Reply::Done)
            })
            .await;
        if report.is_success() {
            info!(spread = ?report.reply_spread(), "pause completed");
            return Ok(report);
        }
        let rollback = if options.rollback_enabled() {
            warn!("pause failed; rolling back");
            Some(Box::new(self.unpause_report().await))
        } else {
            None
        };
        Err(Error::Pause {
            pause: Box::new(report),
            rollback,
        })
    }

    /// Like [`Fleet::pause`], but gives up when `cancel` completes first (a signal, say):
    /// the Pause calls are dropped and every pod is unpaused, since any of them may
    /// already have closed its gate. Returns [`Error::Interrupted`] with that Unpause.
    pub async fn pause_with_cancel(
        &mut self,
        options: PauseOptions,
        cancel: impl Future<Output = ()>,
    ) -> Result<Report, Error> {
        tokio::select! {
            result = self.pause(options) => return result,
            () = cancel => {}
        }
        warn!("interrupted during pause; unpausing every pod");
        Err(Error::Interrupted {
            rollback: Box::new(self.unpause_report().await),
        })
    }

    /// Unpauses every pod, reconnecting to pods that were unreachable.
    pub async fn unpause(&mut self) -> Result<Report, Error> {
        let report = self.unpause_report().await;
        if report.is_success() {
            Ok(report)
        } else {
            Err(Error::Unpause {
                unpause: Box::new(report),
            })
        }
    }

    /// Asks every pod whether it is paused.
    pub async fn check_paused(&mut self) -> Result<Report, Error> {
        let report = self.check_report().await;
        if report.is_success() {
            Ok(report)
        } else {
            Err(Error::Check {
                check: Box::new(report),
            })
        }
    }

    /// Asks every pod whether it is paused and reports, whatever the outcome.
    pub(crate) async fn check_report(&mut self) -> Report {
        let deadline = self.config.call_deadline();
        self.fan_out(Operation::CheckPaused, deadline, move |client| async move {
            client.check_paused(deadline).await.map(Reply::Paused)
        })
        .await
    }

    /// Unpauses every pod and reports, whatever the outcome.
    pub(crate) async fn unpause_report(&mut self) -> Report {
        let deadline = self.config.call_deadline();
        self.fan_out(Operation::Unpause, deadline, move |client| async move {
            client.unpause(deadline).await.map(|()| Reply::Done)
        })
        .await
    }

    /// Connects again to every pod that has no open connection.
    async fn reconnect(&mut self) {
        let config = &self.config;
        futures::future::join_all(self.pods.iter_mut().filter(|p| !p.is_connected()).map(
            |pod| async move {
                pod.client = PodClient::connect(config, &pod.target)
                    .instrument(info_span!("connect", pod = %pod.target))
                    .await;
            },
        ))
        .await;
    }

    /// A Pause report for when some pods are unreachable: their connection error, and
    /// `NotSent` for the rest.
    fn unsent_pause(&self) -> Report {
        let now = SystemTime::now();
        let pods = self
            .pods
            .iter()
            .map(|p| PodReport {
                target: p.target.clone(),
                sent_at: now,
                received_at: now,
                outcome: match &p.client {
                    Ok(_) => Err(CallError::new(CallErrorKind::NotSent)),
                    Err(e) => Err(e.clone()),
                },
            })
            .collect();
        Report {
            operation: Operation::Pause,
            started_at: now,
            completed_at: now,
            pods,
        }
    }

    /// Calls every pod at once and waits for all of them.
    ///
    /// Pods without an open connection (unreachable before, or restarted since) are
    /// connected first, inside their own call, so that one delays nobody else.
    async fn fan_out<F, Fut>(&mut self, operation: Operation, deadline: Duration, call: F) -> Report
    where
        F: Fn(PodClient) -> Fut,
        Fut: Future<Output = Result<Reply, CallError>>,
    {
        let config = &self.config;
        let call = &call;
        let clock = Clock::start();
        let calls = self.pods.iter().map(|pod| {
            let target = &pod.target;
            let client = pod.client.clone().ok().filter(|_| pod.is_connected());
            async move {
                let client = match client {
                    Some(c) => Ok(c),
                    None => PodClient::connect(config, target).await,
                };
                let sent_at = clock.now();
                let outcome = match &client {
                    Ok(c) => call(c.clone()).await,
                    Err(e) => Err(e.clone()),
                };
                let received_at = clock.now();
                match &outcome {
                    Ok(reply) => debug!(?reply, latency = ?received_at.duration_since(sent_at).unwrap_or_default(), "ok"),
                    Err(e) => debug!(error = %e, "failed"),
                }
                let report = PodReport {
                    target: target.clone(),
                    sent_at,
                    received_at,
                    outcome,
                };
                (Some(client), report)
            }
            .instrument(info_span!("call", pod = %pod.target, op = ?operation))
        });
        let results = all_within(calls, deadline, |i| {
            // Still waiting at the deadline: the request may have reached the pod.
            let now = clock.now();
            let report = PodReport {
                target: self.pods[i].target.clone(),
                sent_at: clock.wall,
                received_at: now,
                outcome: Err(CallError::new(CallErrorKind::Timeout(deadline))),
            };
            (None, report)
        })
        .await;
        let completed_at = clock.now();
        let mut reports = Vec::with_capacity(results.len());
        for (pod, (client, report)) in self.pods.iter_mut().zip(results) {
            // Keep a new connection, or the newest error when there was none before.
            if let Some(client) = client
                && (client.is_ok() || pod.client.is_err())
            {
                pod.client = client;
            }
            reports.push(report);
        }
        Report {
            operation,
            started_at: clock.wall,
            completed_at,
            pods: reports,
        }
    }
}

/// Runs every future at once and returns their outputs in order; those still pending
/// when `deadline` has passed are dropped (cancelling their calls) and get `expired(i)`.
///
/// One timer for the whole set: a timer per pod would cost a timer-wheel entry, and
/// often a wake-up of the I/O driver, for each of a thousand pods.
async fn all_within<F: Future>(
    futures: impl IntoIterator<Item = F>,
    deadline: Duration,
    expired: impl Fn(usize) -> F::Output,
) -> Vec<F::Output> {
    let mut pending: FuturesUnordered<_> = futures
        .into_iter()
        .enumerate()
        .map(|(i, f)| async move { (i, f.await) })
        .collect();
    let mut outputs: Vec<Option<F::Output>> = std::iter::repeat_with(|| None)
        .take(pending.len())
        .collect();
    let timer = tokio::time::sleep(deadline);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            biased;
            next = pending.next() => match next {
                Some((i, output)) => outputs[i] = Some(output),
                None => break,
            },
            () = &mut timer => break,
        }
    }
    drop(pending);
    outputs
        .into_iter()
        .enumerate()
        .map(|(i, output)| output.unwrap_or_else(|| expired(i)))
        .collect()
}

/// JSON shapes for reports: timestamps as microseconds since the Unix epoch (UTC),
/// durations in microseconds, so that scripts need no date parsing.
#[cfg(feature = "serde")]
mod json {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::ser::{Serialize, SerializeStruct, Serializer};

    use super::{PodReport, Reply, Report};
    use crate::error::{CallErrorKind, code_name};

    /// Microseconds since the Unix epoch; negative before it.
    pub(super) fn micros(t: SystemTime) -> i64 {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_micros() as i64,
            Err(e) => -(e.duration().as_micros() as i64),
        }
    }

    fn us(d: Duration) -> u64 {
        d.as_micros() as u64
    }

    impl Serialize for PodReport {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("PodReport", 8)?;
            st.serialize_field("pod", self.target.name())?;
            st.serialize_field(
                "address",
                &format!("{}:{}", self.target.host(), self.target.port()),
            )?;
            st.serialize_field("ok", &self.outcome.is_ok())?;
            match &self.outcome {
                Ok(Reply::Paused(p)) => st.serialize_field("paused", p)?,
                Ok(Reply::Done) => st.skip_field("paused")?,
                Err(e) => {
                    let kind = match e.kind() {
                        CallErrorKind::Connect(_) => "connect",
                        CallErrorKind::Timeout(_) => "timeout",
                        CallErrorKind::Status { .. } => "status",
                        CallErrorKind::Transport(_) => "transport",
                        CallErrorKind::NotSent => "not_sent",
                    };
                    st.serialize_field("error_kind", kind)?;
                    st.serialize_field("code", &e.code().map(code_name))?;
                    st.serialize_field("error", &e.to_string())?;
                }
            }
            let (sent, received) = (micros(self.sent_at), micros(self.received_at));
            st.serialize_field("sent_at_us", &sent)?;
            st.serialize_field("received_at_us", &received)?;
            // From the rounded timestamps, so that the three fields agree exactly.
            st.serialize_field("latency_us", &(received - sent))?;
            st.end()
        }
    }

    impl Serialize for Report {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("Report", 7)?;
            st.serialize_field("operation", &self.operation)?;
            st.serialize_field("ok", &self.is_success())?;
            st.serialize_field("started_at_us", &micros(self.started_at))?;
            st.serialize_field("completed_at_us", &micros(self.completed_at))?;
            st.serialize_field("wall_time_us", &us(self.wall_time()))?;
            st.serialize_field("reply_spread_us", &self.reply_spread().map(us))?;
            st.serialize_field("pods", &self.pods)?;
            st.end()
        }
    }
}
