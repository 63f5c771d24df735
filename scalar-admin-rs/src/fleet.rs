//! Every pod of a deployment, connected and called at once.
//!
//! [`Fleet::connect`] opens one connection per pod and learns, from one CheckPaused
//! (the probe), whether each pod answers the admin interface and whether it is already
//! paused. Each operation then calls every pod concurrently, never stops early, and
//! returns a [`Report`]. A Pause that fails is undone by the rule in `rollback`: only the
//! pauses this fleet made are ended.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::client::{ClientConfig, PauseOptions};
use crate::contract::Operation;
use crate::dial::dial;
use crate::error::{CallError, CallErrorKind, ConnectFailure, Error};
use crate::pb::{CheckPausedResponse, PauseRequest};
use crate::report::{KeptPod, PodReport, Reply, Report, Rollback};
use crate::rollback::{self, Before, Hold};
use crate::target::Target;
use crate::wire::Connection;

/// A monotonic clock anchored to one wall-clock reading, so that a report's timestamps
/// stay ordered even if the system clock steps.
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

    /// A monotonic instant on this clock's wall time.
    fn at(&self, instant: Instant) -> SystemTime {
        self.wall + instant.saturating_duration_since(self.mono)
    }
}

struct Pod {
    target: Target,
    connection: Result<Connection, CallError>,
    /// Whether the pod reported paused before this fleet paused it: from the probe, and
    /// from CheckPaused while this fleet holds no pause on it.
    found_paused: bool,
    /// Whether a Pause from this fleet may have left for the pod since this fleet last
    /// unpaused it. Set by the call itself, so that it survives a call that is dropped
    /// (a signal) or panics.
    written: AtomicBool,
    /// What this fleet holds on the pod after its last Pause; `None` while a Pause runs
    /// or after one was abandoned, when `written` decides.
    hold: Option<Hold>,
    /// Whether this fleet held the pod paused when the running (or last) Pause started.
    held_before: bool,
}

impl Pod {
    fn live(&self) -> Option<&Connection> {
        self.connection.as_ref().ok().filter(|c| !c.is_closed())
    }

    fn hold(&self, take_over: bool) -> Hold {
        self.hold.unwrap_or_else(|| {
            let written = self.written.load(Ordering::Acquire);
            rollback::after_pause(written, None, self.before(), take_over)
        })
    }

    /// Whose pause the gate held when the running (or last) Pause started.
    fn before(&self) -> Before {
        if self.held_before {
            Before::Ours
        } else if self.found_paused {
            Before::Others
        } else {
            Before::Open
        }
    }
}

/// One admin call, with its request.
#[derive(Debug, Clone, Copy)]
enum Call {
    Pause(PauseRequest),
    Unpause,
    CheckPaused,
}

impl Call {
    fn operation(self) -> Operation {
        match self {
            Call::Pause(_) => Operation::Pause,
            Call::Unpause => Operation::Unpause,
            Call::CheckPaused => Operation::CheckPaused,
        }
    }

    /// Sends the call; returns when the request reached the kernel, and the outcome.
    async fn send(
        self,
        connection: &Connection,
        deadline: Instant,
        writing: impl FnOnce(),
    ) -> (Option<Instant>, Result<Reply, CallError>) {
        let op = self.operation();
        match self {
            Call::Pause(request) => {
                let (sent, r) = connection
                    .call::<_, ()>(op, &request, deadline, writing)
                    .await;
                (sent, r.map(|()| Reply::Done))
            }
            Call::Unpause => {
                let (sent, r) = connection.call::<_, ()>(op, &(), deadline, writing).await;
                (sent, r.map(|()| Reply::Done))
            }
            Call::CheckPaused => {
                let (sent, r) = connection
                    .call::<_, CheckPausedResponse>(op, &(), deadline, writing)
                    .await;
                (sent, r.map(|r| Reply::Paused(r.paused)))
            }
        }
    }
}

/// A pod connected and probed.
struct Probed {
    connection: Connection,
    /// Whether it reported paused.
    paused: bool,
    /// When the probe was handed to the kernel: the client's part of connecting done.
    sent: Option<Instant>,
}

/// Connects to a pod and probes it: one CheckPaused proves it answers the admin
/// interface (a port that accepts TCP but is no admin server is found before any Pause
/// is sent) and tells whether it is already paused. The probe is queued right after the
/// HTTP/2 preface, which waits for nothing from the pod, and leaves with it
/// (`wire::Stamped`).
async fn connect_pod(
    config: &ClientConfig,
    target: &Target,
    deadline: Instant,
) -> Result<Probed, CallError> {
    let connection = dial(config, target).await?;
    match Call::CheckPaused.send(&connection, deadline, || {}).await {
        (sent, Ok(reply)) => Ok(Probed {
            connection,
            paused: reply == Reply::Paused(true),
            sent,
        }),
        (_, Err(e)) => Err(CallError::connect(ConnectFailure::Probe).with_source(e)),
    }
}

/// What one pod's call produced: the report, and a connection made on the way (with the
/// probe's answer, when it was probed).
struct Outcome {
    report: PodReport,
    fresh: Option<(Connection, Option<bool>)>,
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
/// for (pod, error) in fleet.unreachable() {
///     eprintln!("{pod}: {error}");
/// }
/// // On failure every pod this run may have paused is unpaused again (rollback).
/// let pause = fleet.pause(PauseOptions::default()).await?;
/// println!("pause completed at {:?}", pause.completed_at());
/// let unpause = fleet.unpause().await?;
/// println!("unpause started at {:?}", unpause.started_at());
/// # Ok(()) }
/// ```
pub struct Fleet {
    config: ClientConfig,
    pods: Vec<Pod>,
    connect: Report,
    /// The last Pause's take-over setting, which the rollback rule needs.
    take_over: bool,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field(
                "pods",
                &self.targets().map(Target::name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Connects to every target concurrently, within the connect timeout, and asks each
    /// whether it is paused.
    ///
    /// Never fails: [`connect_report`](Self::connect_report) says which pods could not be
    /// reached and whether each of the others is already paused, so a caller can decide
    /// before anything is paused. An unreachable pod is retried by the next operation,
    /// and Pause refuses to start while any pod is unreachable.
    pub async fn connect(targets: Vec<Target>, config: ClientConfig) -> Self {
        let clock = Clock::start();
        let deadline = Instant::now() + config.connect_deadline();
        let config_ref = &config;
        let results = all_within(
            targets.iter().map(|target| {
                async move {
                    let started = clock.now();
                    let result = connect_pod(config_ref, target, deadline).await;
                    // "Sent" is when the probe left: the client's part of connecting.
                    let sent_at = match &result {
                        Ok(Probed { sent: Some(at), .. }) => clock.at(*at),
                        _ => started,
                    };
                    (sent_at, clock.now(), result)
                }
                .instrument(info_span!("connect", pod = %target))
            }),
            deadline,
            |_| {
                let failure = ConnectFailure::TimedOut(config_ref.connect_deadline());
                (clock.wall, clock.now(), Err(CallError::connect(failure)))
            },
        )
        .await;
        let mut pods = Vec::with_capacity(targets.len());
        let mut reports = Vec::with_capacity(targets.len());
        for (target, (sent_at, received_at, result)) in targets.into_iter().zip(results) {
            let (connection, found_paused, outcome) = match result {
                Ok(Probed {
                    connection, paused, ..
                }) => (Ok(connection), paused, Ok(Reply::Paused(paused))),
                Err(e) => {
                    debug!(pod = %target, error = %e.chain(), "cannot connect");
                    (Err(e.clone()), false, Err(e))
                }
            };
            reports.push(PodReport {
                target: target.clone(),
                sent_at,
                received_at,
                outcome,
            });
            pods.push(Pod {
                target,
                connection,
                found_paused,
                written: AtomicBool::new(false),
                hold: Some(Hold::Nothing),
                held_before: false,
            });
        }
        let connect = Report {
            operation: Operation::Connect,
            started_at: clock.wall,
            completed_at: clock.now(),
            pods: reports,
        };
        debug!(pods = pods.len(), time = ?connect.wall_time(), "connected");
        Self {
            config,
            pods,
            connect,
            take_over: false,
        }
    }

    /// The pods, in the order reports list them.
    pub fn targets(&self) -> impl ExactSizeIterator<Item = &Target> {
        self.pods.iter().map(|p| &p.target)
    }

    /// What [`Fleet::connect`] found: for each pod, whether it is paused
    /// ([`Reply::Paused`]), or why it could not be reached.
    pub fn connect_report(&self) -> &Report {
        &self.connect
    }

    /// The pods that could not be reached when connecting, and why.
    pub fn unreachable(&self) -> impl Iterator<Item = (&Target, &CallError)> {
        self.connect
            .failures()
            .filter_map(|p| Some((p.target(), p.error()?)))
    }

    /// The pods that reported paused when connecting: someone else's pause, which a
    /// rollback leaves alone.
    pub fn already_paused(&self) -> impl Iterator<Item = &Target> {
        self.connect
            .pods()
            .iter()
            .filter(|p| p.paused() == Some(true))
            .map(PodReport::target)
    }

    /// How long [`Fleet::connect`] took.
    pub fn connect_time(&self) -> Duration {
        self.connect.wall_time()
    }

    /// The pods a Pause of this fleet may hold paused: what [`release`](Self::release)
    /// would unpause.
    pub fn held(&self) -> impl Iterator<Item = &Target> {
        self.pods
            .iter()
            .filter(|p| p.hold(self.take_over) == Hold::Paused)
            .map(|p| &p.target)
    }

    /// Pauses every pod.
    ///
    /// Starts only when every pod is connected; otherwise nothing is sent and the error
    /// names the unreachable pods. When Pause fails on any pod, the pods this run may
    /// have paused are unpaused again ([`release`](Self::release)) unless
    /// [`PauseOptions::rollback`] is off, and the error says what became of each.
    pub async fn pause(&mut self, options: PauseOptions) -> Result<Report, Error> {
        self.reconnect().await;
        if self.pods.iter().any(|p| p.connection.is_err()) {
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
        self.take_over = options.takes_over();
        for pod in &mut self.pods {
            pod.held_before = pod.hold.take() == Some(Hold::Paused);
        }
        let deadline = self.config.pause_deadline(&options);
        let all: Vec<usize> = (0..self.pods.len()).collect();
        let report = self
            .fan_out(Call::Pause(options.request()), deadline, &all)
            .await;
        for (pod, pod_report) in self.pods.iter_mut().zip(&report.pods) {
            let written = pod.written.load(Ordering::Acquire);
            let before = pod.before();
            pod.hold = Some(rollback::after_pause(
                written,
                Some(&pod_report.outcome),
                before,
                self.take_over,
            ));
        }
        if report.is_success() {
            info!(spread = ?report.reply_spread(), "pause completed");
            return Ok(report);
        }
        let rollback = if options.rollback_enabled() {
            warn!("pause failed; rolling back");
            self.release().await
        } else {
            Rollback {
                unpause: None,
                kept: self.kept(),
                left: self.held().cloned().collect(),
            }
        };
        Err(Error::Pause {
            pause: Box::new(report),
            rollback: Some(Box::new(rollback)),
        })
    }

    /// Like [`Fleet::pause`], but gives up when `cancel` completes first (a signal, a
    /// timer, any future): the Pause calls are dropped and the pods this run may have
    /// paused are unpaused again, since a call in flight may already have closed a gate.
    /// A cancel before any Pause request left changes nothing. Returns
    /// [`Error::Interrupted`] with what the rollback did.
    pub async fn pause_with_cancel<C: Future>(
        &mut self,
        options: PauseOptions,
        cancel: C,
    ) -> Result<Report, Error> {
        let finished = tokio::select! {
            // A cancel that has already fired wins before anything is sent.
            biased;
            _ = cancel => None,
            result = self.pause(options) => Some(result),
        };
        if let Some(result) = finished {
            return result;
        }
        warn!("interrupted during pause; undoing what this run paused");
        Err(Error::Interrupted {
            rollback: Box::new(self.release().await),
        })
    }

    /// Undoes this fleet's pause: unpauses every pod a Pause of this fleet may have
    /// paused, and leaves the pods whose pause is someone else's as they were found
    /// (unless the Pause took them over). Safe to call at any time, and again: a pod is
    /// unpaused only while this fleet may hold it.
    pub async fn release(&mut self) -> Rollback {
        let take_over = self.take_over;
        let mut ours = Vec::new();
        for (i, pod) in self.pods.iter_mut().enumerate() {
            let hold = pod.hold(take_over);
            pod.hold = Some(hold);
            if hold == Hold::Paused {
                ours.push(i);
            }
        }
        let unpause = if ours.is_empty() {
            None
        } else {
            let deadline = self.config.call_deadline();
            Some(self.fan_out(Call::Unpause, deadline, &ours).await)
        };
        Rollback {
            unpause,
            kept: self.kept(),
            left: Vec::new(),
        }
    }

    fn kept(&self) -> Vec<KeptPod> {
        self.pods
            .iter()
            .filter_map(|p| match p.hold(self.take_over) {
                Hold::NotOurs(why) => Some(KeptPod {
                    target: p.target.clone(),
                    why,
                }),
                _ => None,
            })
            .collect()
    }

    /// Unpauses every pod, reconnecting to pods that were unreachable. Unlike
    /// [`release`](Self::release), this ends every pause, whoever made it: it is the
    /// operator's explicit Unpause.
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
        let all: Vec<usize> = (0..self.pods.len()).collect();
        let deadline = self.config.call_deadline();
        self.fan_out(Call::CheckPaused, deadline, &all).await
    }

    /// Unpauses every pod and reports, whatever the outcome.
    pub(crate) async fn unpause_report(&mut self) -> Report {
        let all: Vec<usize> = (0..self.pods.len()).collect();
        let deadline = self.config.call_deadline();
        self.fan_out(Call::Unpause, deadline, &all).await
    }

    /// Connects again to every pod that has no open connection.
    async fn reconnect(&mut self) {
        let config = &self.config;
        let deadline = Instant::now() + config.connect_deadline();
        let results = all_within(
            self.pods.iter().map(|pod| async move {
                match pod.live() {
                    Some(_) => None,
                    None => Some(
                        connect_pod(config, &pod.target, deadline)
                            .instrument(info_span!("connect", pod = %pod.target))
                            .await,
                    ),
                }
            }),
            deadline,
            |_| {
                let failure = ConnectFailure::TimedOut(config.connect_deadline());
                Some(Err(CallError::connect(failure)))
            },
        )
        .await;
        for (pod, result) in self.pods.iter_mut().zip(results) {
            match result {
                None => {}
                Some(Ok(probed)) => {
                    pod.connection = Ok(probed.connection);
                    pod.learn(probed.paused);
                }
                Some(Err(e)) => pod.connection = Err(e),
            }
        }
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
                outcome: match &p.connection {
                    Ok(_) => Err(CallError::new(Operation::Pause, CallErrorKind::NotSent)),
                    Err(e) => Err(e.clone().during(Operation::Pause)),
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

    /// Calls the pods at `which` (indices) at once and waits for all of them, or for the
    /// deadline. The report lists them in index order.
    ///
    /// A pod without an open connection (unreachable before, or restarted since) is
    /// connected first, inside its own call, so that it delays nobody else. A request
    /// the pod did not process (refused stream, or after its GOAWAY) is sent once more on
    /// a fresh connection within the same deadline. A panic in one pod's call becomes
    /// that pod's failure: the others still finish, and the rollback rule still applies.
    async fn fan_out(&mut self, call: Call, limit: Duration, which: &[usize]) -> Report {
        let operation = call.operation();
        let clock = Clock::start();
        let deadline = clock.mono + limit;
        let config = &self.config;
        let pods = &self.pods;
        let calls = which.iter().map(|&i| {
            let pod = &pods[i];
            let span = info_span!("call", pod = %pod.target, op = %operation);
            // Boxed: an `async` block that captures a future and awaits it keeps room for
            // it twice, and at a thousand pods that is megabytes.
            let call = Box::pin(AssertUnwindSafe(
                call_pod(config, pod, call, deadline, clock).instrument(span),
            ));
            async move {
                match call.catch_unwind().await {
                    Ok(outcome) => outcome,
                    Err(panic) => {
                        let message = panic_message(&*panic);
                        warn!(pod = %pod.target, %message, "the call panicked");
                        let kind = CallErrorKind::Panicked(message);
                        Outcome {
                            report: PodReport {
                                target: pod.target.clone(),
                                sent_at: clock.wall,
                                received_at: clock.now(),
                                outcome: Err(CallError::new(operation, kind)),
                            },
                            fresh: None,
                        }
                    }
                }
            }
        });
        let results = all_within(calls, deadline, |k| {
            // Still waiting at the deadline: the request may have reached the pod.
            Outcome {
                report: PodReport {
                    target: pods[which[k]].target.clone(),
                    sent_at: clock.wall,
                    received_at: clock.now(),
                    outcome: Err(CallError::new(operation, CallErrorKind::Timeout(limit))),
                },
                fresh: None,
            }
        })
        .await;
        let completed_at = clock.now();
        let mut reports = Vec::with_capacity(results.len());
        for (&i, outcome) in which.iter().zip(results) {
            let pod = &mut self.pods[i];
            if let Some((connection, probed)) = outcome.fresh {
                pod.connection = Ok(connection);
                if let Some(paused) = probed {
                    pod.learn(paused);
                }
            } else if let Err(e) = &outcome.report.outcome
                && e.is_connect()
            {
                pod.connection = Err(e.clone());
            }
            match (call, &outcome.report.outcome) {
                (Call::Unpause, Ok(_)) => {
                    pod.written.store(false, Ordering::Release);
                    pod.hold = Some(Hold::Nothing);
                }
                (Call::CheckPaused, Ok(Reply::Paused(paused))) => pod.learn(*paused),
                _ => {}
            }
            reports.push(outcome.report);
        }
        Report {
            operation,
            started_at: clock.wall,
            completed_at,
            pods: reports,
        }
    }
}

impl Pod {
    /// Records what the pod said of its gate, as the state found, unless this fleet may
    /// hold it paused (then the answer is this fleet's own pause).
    fn learn(&mut self, paused: bool) {
        if self.hold != Some(Hold::Paused) && !self.written.load(Ordering::Acquire) {
            self.found_paused = paused;
        }
    }
}

/// One pod's call: connect if needed, send, and once more on a fresh connection if the
/// pod did not process the request.
async fn call_pod(
    config: &ClientConfig,
    pod: &Pod,
    call: Call,
    deadline: Instant,
    clock: Clock,
) -> Outcome {
    let operation = call.operation();
    let mut fresh = None;
    let finish = |fresh, sent_at, outcome: Result<Reply, CallError>| {
        let received_at = clock.now();
        match &outcome {
            Ok(reply) => {
                debug!(?reply, latency = ?received_at.duration_since(sent_at).unwrap_or_default(), "ok")
            }
            Err(e) => debug!(error = %e.chain(), "failed"),
        }
        Outcome {
            report: PodReport {
                target: pod.target.clone(),
                sent_at,
                received_at,
                outcome,
            },
            fresh,
        }
    };
    let connection = match pod.live() {
        Some(c) => c.clone(),
        // Boxed, as the retry below: connecting is the rare path, and inline it would
        // make every pod's call future several kilobytes.
        None => match Box::pin(connect_pod(config, &pod.target, deadline)).await {
            Ok(probed) => {
                fresh = Some((probed.connection.clone(), Some(probed.paused)));
                probed.connection
            }
            Err(e) => return finish(None, clock.now(), Err(e.during(operation))),
        },
    };
    let writing = || {
        if let Call::Pause(_) = call {
            pod.written.store(true, Ordering::Release);
        }
    };
    let handed_at = clock.now();
    let (mut sent, mut outcome) = call.send(&connection, deadline, writing).await;
    if let Err(e) = &outcome
        && *e.kind() == CallErrorKind::NotProcessed
    {
        debug!(error = %e.chain(), "not processed; once more on a fresh connection");
        match Box::pin(dial(config, &pod.target)).await {
            Ok(again) => {
                (sent, outcome) = call.send(&again, deadline, writing).await;
                fresh = Some((again, None));
            }
            Err(e) => debug!(error = %e.chain(), "cannot reconnect"),
        }
    }
    // "Sent" is when the request reached the kernel; a request that never got that far
    // counts from when it was handed to the connection.
    let sent_at = sent.map_or(handed_at, |at| clock.at(at));
    finish(fresh, sent_at, outcome)
}

/// The text of a panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Runs every future at once and returns their outputs in order; those still pending
/// at `deadline` are dropped (cancelling their calls) and get `expired(i)`.
///
/// One timer for the whole set: a timer per pod would cost a timer-wheel entry, and
/// often a wake-up of the I/O driver, for each of a thousand pods.
async fn all_within<F: Future>(
    futures: impl IntoIterator<Item = F>,
    deadline: Instant,
    expired: impl Fn(usize) -> F::Output,
) -> Vec<F::Output> {
    let mut pending: FuturesUnordered<_> = futures
        .into_iter()
        .enumerate()
        .map(|(i, f)| f.map(move |output| (i, output)))
        .collect();
    let mut outputs: Vec<Option<F::Output>> = std::iter::repeat_with(|| None)
        .take(pending.len())
        .collect();
    let timer = tokio::time::sleep_until(deadline);
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
