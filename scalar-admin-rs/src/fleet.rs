//! Every pod of a deployment, connected and called at once.
//!
//! [`Fleet::connect`] opens one connection per pod and learns, from one CheckPaused
//! (the probe), whether each pod answers the admin interface and whether it is already
//! paused. Each operation then calls every pod concurrently, never stops early, and
//! returns a [`Report`]. Every answer a pod gives feeds its [`PodState`]; a Pause that
//! fails is undone by [`Fleet::release`], which reads only that state and confirms each
//! Unpause with CheckPaused.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::client::{ClientConfig, PauseOptions, deadline_in};
use crate::contract::Operation;
use crate::dial::dial;
use crate::error::{CallError, CallErrorKind, ConnectFailure, panic_message};
use crate::failure::Error;
use crate::pb::{CheckPausedResponse, PauseRequest};
use crate::report::{KeptPod, PodReport, Report, Rollback, StuckPod, Unconfirmed};
use crate::state::{Event, Holder, PodState, Reply, Settle};
use crate::target::Target;
use crate::wire::Connection;

/// How old the pods' last answers may be, by default, for [`Fleet::pause`] to decide
/// from them alone ([`ClientConfig::fresh_for`]): 1 second. The connection probe of a Pause that follows [`Fleet::connect`] at
/// once (as the CLI's does) is that fresh, and a second round would cost a round trip on
/// every pause; older answers are refreshed with one CheckPaused to every pod first.
///
/// What remains is the gap between that answer and the Pause landing: a pod that
/// someone else pauses within it is taken for this run's by the Pause, and one that
/// someone else unpauses within it is refused as theirs.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// The first wait between a rollback's Unpause and its CheckPaused; it doubles each
/// round, up to [`MAX_BACKOFF`].
const SETTLE: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The time limit of the one check a rollback still makes once it is interrupted.
const LAST_CHECK: Duration = Duration::from_secs(1);
/// What a rollback keeps of its budget, at most (and at most half of it), for the
/// Unpause and CheckPaused that follow the last answer of a Pause still in flight.
const AFTER_ANSWERS: Duration = Duration::from_secs(2);

/// A call's end: when its request reached the kernel, and the outcome.
type Answer = (Option<Instant>, Result<Reply, CallError>);

/// A Pause of this run that was handed to its connection and has not been answered: kept
/// past the call's deadline (or a cancel), so that a rollback can wait for its answer and
/// unpause after it. The stream stays open meanwhile, and the pod was told a
/// `grpc-timeout` that covers the wait, so a handler that starts late still answers on
/// it. Dropped unanswered, it closes its connection abortively
/// ([`Connection::abort`]): nothing the kernel still holds of it is delivered later.
struct InFlight {
    answer: Pin<Box<dyn Future<Output = Answer> + Send>>,
    connection: Connection,
    /// How long a rollback waits for the answer ([`PauseOptions::answer_wait`]).
    wait: Duration,
    /// Whether this run held the pod, or was in doubt, when this Pause was sent: only
    /// then can the earlier pause a late `PAUSE_IN_PROGRESS` or `TIMED_OUT_STILL_PAUSED`
    /// speaks of be this run's own ([`Event::Answered`]).
    ours_before: bool,
    answered: bool,
}

/// The answer of a Pause that was in flight, and what this run held when it was sent.
struct Late {
    answer: Answer,
    ours_before: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.answered {
            self.connection.abort();
        }
    }
}

/// A monotonic clock anchored to one wall-clock reading, so that a fleet's timestamps
/// stay ordered, and its differences true, even if the system clock steps.
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
        self.at(Instant::now())
    }

    /// A monotonic instant on this clock's wall time.
    fn at(&self, instant: Instant) -> SystemTime {
        let since = instant.saturating_duration_since(self.mono);
        self.wall.checked_add(since).unwrap_or(self.wall)
    }
}

struct Pod {
    target: Target,
    connection: Result<Connection, CallError>,
    /// What this fleet believes about the pod, from its answers.
    state: PodState,
    /// When the pod last answered CheckPaused (the probe included).
    seen_at: Option<Instant>,
    /// When a Pause of this run last left the pod in doubt (its call ended).
    doubt_since: Option<Instant>,
    /// Set by a Pause call the moment its request may leave, and folded into `state`
    /// when the call ends, so that a call that is dropped (a signal, a cancel) or panics
    /// still counts as written.
    written: AtomicBool,
    /// A Pause call's outcome and when it came, set as the call ends and folded with
    /// `written`, so that an answer read before a cancel dropped the fan-out still
    /// counts (a pod that reported someone else's pause is not taken as this run's).
    pause_outcome: Mutex<Option<(Result<Reply, CallError>, Instant)>>,
    /// The last Pause of this run to the pod, while its answer has not been read.
    in_flight: Mutex<Option<InFlight>>,
    /// A Pause of this run to the pod was given up unanswered (a rollback's wait for it
    /// ended, a later Pause replaced it) or answered with nothing about what it did: its
    /// handler may still close the gate, late.
    unanswered: bool,
}

impl Pod {
    fn live(&self) -> Option<&Connection> {
        self.connection.as_ref().ok().filter(|c| !c.is_closed())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, Option<InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls the Pause in flight; its answer, once in, leaves the pod. `None`: there is
    /// none.
    fn poll_answer(&self, cx: &mut Context<'_>) -> Poll<Option<Late>> {
        let mut slot = self.in_flight();
        let Some(in_flight) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        let answer = std::task::ready!(in_flight.answer.as_mut().poll(cx));
        in_flight.answered = true;
        let ours_before = in_flight.ours_before;
        *slot = None;
        Poll::Ready(Some(Late {
            answer,
            ours_before,
        }))
    }

    /// Feeds the late answer of a Pause that was in flight.
    fn answered(&mut self, late: &Late) {
        self.state = self.state.next(Event::Answered {
            outcome: &late.answer.1,
            ours_before: late.ours_before,
        });
        if self.state.in_doubt {
            self.unanswered = true;
        }
    }

    /// Gives up the Pause in flight unanswered, closing its connection abortively.
    fn give_up(&mut self) {
        if self.in_flight().take().is_some() {
            self.unanswered = true;
        }
    }

    /// Feeds a CheckPaused answer given at `at`. A pod in doubt seen open a whole watch
    /// after its Pause call ended is no longer in doubt: a Pause of this run that has not
    /// landed by then is taken as never landing (the documented race).
    fn observe(&mut self, paused: bool, at: Instant, watch: Duration) {
        self.state = self.state.next(Event::Observed(paused));
        self.seen_at = Some(at);
        let watched = self
            .doubt_since
            .is_some_and(|since| at.saturating_duration_since(since) >= watch);
        if !paused && self.state.in_doubt && watched {
            self.state = self.state.next(Event::Settled);
        }
    }

    fn pause_outcome(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<(Result<Reply, CallError>, Instant)>> {
        self.pause_outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Feeds one Pause of this run's outcome (`None`: abandoned), ended at `at`.
    fn paused(&mut self, outcome: Option<&Result<Reply, CallError>>, take_over: bool, at: Instant) {
        self.pause_outcome().take();
        let written = self.written.swap(false, Ordering::AcqRel);
        self.state = self.state.next(Event::Paused {
            written,
            outcome,
            take_over,
        });
        if written && self.state.in_doubt {
            self.doubt_since = Some(at);
        }
    }
}

/// One admin call, with its request.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// With how long a rollback waits for its answer past the deadline.
    Pause(PauseRequest, Duration),
    Unpause,
    CheckPaused,
}

impl Call {
    fn operation(self) -> Operation {
        match self {
            Call::Pause(..) => Operation::Pause,
            Call::Unpause => Operation::Unpause,
            Call::CheckPaused => Operation::CheckPaused,
        }
    }

    /// Sends the call; returns when the request reached the kernel, and the outcome. A
    /// Pause sent this way is not kept in flight past the deadline ([`send_pause`] is).
    async fn send(
        self,
        connection: &Connection,
        deadline: Instant,
        writing: impl FnOnce(),
    ) -> (Option<Instant>, Result<Reply, CallError>) {
        let op = self.operation();
        match self {
            Call::Pause(request, _) => {
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

/// Sends a Pause and waits for its answer, keeping the exchange in the pod
/// ([`InFlight`]): when this future is dropped at the deadline or by a cancel, the stream
/// stays open and a rollback can still read the answer. The pod is told a `grpc-timeout`
/// of the deadline plus `wait`, so that it does not cancel the call before then.
async fn send_pause(
    pod: &Pod,
    connection: &Connection,
    request: &PauseRequest,
    wait: Duration,
    deadline: Instant,
    writing: impl FnOnce(),
) -> Answer {
    let told = deadline.checked_add(wait).unwrap_or(deadline);
    let exchange = match connection
        .start(Operation::Pause, request, told, writing)
        .await
    {
        Ok(exchange) => exchange,
        Err(e) => return (None, Err(e)),
    };
    let answer = exchange
        .answer::<()>()
        .map(|(sent, r)| (sent, r.map(|()| Reply::Done)));
    let in_flight = InFlight {
        answer: Box::pin(answer),
        connection: connection.clone(),
        wait,
        ours_before: pod.state.may_hold(),
        answered: false,
    };
    // An earlier Pause still in flight was retired before this one was sent
    // (`Fleet::retire_in_flight`); one left here is given up.
    drop(pod.in_flight().replace(in_flight));
    match std::future::poll_fn(|cx| pod.poll_answer(cx)).await {
        Some(late) => late.answer,
        // Taken by nobody else while this call runs; should it happen, the call failed.
        None => (
            None,
            Err(CallError::new(Operation::Pause, CallErrorKind::Transport)),
        ),
    }
}

/// A pod connected and probed.
struct Probed {
    connection: Connection,
    /// Whether it reported paused.
    paused: bool,
    /// When the probe was handed to the kernel: the client's part of connecting done.
    sent: Option<Instant>,
    /// When it answered: how fresh `paused` is.
    answered: Instant,
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
            answered: Instant::now(),
        }),
        (_, Err(e)) => Err(CallError::connect(ConnectFailure::Probe).with_source(e)),
    }
}

/// What one pod's call produced: the report, when the answer came, and a connection
/// made on the way (with the probe's answer and its instant, when it was probed).
struct Outcome {
    report: PodReport,
    answered: Instant,
    fresh: Option<(Connection, Option<(bool, Instant)>)>,
}

/// Every pod of a deployment, connected and ready to be called at once.
///
/// [`Fleet::connect`] opens a connection to each pod before any call, so that Pause
/// requests leave together and the pods' gates close within a short spread. Each
/// operation calls every pod concurrently, never stops early, and returns a [`Report`]
/// with every pod's outcome; it fails only when a pod failed, with the reports in the
/// [`Error`].
///
/// A fleet remembers, per pod, what the pod last said and what this fleet did to it, and
/// a rollback acts on that alone: it unpauses only the pods this fleet may have paused.
/// Dropping a fleet that may still hold pods paused logs them at error level; a plain
/// pause that is meant to outlive the fleet ends with [`into_paused`](Self::into_paused).
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
#[must_use = "a fleet that paused pods and is dropped leaves them paused"]
pub struct Fleet {
    config: ClientConfig,
    pods: Vec<Pod>,
    connect: Report,
    /// Every timestamp of this fleet's reports, so that a window's length and midpoint
    /// come from one monotonic clock.
    clock: Clock,
    /// The last Pause's take-over setting, which the state needs.
    take_over: bool,
    /// Set by [`into_paused`](Self::into_paused): the pods held are meant to stay paused.
    paused_on_purpose: bool,
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

impl Drop for Fleet {
    fn drop(&mut self) {
        if self.paused_on_purpose {
            return;
        }
        self.fold_abandoned();
        let held: Vec<&str> = self.held().map(Target::name).collect();
        if !held.is_empty() {
            error!(
                pods = %held.join(", "),
                "a fleet was dropped while it may hold pods paused; they stay paused until unpaused"
            );
        }
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
    ///
    /// # Cancel safety
    ///
    /// Dropping this future closes the connections made so far; nothing was changed on
    /// any pod.
    pub async fn connect(targets: Vec<Target>, config: ClientConfig) -> Self {
        Self::connect_as(targets, config, PodState::NEW).await
    }

    /// Connects to pods that another process of this run may hold paused, to end that
    /// pause: a guardian taking over from a tool that died mid-window, or holding a
    /// pause's lease. Every pod counts as held by this fleet whatever the probe says, so
    /// that [`release`](Self::release) unpauses each one that reports paused and
    /// confirms it. A pod seen unpaused is let go, and when paused again later, it is
    /// someone else's and left as found.
    ///
    /// `answered`: whether every Pause of the other process was answered. If not (it
    /// died mid-call), each pod is in doubt, since such a Pause may still land: it is
    /// let go only once seen unpaused for a whole [`ClientConfig::rollback_watch`].
    ///
    /// Give only pods the other process may have paused: a pod adopted while someone
    /// else holds it would be unpaused.
    ///
    /// # Cancel safety
    ///
    /// As [`connect`](Self::connect): nothing was changed on any pod.
    pub async fn adopt(targets: Vec<Target>, config: ClientConfig, answered: bool) -> Self {
        let held = PodState {
            holder: Holder::Us,
            in_doubt: !answered,
        };
        Self::connect_as(targets, config, held).await
    }

    async fn connect_as(targets: Vec<Target>, config: ClientConfig, initial: PodState) -> Self {
        let clock = Clock::start();
        let adopted_at = Instant::now();
        let deadline = deadline_in(config.connect_deadline());
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
            let mut pod = Pod {
                target: target.clone(),
                connection: Err(CallError::connect(ConnectFailure::Tcp)),
                state: initial,
                seen_at: None,
                doubt_since: initial.in_doubt.then_some(adopted_at),
                written: AtomicBool::new(false),
                pause_outcome: Mutex::new(None),
                in_flight: Mutex::new(None),
                unanswered: false,
            };
            let outcome = match result {
                Ok(Probed {
                    connection,
                    paused,
                    answered,
                    ..
                }) => {
                    pod.connection = Ok(connection);
                    pod.observe(paused, answered, config.rollback_watch_value());
                    Ok(Reply::Paused(paused))
                }
                Err(e) => {
                    debug!(pod = %target, error = %e.chain(), "cannot connect");
                    pod.connection = Err(e.clone());
                    Err(e)
                }
            };
            reports.push(PodReport {
                target,
                sent_at,
                received_at,
                outcome,
            });
            pods.push(pod);
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
            clock,
            take_over: false,
            paused_on_purpose: false,
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

    /// The pods whose last answers say someone else paused them: [`pause`](Self::pause)
    /// refuses to pause over them unless it takes them over, and a rollback leaves them.
    pub fn already_paused(&self) -> impl Iterator<Item = &Target> {
        self.pods
            .iter()
            .filter(|p| p.state.is_others())
            .map(|p| &p.target)
    }

    /// How long [`Fleet::connect`] took.
    pub fn connect_time(&self) -> Duration {
        self.connect.wall_time()
    }

    /// The pods a Pause of this fleet may hold paused: what [`release`](Self::release)
    /// would unpause, a Pause abandoned mid-call (its future dropped) included.
    pub fn held(&self) -> impl Iterator<Item = &Target> {
        self.pods
            .iter()
            .filter(|p| p.state.may_hold() || p.written.load(Ordering::Acquire))
            .map(|p| &p.target)
    }

    /// Consumes the fleet, leaving the pods it paused paused on purpose (the plain PAUSE
    /// command, whose pause outlives the process), and returns them.
    #[must_use = "the pods returned stay paused"]
    pub fn into_paused(mut self) -> Vec<Target> {
        self.paused_on_purpose = true;
        self.held().cloned().collect()
    }

    /// Pauses every pod.
    ///
    /// Decides from a fresh belief: the connection probe when the Pause follows
    /// [`connect`](Self::connect) within [`FRESH_FOR`], otherwise one CheckPaused to
    /// every pod first. Starts only when every pod is connected and answered; otherwise
    /// nothing is sent and the error names the pods. A pod paused by someone else is
    /// refused ([`Error::AlreadyPaused`], nothing sent) unless
    /// [`PauseOptions::take_over`] is on. When Pause fails on any pod, the pods this run
    /// may have paused are unpaused again and confirmed ([`release`](Self::release))
    /// unless [`PauseOptions::rollback`] is off, and the error says what became of each.
    ///
    /// # Cancel safety
    ///
    /// Dropping this future after the Pause requests left leaves the pods this call may
    /// have paused paused; the fleet remembers them, and the next [`release`](Self::release)
    /// unpauses them ([`pause_with_cancel`](Self::pause_with_cancel) does that itself).
    pub async fn pause(&mut self, options: PauseOptions) -> Result<Report, Error> {
        self.pause_armed(options, &mut ()).await
    }

    /// [`pause`](Self::pause), telling `guard` the pods the Pause goes to once the
    /// decision is made and right before the first request leaves (an error from it
    /// stops the pause with nothing sent, [`Error::Guard`]), and those that may hold it
    /// before any rollback.
    pub(crate) async fn pause_armed(
        &mut self,
        options: PauseOptions,
        guard: &mut impl PauseGuard,
    ) -> Result<Report, Error> {
        self.fold_abandoned();
        self.reconnect().await;
        if self.pods.iter().any(|p| p.connection.is_err()) {
            let report = self.unsent_pause(|p| p.connection.as_ref().err());
            warn!(
                failed = report.failures().count(),
                "pods unreachable; no Pause sent"
            );
            return Err(Error::Pause {
                pause: Box::new(report),
                rollback: None,
            });
        }
        let fresh_for = self.config.fresh_for_value();
        let stale = self
            .pods
            .iter()
            .any(|p| p.seen_at.is_none_or(|at| at.elapsed() >= fresh_for));
        if stale {
            let check = self.check_report().await;
            if !check.is_success() {
                let failed: Vec<Option<&CallError>> =
                    check.pods.iter().map(PodReport::error).collect();
                let report = self.unsent_pause_from(&failed);
                warn!("pods could not be checked; no Pause sent");
                return Err(Error::Pause {
                    pause: Box::new(report),
                    rollback: None,
                });
            }
        }
        self.take_over = options.takes_over();
        if !self.take_over {
            let others: Vec<Target> = self.already_paused().cloned().collect();
            if !others.is_empty() {
                warn!(pods = others.len(), "paused by someone else; no Pause sent");
                return Err(Error::AlreadyPaused { pods: others });
            }
        }
        let targets: Vec<Target> = self.targets().cloned().collect();
        if let Err(reason) = guard.arm(&targets).await {
            warn!(%reason, "the guard refused; no Pause sent");
            return Err(Error::Guard { reason });
        }
        let deadline = self.config.pause_deadline(&options);
        let all: Vec<usize> = (0..self.pods.len()).collect();
        self.retire_in_flight();
        let call = Call::Pause(options.request(), options.answer_wait());
        let left = |pod: &Target| guard.leave(pod);
        let (report, _) = self.fan_out_timed(call, deadline, &all, left).await;
        if report.is_success() {
            info!(spread = ?report.reply_spread(), "pause completed");
            return Ok(report);
        }
        let holding: Vec<Target> = self.held().cloned().collect();
        guard.narrow(&holding).await;
        let rollback = if options.rollback_enabled() {
            warn!("pause failed; rolling back");
            self.release().await
        } else {
            self.left_paused()
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
    ///
    /// # Cancel safety
    ///
    /// As [`pause`](Self::pause): dropping this future during its rollback leaves the
    /// pods not yet unpaused to the next [`release`](Self::release).
    pub async fn pause_with_cancel<C: Future>(
        &mut self,
        options: PauseOptions,
        cancel: C,
    ) -> Result<Report, Error> {
        self.pause_guarded(options, cancel, &mut ()).await
    }

    /// [`pause_with_cancel`](Self::pause_with_cancel), telling `guard` the pods the
    /// Pause goes to once the decision to pause is made (none is paused by someone else,
    /// unless taking over) and right before the first request leaves: the moment a
    /// guard outside this process (a guardian, a lease) must know what it may have to
    /// unpause. An error from [`PauseGuard::arm`] stops the pause with nothing sent
    /// ([`Error::Guard`]). When the pause fails or is cancelled, `guard` hears which
    /// pods may hold it ([`PauseGuard::narrow`]) before the rollback starts.
    ///
    /// # Cancel safety
    ///
    /// As [`pause_with_cancel`](Self::pause_with_cancel).
    pub async fn pause_guarded<C: Future>(
        &mut self,
        options: PauseOptions,
        cancel: C,
        guard: &mut impl PauseGuard,
    ) -> Result<Report, Error> {
        let finished = tokio::select! {
            // A cancel that has already fired wins before anything is sent.
            biased;
            _ = cancel => None,
            result = self.pause_armed(options, guard) => Some(result),
        };
        if let Some(result) = finished {
            return result;
        }
        // The answers read before the cancel count: a pod that reported someone else's
        // pause leaves the guard. Told even when nothing left: it then holds nothing.
        self.fold_abandoned();
        let holding: Vec<Target> = self.held().cloned().collect();
        guard.narrow(&holding).await;
        warn!("interrupted during pause; undoing what this run paused");
        Err(Error::Interrupted {
            rollback: Box::new(self.release().await),
        })
    }

    /// Undoes this fleet's pause and proves it: unpauses every pod a Pause of this fleet
    /// may have paused (on a fresh connection where the last call timed out or broke),
    /// then asks each with CheckPaused after a short settling delay, and unpauses and
    /// asks again, with a doubling backoff, while it still reports paused, all within
    /// [`ClientConfig::rollback_budget`]. A pod whose Pause outcome was unknown is
    /// watched for [`ClientConfig::rollback_watch`] after it was seen unpaused, since its
    /// Pause may still land. Pods whose pause is someone else's are left as found.
    ///
    /// A Pause of this fleet still unanswered (its deadline passed, or a cancel dropped
    /// it) is waited for: its answer, read on its own stream, is followed by an Unpause
    /// when it closed the gate. The wait lasts the pods' wait limit plus
    /// [`PAUSE_DEADLINE_MARGIN`](crate::PAUSE_DEADLINE_MARGIN), within the budget less
    /// up to 2 s; a Pause not answered by then has its connection closed abortively and
    /// is named in [`Rollback::may_land_late`].
    ///
    /// [`Rollback::unpaused`] lists only the pods a CheckPaused confirmed unpaused; any
    /// other is in [`Rollback::stuck`]. Safe to call at any time, and again: a pod whose
    /// Unpause an earlier, cut-short rollback sent and never checked is checked (not
    /// unpaused again), and listed as either.
    ///
    /// # Cancel safety
    ///
    /// Dropping this future may leave pods paused; the fleet still knows them, and the
    /// next call of this method picks them up.
    #[must_use = "the rollback says which pods may still be paused"]
    pub async fn release(&mut self) -> Rollback {
        self.release_until(std::future::pending::<()>()).await
    }

    /// [`release`](Self::release), cut short when `cancel` completes: no more waiting
    /// between rounds, one last check, and what is not confirmed by then is reported
    /// stuck, with [`Rollback::was_interrupted`] set.
    pub(crate) async fn release_until(&mut self, cancel: impl Future) -> Rollback {
        self.fold_abandoned();
        let started = Instant::now();
        let budget = self.config.rollback_budget_value();
        let deadline = deadline_in(budget);
        let watch = self.config.rollback_watch_value();
        // Every pod this run may hold, and every pod whose Unpause of this run was
        // answered OK and never checked (a rollback cut short by a cancel): checked, so
        // that none is called unpaused, or left unnamed, without a CheckPaused behind it.
        let mut pending: Vec<usize> = (0..self.pods.len())
            .filter(|&i| {
                let state = self.pods[i].state;
                state.may_hold() || state.is_released_unconfirmed()
            })
            .collect();
        // Pauses of this run still in flight: their answers are waited for, until
        // `answers_by`, and each pod is unpaused (again) after its own.
        let mut waiting: Vec<usize> = (0..self.pods.len())
            .filter(|&i| self.pods[i].in_flight().is_some())
            .collect();
        let answers_by = {
            let wait = waiting
                .iter()
                .filter_map(|&i| self.pods[i].in_flight().as_ref().map(|f| f.wait))
                .max()
                .unwrap_or_default();
            let keep = AFTER_ANSWERS.min(budget / 2);
            deadline_in(wait).min(deadline.checked_sub(keep).unwrap_or(started))
        };
        for &i in &waiting {
            if !pending.contains(&i) {
                pending.push(i);
            }
        }
        let mut rollback = Rollback::default();
        // Since when each pod in doubt has been watched.
        let mut watch_from = vec![started; self.pods.len()];
        let mut delay = SETTLE;
        let mut interrupted = false;
        tokio::pin!(cancel);
        while !pending.is_empty() {
            let unpause: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| self.pods[i].state.needs_unpause())
                .collect();
            if !unpause.is_empty() {
                let report = self
                    .fan_out(Call::Unpause, self.limit(deadline), &unpause)
                    .await;
                let now = Instant::now();
                for &i in &unpause {
                    watch_from[i] = now;
                }
                rollback.unpauses.push(report);
            }
            if Instant::now() >= deadline {
                break;
            }
            if !interrupted {
                // No later than the end of a watch: a pod waiting only for it is
                // confirmed by the first check after it, so none comes later than needed.
                let watch_end = pending
                    .iter()
                    .filter(|&&i| !self.pods[i].state.needs_unpause())
                    .filter_map(|&i| watch_from[i].checked_add(watch))
                    .filter(|&end| end > Instant::now())
                    .min();
                let mut wake = deadline
                    .min(Instant::now() + delay)
                    .min(watch_end.unwrap_or(deadline));
                if !waiting.is_empty() {
                    wake = wake.min(answers_by);
                }
                let pods = &self.pods;
                let next_answer = std::future::poll_fn(|cx| {
                    for &i in &waiting {
                        if let Poll::Ready(answer) = pods[i].poll_answer(cx) {
                            return Poll::Ready((i, answer));
                        }
                    }
                    Poll::Pending
                });
                let landed = tokio::select! {
                    biased;
                    _ = &mut cancel => {
                        interrupted = true;
                        None
                    }
                    answer = next_answer => Some(answer),
                    () = tokio::time::sleep_until(wake) => None,
                };
                if let Some((i, answer)) = landed {
                    waiting.retain(|&w| w != i);
                    if let Some(answer) = answer {
                        let pod = &mut self.pods[i];
                        debug!(pod = %pod.target, outcome = ?answer.answer.1, "a Pause in flight answered");
                        pod.answered(&answer);
                        if pod.state.may_hold() && !pending.contains(&i) {
                            pending.push(i);
                        }
                    }
                    // Unpause after it at once, when it closed the gate, and check again
                    // after the settling delay.
                    delay = SETTLE;
                    continue;
                }
            }
            if !waiting.is_empty() && (interrupted || Instant::now() >= answers_by) {
                for i in waiting.drain(..) {
                    let pod = &mut self.pods[i];
                    warn!(pod = %pod.target, "no answer to a Pause in flight; its connection is closed, and it may still land");
                    pod.give_up();
                }
            }
            let limit = self.limit(deadline);
            let check = if interrupted {
                None
            } else {
                tokio::select! {
                    biased;
                    _ = &mut cancel => {
                        interrupted = true;
                        None
                    }
                    check = self.check_timed(limit, &pending) => Some(check),
                }
            };
            // Interrupted: one last, short check, so that what did unpause is said so.
            let (check, answered_at) = match check {
                Some(check) => check,
                None => {
                    let limit = limit.min(LAST_CHECK);
                    self.check_timed(limit, &pending).await
                }
            };
            let last_round = interrupted || Instant::now() >= deadline;
            // Only a check answered in this round settles a pod, judged at the instant
            // that pod answered.
            let mut answered = vec![None; self.pods.len()];
            for ((&i, pod), at) in pending.iter().zip(&check.pods).zip(answered_at) {
                answered[i] = pod.outcome.is_ok().then_some(at);
            }
            rollback.checks.push(check);
            pending.retain(|&i| {
                let Some(at) = answered[i] else {
                    return true;
                };
                // Its Pause may still close the gate: not settled before its answer.
                if waiting.contains(&i) && !last_round {
                    return true;
                }
                let pod = &mut self.pods[i];
                let watched = at.saturating_duration_since(watch_from[i]) >= watch;
                match pod.state.settle(watched) {
                    Settle::Confirmed => {
                        pod.state = pod.state.next(Event::Settled);
                        rollback.unpaused.push(pod.target.clone());
                        false
                    }
                    // Someone else's pause since, or an Unpause that did not take: not
                    // this run's to end, nor to call unpaused (named below).
                    Settle::PausedAgain | Settle::Kept => false,
                    Settle::Pending => true,
                }
            });
            if last_round {
                break;
            }
            delay = delay.saturating_mul(2).min(MAX_BACKOFF);
        }
        // Out of time or interrupted with answers still out: given up.
        for i in waiting {
            self.pods[i].give_up();
        }
        rollback.late = self
            .pods
            .iter()
            .filter(|p| p.unanswered)
            .map(|p| p.target.clone())
            .collect();
        for &i in &pending {
            let pod = &self.pods[i];
            // Its Unpause answered OK: whatever its checks did, it is not to be unpaused
            // again for this run.
            let unpaused = pod.state.is_released_unconfirmed() && !pod.state.in_doubt;
            let why = match last_failure(&rollback, &pod.target) {
                _ if unpaused => Unconfirmed::UnpausedUnchecked,
                Some(e) => Unconfirmed::Failed(e.clone()),
                None if pod.state.holder == Holder::Us => Unconfirmed::StillPaused,
                None if pod.state.holder == Holder::Nobody => Unconfirmed::NotWatched,
                None => Unconfirmed::Unchecked,
            };
            rollback.stuck.push(StuckPod {
                target: pod.target.clone(),
                why,
            });
        }
        // Paused again after an Unpause of this run answered OK, in this rollback or an
        // earlier one: named, with the recovery command, every time.
        for pod in self.pods.iter().filter(|p| p.state.paused_again()) {
            rollback.stuck.push(StuckPod {
                target: pod.target.clone(),
                why: Unconfirmed::PausedAgain,
            });
        }
        if !rollback.stuck.is_empty() {
            warn!(
                pods = rollback.stuck.len(),
                "rollback could not confirm every pod unpaused"
            );
        }
        rollback.kept = self.kept();
        rollback.interrupted = interrupted;
        rollback
    }

    /// What rollback turned off leaves: every pod this run may have paused, untried.
    fn left_paused(&mut self) -> Rollback {
        self.fold_abandoned();
        Rollback {
            kept: self.kept(),
            stuck: self
                .held()
                .map(|t| StuckPod {
                    target: t.clone(),
                    why: Unconfirmed::NotTried,
                })
                .collect(),
            ..Rollback::default()
        }
    }

    fn kept(&self) -> Vec<KeptPod> {
        self.pods
            .iter()
            .filter_map(|p| {
                Some(KeptPod {
                    target: p.target.clone(),
                    why: p.state.kept()?,
                })
            })
            .collect()
    }

    /// Folds Pause calls whose fan-out was dropped (a cancel) or that panicked mid-call
    /// into the pods' states: with the answer a call read before that, or else as
    /// requests that may have left with nothing answered.
    fn fold_abandoned(&mut self) {
        let take_over = self.take_over;
        let now = Instant::now();
        for pod in &mut self.pods {
            let outcome = pod.pause_outcome().take();
            if let Some((outcome, at)) = outcome {
                pod.paused(Some(&outcome), take_over, at);
            } else if pod.written.load(Ordering::Acquire) {
                pod.paused(None, take_over, now);
                // Its stream stays open for the answer; the next call goes on a fresh
                // connection, which the rollback's waiting cannot hold up.
                if pod.in_flight().is_some() {
                    pod.connection =
                        Err(CallError::new(Operation::Pause, CallErrorKind::Transport));
                }
            }
        }
    }

    /// Before a new Pause: feeds the answers of earlier Pauses still in flight that are
    /// in, and gives up the others, which may still land (later rollbacks name them).
    fn retire_in_flight(&mut self) {
        for pod in &mut self.pods {
            let answer = std::future::poll_fn(|cx| pod.poll_answer(cx))
                .now_or_never()
                .flatten();
            match answer {
                Some(answer) => pod.answered(&answer),
                None => pod.give_up(),
            }
        }
    }

    /// A call's time limit: the call deadline, or less when the rollback budget ends
    /// sooner.
    fn limit(&self, deadline: Instant) -> Duration {
        self.config
            .call_deadline()
            .min(deadline.saturating_duration_since(Instant::now()))
    }

    /// Unpauses every pod, reconnecting to pods that were unreachable. Unlike
    /// [`release`](Self::release), this ends every pause, whoever made it: it is the
    /// operator's explicit Unpause. An OK is what each pod answered; call
    /// [`check_paused`](Self::check_paused) to see the gates open.
    ///
    /// # Cancel safety
    ///
    /// Dropping this future may leave some pods unpaused and others not; nothing is
    /// left that the fleet does not know of.
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
    ///
    /// # Cancel safety
    ///
    /// Dropping this future changes nothing on any pod.
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
        self.fold_abandoned();
        let all: Vec<usize> = (0..self.pods.len()).collect();
        let deadline = self.config.call_deadline();
        self.fan_out(Call::Unpause, deadline, &all).await
    }

    /// Connects again to every pod that has no open connection.
    async fn reconnect(&mut self) {
        self.fold_abandoned();
        let config = &self.config;
        let deadline = deadline_in(config.connect_deadline());
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
        let watch = self.config.rollback_watch_value();
        for (pod, result) in self.pods.iter_mut().zip(results) {
            match result {
                None => {}
                Some(Ok(probed)) => {
                    pod.connection = Ok(probed.connection);
                    pod.observe(probed.paused, probed.answered, watch);
                }
                Some(Err(e)) => pod.connection = Err(e),
            }
        }
    }

    /// A Pause report for when no Pause was sent: each pod's error (`failed`), or
    /// `NotSent` for the rest.
    fn unsent_pause_from(&self, failed: &[Option<&CallError>]) -> Report {
        let now = self.clock.now();
        let pods = self
            .pods
            .iter()
            .zip(failed)
            .map(|(p, error)| PodReport {
                target: p.target.clone(),
                sent_at: now,
                received_at: now,
                outcome: Err(match error {
                    Some(e) => (*e).clone().during(Operation::Pause),
                    None => CallError::new(Operation::Pause, CallErrorKind::NotSent),
                }),
            })
            .collect();
        Report {
            operation: Operation::Pause,
            started_at: now,
            completed_at: now,
            pods,
        }
    }

    /// [`fan_out_timed`](Self::fan_out_timed)'s report alone.
    async fn fan_out(&mut self, call: Call, limit: Duration, which: &[usize]) -> Report {
        self.fan_out_timed(call, limit, which, |_| {}).await.0
    }

    /// A CheckPaused of the pods at `which`, with when each answered.
    async fn check_timed(&mut self, limit: Duration, which: &[usize]) -> (Report, Vec<Instant>) {
        self.fan_out_timed(Call::CheckPaused, limit, which, |_| {})
            .await
    }

    fn unsent_pause(&self, error: impl Fn(&Pod) -> Option<&CallError>) -> Report {
        let failed: Vec<Option<&CallError>> = self.pods.iter().map(error).collect();
        self.unsent_pause_from(&failed)
    }

    /// Calls the pods at `which` (indices) at once and waits for all of them, or for the
    /// deadline, then feeds every answer to the pods' states. The report lists them in
    /// index order.
    ///
    /// A pod without an open connection (unreachable before, or restarted since, or
    /// whose last call timed out or broke) is connected first, inside its own call, so
    /// that it delays nobody else. A request the pod did not process (refused stream, or
    /// after its GOAWAY) is sent once more on a fresh connection within the same
    /// deadline. A panic in one pod's call becomes that pod's failure: the others still
    /// finish, and the rollback rule still applies. Returns, beside the report, when each
    /// pod answered (or its call ended), in the same order. A Pause's answer that leaves
    /// its pod not this run's to unpause (someone else's pause holds it, or its gate
    /// reopened) is told to `left` the moment it is in, before the others.
    async fn fan_out_timed(
        &mut self,
        call: Call,
        limit: Duration,
        which: &[usize],
        mut left: impl FnMut(&Target),
    ) -> (Report, Vec<Instant>) {
        // No answer may be folded before a Pause of this run that was abandoned earlier.
        self.fold_abandoned();
        let operation = call.operation();
        let clock = self.clock;
        let refuse_others = !self.take_over;
        let started_at = clock.now();
        let deadline = deadline_in(limit);
        let config = &self.config;
        let pods = &self.pods;
        let calls = which.iter().map(|&i| {
            let pod = &pods[i];
            let span = info_span!("call", pod = %pod.target, op = %operation);
            // Boxed: an `async` block that captures a future and awaits it keeps room for
            // it twice, and at a thousand pods that is megabytes.
            let call = Box::pin(AssertUnwindSafe(
                call_pod(config, pod, call, deadline, clock, refuse_others).instrument(span),
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
                                sent_at: started_at,
                                received_at: clock.now(),
                                outcome: Err(CallError::new(operation, kind)),
                            },
                            answered: Instant::now(),
                            fresh: None,
                        }
                    }
                }
            }
        });
        let take_over = self.take_over;
        let expired = |k: usize| {
            // Still waiting at the deadline: the request may have reached the pod.
            Outcome {
                report: PodReport {
                    target: pods[which[k]].target.clone(),
                    sent_at: started_at,
                    received_at: clock.now(),
                    outcome: Err(CallError::new(operation, CallErrorKind::Timeout(limit))),
                },
                answered: Instant::now(),
                fresh: None,
            }
        };
        let each = |k: usize, outcome: &Outcome| {
            let pod = &pods[which[k]];
            if let Call::Pause(..) = call {
                let after = pod.state.next(Event::Paused {
                    written: pod.written.load(Ordering::Acquire),
                    outcome: Some(&outcome.report.outcome),
                    take_over,
                });
                if !after.may_hold() {
                    left(&pod.target);
                }
            }
        };
        let results = all_within_each(calls, deadline, expired, each).await;
        let completed_at = clock.now();
        let watch = self.config.rollback_watch_value();
        let mut reports = Vec::with_capacity(results.len());
        let mut answers = Vec::with_capacity(results.len());
        for (&i, outcome) in which.iter().zip(results) {
            let pod = &mut self.pods[i];
            if let Some((connection, probed)) = outcome.fresh {
                pod.connection = Ok(connection);
                if let Some((paused, at)) = probed {
                    pod.observe(paused, at, watch);
                }
            }
            let result = &outcome.report.outcome;
            if let Err(e) = result
                && !e.is_connection_sound()
            {
                // A connection whose call timed out or broke may be dead (a black hole,
                // a conntrack reset) while its socket stays open: the next call dials a
                // fresh one.
                pod.connection = Err(e.clone());
            }
            match (call, result) {
                (Call::Pause(..), _) => pod.paused(Some(result), take_over, outcome.answered),
                (Call::Unpause, _) => pod.state = pod.state.next(Event::Unpaused(result)),
                (Call::CheckPaused, Ok(Reply::Paused(paused))) => {
                    pod.observe(*paused, outcome.answered, watch);
                }
                (Call::CheckPaused, _) => {}
            }
            reports.push(outcome.report);
            answers.push(outcome.answered);
        }
        (
            Report {
                operation,
                started_at,
                completed_at,
                pods: reports,
            },
            answers,
        )
    }
}

/// The last failed call to `pod` in a rollback, if its last call failed.
/// Told of a pause by [`Fleet::pause_guarded`], for a guard outside this process (a
/// guardian, a lease) that must end this run's pause if the process cannot.
pub trait PauseGuard {
    /// The pods the Pause goes to, once the decision to pause is made and right before
    /// the first request leaves. An error stops the pause with nothing sent.
    fn arm(&mut self, pods: &[Target]) -> impl Future<Output = Result<(), String>>;

    /// The pause failed or was cancelled, and its rollback is about to start: only
    /// `holding` may hold this run's pause now. After a failed pause, a pod that answered
    /// that someone else's pause holds it (`PAUSE_IN_PROGRESS`, `TIMED_OUT_STILL_PAUSED`)
    /// is not among them, and must not be unpaused for this run; after a cancel, neither
    /// is one whose answer was read before it. Does nothing by default.
    fn narrow(&mut self, holding: &[Target]) -> impl Future<Output = ()> {
        let _ = holding;
        async {}
    }

    /// A pod's answer to the Pause, the moment it is in, says that this run does not
    /// hold it (someone else's pause does, or its gate reopened): it must not be
    /// unpaused for this run, even if this process dies before the fan-out ends. Called
    /// during the fan-out, so it must not wait: a guard in another process sends word
    /// and goes on. Does nothing by default.
    fn leave(&mut self, pod: &Target) {
        let _ = pod;
    }
}

/// No guard.
impl PauseGuard for () {
    async fn arm(&mut self, _: &[Target]) -> Result<(), String> {
        Ok(())
    }
}

fn last_failure<'a>(rollback: &'a Rollback, pod: &Target) -> Option<&'a CallError> {
    let last = |reports: &'a [Report]| {
        reports
            .iter()
            .rev()
            .find_map(|r| r.pods.iter().find(|p| &p.target == pod))
    };
    let unpause = last(&rollback.unpauses);
    let check = last(&rollback.checks);
    // The check came after the Unpause of its round.
    match (check, unpause) {
        (Some(c), _) if c.outcome.is_err() => c.error(),
        (Some(c), Some(u)) if u.received_at > c.received_at => u.error(),
        (None, Some(u)) => u.error(),
        _ => None,
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
    refuse_others: bool,
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
        if let Call::Pause(..) = call {
            *pod.pause_outcome() = Some((outcome.clone(), Instant::now()));
        }
        Outcome {
            report: PodReport {
                target: pod.target.clone(),
                sent_at,
                received_at,
                outcome,
            },
            answered: Instant::now(),
            fresh,
        }
    };
    let connection = match pod.live() {
        Some(c) => c.clone(),
        // Boxed, as the retry below: connecting is the rare path, and inline it would
        // make every pod's call future several kilobytes.
        None => match Box::pin(connect_pod(config, &pod.target, deadline)).await {
            Ok(probed) => {
                let answer = (probed.paused, probed.answered);
                // Paused, and not by this run: someone else's (a pod that restarted
                // comes back open). Pause does not go over it.
                if matches!(call, Call::Pause(..))
                    && probed.paused
                    && refuse_others
                    && !pod.state.may_hold()
                {
                    let refused = CallError::new(operation, CallErrorKind::PausedByOthers);
                    return finish(
                        Some((probed.connection, Some(answer))),
                        clock.now(),
                        Err(refused),
                    );
                }
                fresh = Some((probed.connection.clone(), Some(answer)));
                probed.connection
            }
            Err(e) => return finish(None, clock.now(), Err(e.during(operation))),
        },
    };
    let writing = || {
        if let Call::Pause(..) = call {
            pod.written.store(true, Ordering::Release);
        }
    };
    let handed_at = clock.now();
    let (mut sent, mut outcome) = send_on(pod, call, &connection, deadline, writing).await;
    if let Err(e) = &outcome
        && *e.kind() == CallErrorKind::NotProcessed
    {
        debug!(error = %e.chain(), "not processed; once more on a fresh connection");
        match Box::pin(dial(config, &pod.target)).await {
            Ok(again) => {
                (sent, outcome) = send_on(pod, call, &again, deadline, writing).await;
                // A probe taken on the way still counts.
                let probed = fresh.and_then(|(_, probed)| probed);
                fresh = Some((again, probed));
            }
            Err(e) => debug!(error = %e.chain(), "cannot reconnect"),
        }
    }
    // "Sent" is when the request reached the kernel; a request that never got that far
    // counts from when it was handed to the connection.
    let sent_at = sent.map_or(handed_at, |at| clock.at(at));
    finish(fresh, sent_at, outcome)
}

/// Sends `call` on `connection`: a Pause kept in flight in the pod ([`send_pause`]).
async fn send_on(
    pod: &Pod,
    call: Call,
    connection: &Connection,
    deadline: Instant,
    writing: impl FnOnce(),
) -> Answer {
    match call {
        Call::Pause(request, wait) => {
            send_pause(pod, connection, &request, wait, deadline, writing).await
        }
        _ => call.send(connection, deadline, writing).await,
    }
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
    all_within_each(futures, deadline, expired, |_, _| {}).await
}

/// [`all_within`], calling `each` with every output the moment it is in.
async fn all_within_each<F: Future>(
    futures: impl IntoIterator<Item = F>,
    deadline: Instant,
    expired: impl Fn(usize) -> F::Output,
    mut each: impl FnMut(usize, &F::Output),
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
                Some((i, output)) => {
                    each(i, &output);
                    outputs[i] = Some(output);
                }
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
