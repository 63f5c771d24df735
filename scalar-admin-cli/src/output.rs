//! What the binary prints. stdout carries results only: the Java tool's lines that
//! scripts parse, or one JSON document. Diagnostics go to stderr.

use std::process::ExitCode;
use std::time::SystemTime;

use scalar_admin::window::{Group, Verdict, WindowReport};
use scalar_admin::{Error, Operation, Report, Rollback, Target, unix_micros as micros};
use serde::Serialize;

use crate::args::{Command, Config, Output};
use crate::exec::ExecResult;
pub(crate) use crate::java::java_instant;
use crate::recovery::{recovery_text, rollback_text};

/// The exit status, decided once: each value has one meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// The command succeeded on every pod.
    Success,
    /// The command failed on at least one pod, or the pods could not be found.
    Failure,
    /// Bad flags or input, found before any pod was contacted.
    Usage,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        match status {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::Usage => ExitCode::from(2),
        }
    }
}

fn command_name(command: Command) -> &'static str {
    match command {
        Command::Pause => "pause",
        Command::Unpause => "unpause",
        Command::CheckPaused => "check_paused",
        Command::Window => "window",
        Command::History => "history",
    }
}

/// Prints a command's outcome and decides the exit status.
pub(crate) fn report(config: &Config, result: &Result<Report, Error>) -> ExitStatus {
    match config.output {
        Output::Text => text(config, result),
        Output::Json => json(config, result),
    }
    status(result.as_ref().map(|_| true))
}

fn status(result: Result<bool, &Error>) -> ExitStatus {
    match result {
        Ok(true) => ExitStatus::Success,
        Ok(false) => ExitStatus::Failure,
        Err(e) if e.is_invalid_input() => ExitStatus::Usage,
        Err(_) => ExitStatus::Failure,
    }
}

fn text(config: &Config, result: &Result<Report, Error>) {
    match result {
        Ok(report) => match config.command {
            Command::Pause => {
                say!("{}", instant_line("Pause completed", report.completed_at()))
            }
            Command::Unpause => {
                say!("{}", instant_line("Unpause started", report.started_at()))
            }
            Command::CheckPaused => say!("{}", check_json(report)),
            Command::Window | Command::History => {
                unreachable!("windows are printed by `windows`, history by `journal`")
            }
        },
        Err(e) => {
            // The unpause was sent even though it failed somewhere: scripts still need
            // its start, as the Java tool logs it before sending.
            if let Error::Unpause { unpause } = e {
                say!("{}", instant_line("Unpause started", unpause.started_at()));
            }
            tell!("{}", failure_text(config, e).trim_end());
        }
    }
}

fn instant_line(what: &str, t: SystemTime) -> String {
    let (iso, ms) = java_instant(t);
    format!("{what} at {iso} UTC ({ms})")
}

/// CHECK_PAUSED's answer as the Java tool prints it: each pod's key mapped to "true" or
/// "false", in target order.
fn check_json(report: &Report) -> String {
    let entries: Vec<String> = report
        .pods()
        .iter()
        .map(|p| {
            let paused = p.paused().unwrap_or(false).to_string();
            format!(
                "{}:{}",
                serde_json::Value::from(p.target().name()),
                serde_json::Value::from(paused)
            )
        })
        .collect();
    format!("{{{}}}", entries.join(","))
}

/// `error: <summary>`, one line per failed pod, then what became of the pods this run
/// may have paused: those it unpaused, those left paused as found (and why), and those
/// that may still be paused, with the command that unpauses them.
pub(crate) fn failure_text(config: &Config, e: &Error) -> String {
    let mut out = format!("error: {e}\n");
    let failed = match e {
        Error::Pause { pause, .. } => Some(pause),
        Error::Unpause { unpause } => Some(unpause),
        Error::Check { check } => Some(check),
        _ => None,
    };
    for pod in failed.iter().flat_map(|r| r.failures()) {
        out.push_str(&format!("{pod}\n"));
    }
    if let Some(rollback) = e.rollback() {
        out.push_str(&rollback_text(rollback));
    }
    out.push_str(&recovery_text(&config.tls_flags, &e.maybe_paused()));
    if let Some(line) = e.rollback().and_then(Rollback::late_line) {
        out.push_str(&format!("{line}\n"));
    }
    if matches!(e, Error::AlreadyPaused { .. }) {
        out.push_str("check who paused them; pass --force to pause over them and take them over\n");
    }
    out
}

/// Reports a panic caught after the command started, and what the rollback did.
pub(crate) fn panicked(config: &Config, message: &str, rollback: &Rollback) {
    let mut out = format!("error: internal error: {message}; {rollback}\n");
    out.push_str(&rollback_text(rollback));
    out.push_str(&recovery_text(&config.tls_flags, &rollback.maybe_paused()));
    if let Some(line) = rollback.late_line() {
        out.push_str(&format!("{line}\n"));
    }
    tell!("{}", out.trim_end());
}

/// One JSON document: the outcome, and every report the command produced.
#[derive(Serialize)]
struct JsonOutput<'a> {
    command: &'static str,
    ok: bool,
    /// The SRV name, when the pods came from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    srv_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Pods that may be left paused by this run; empty when none is.
    maybe_paused: Vec<&'a str>,
    /// The command that unpauses them.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_command: Option<String>,
    /// What a rollback unpaused and left paused, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback: Option<&'a Rollback>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pause_completed_at_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unpause_started_at_us: Option<i64>,
    reports: Vec<&'a Report>,
}

fn maybe_paused<'a>(config: &Config, e: Option<&'a Error>) -> (Vec<&'a str>, Option<String>) {
    let stuck = e.map(Error::maybe_paused).unwrap_or_default();
    let command = (!stuck.is_empty()).then(|| crate::recovery::command(&config.tls_flags, &stuck));
    (stuck.into_iter().map(Target::name).collect(), command)
}

fn json(config: &Config, result: &Result<Report, Error>) {
    let reports: Vec<&Report> = match result {
        Ok(r) => vec![r],
        Err(e) => e.reports(),
    };
    let pause_completed_at_us = match (config.command, result) {
        (Command::Pause, Ok(r)) => Some(micros(r.completed_at())),
        _ => None,
    };
    let unpause_started_at_us = reports
        .iter()
        .find(|r| config.command == Command::Unpause && r.operation() == Operation::Unpause)
        .map(|r| micros(r.started_at()));
    let (maybe_paused, recovery_command) = maybe_paused(config, result.as_ref().err());
    let doc = JsonOutput {
        command: command_name(config.command),
        ok: result.is_ok(),
        srv_name: config.groups.iter().find_map(|g| match g {
            Group::Srv(name) => Some(name.as_str()),
            _ => None,
        }),
        error: result.as_ref().err().map(|e| e.to_string()),
        maybe_paused,
        recovery_command,
        rollback: result.as_ref().err().and_then(Error::rollback),
        pause_completed_at_us,
        unpause_started_at_us,
        reports,
    };
    say!("{}", to_json(&doc));
    if let Err(e) = result {
        tell!("{}", failure_text(config, e).trim_end());
    }
}

/// Pretty JSON. Serializing these shapes cannot fail (string keys, no maps of other
/// keys); should it, the error itself is the document, so stdout stays JSON.
fn to_json(doc: &impl Serialize) -> String {
    serde_json::to_string_pretty(doc).unwrap_or_else(|e| {
        serde_json::json!({ "ok": false, "error": format!("cannot write the report: {e}") })
            .to_string()
    })
}

/// An instant in the chosen time zone, to the microsecond:
/// `2026-11-25T05:01:48.123456+09:00[Asia/Tokyo]`.
pub(crate) fn zoned(t: SystemTime, tz: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => {
            let z = ts.to_zoned(tz.clone());
            let name = tz.iana_name().unwrap_or("UTC");
            format!("{}[{name}]", z.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z"))
        }
        Err(_) => format!("{t:?}"),
    }
}

/// A window's instants in both forms, as WINDOW's JSON and HISTORY print them:
/// microseconds since the epoch, and in the chosen time zone.
#[derive(Serialize)]
pub(crate) struct Instants {
    pub(crate) pause_completed_at_us: i64,
    pub(crate) unpause_started_at_us: i64,
    pub(crate) midpoint_us: i64,
    pub(crate) length_us: i64,
    pub(crate) pause_completed_at: String,
    pub(crate) unpause_started_at: String,
    pub(crate) midpoint: String,
}

impl Instants {
    /// From the instants in microseconds; the length from them, so that the fields
    /// agree exactly.
    pub(crate) fn new(start: i64, end: i64, mid: i64, tz: &jiff::tz::TimeZone) -> Self {
        let at = |us: i64| match u64::try_from(us) {
            Ok(us) => SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(us),
            Err(_) => SystemTime::UNIX_EPOCH,
        };
        Self {
            pause_completed_at_us: start,
            unpause_started_at_us: end,
            midpoint_us: mid,
            length_us: end.saturating_sub(start),
            pause_completed_at: zoned(at(start), tz),
            unpause_started_at: zoned(at(end), tz),
            midpoint: zoned(at(mid), tz),
        }
    }
}

/// One window in the JSON document: the instants in both forms, then the detail.
#[derive(Serialize)]
struct WindowJson<'a> {
    attempt: usize,
    verdict: &'static str,
    reasons: Vec<String>,
    #[serde(flatten)]
    instants: Instants,
    /// The --exec command's outcome, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<&'a ExecResult>,
    /// The hold asked for, beside what each pod saw.
    hold_us: i64,
    paused_per_pod: Vec<PodPauseJson>,
    detail: &'a WindowReport,
}

/// How long one pod was paused: at least from its Pause answer to its Unpause leaving,
/// at most from its Pause leaving to its Unpause answer.
#[derive(Serialize)]
struct PodPauseJson {
    pod: String,
    at_least_us: i64,
    at_most_us: i64,
}

fn micros_of(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// `Each pod paused: at least 1.000114 s, at most 1.002409 s (hold asked: 1.000000 s)`:
/// the shortest lower bound and the longest upper bound over the pods, beside the
/// hold; `None` without a pod to say it of.
fn paused_line(w: &WindowReport) -> Option<String> {
    let pods = w.paused_per_pod();
    let least = pods.iter().map(|p| p.at_least()).min()?;
    let most = pods.iter().map(|p| p.at_most()).max()?;
    Some(format!(
        "Each pod paused: at least {:.6} s, at most {:.6} s (hold asked: {:.6} s)",
        least.as_secs_f64(),
        most.as_secs_f64(),
        w.hold().as_secs_f64()
    ))
}

#[derive(Serialize)]
struct WindowsJson<'a> {
    command: &'static str,
    ok: bool,
    time_zone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    maybe_paused: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback: Option<&'a Rollback>,
    /// Every window tried; the last one counts.
    windows: Vec<WindowJson<'a>>,
    /// The fan-outs of a window that failed before it could be judged.
    reports: Vec<&'a Report>,
}

fn reasons(verdict: &Verdict) -> Vec<String> {
    verdict.findings().iter().map(ToString::to_string).collect()
}

/// Prints backup windows and decides the exit status: success only for a VALID last
/// window.
pub(crate) fn windows(
    config: &Config,
    result: &Result<Vec<WindowReport>, Error>,
    execs: &[ExecResult],
) -> ExitStatus {
    let exec_of = |attempt: usize| execs.iter().find(|e| e.attempt == attempt);
    let tz = &config.time_zone;
    let valid = result
        .as_ref()
        .map(|w| w.last().is_some_and(|w| w.verdict().is_valid()));
    match config.output {
        Output::Text => {
            if let Ok(windows) = result {
                let many = windows.len() > 1;
                for (i, w) in windows.iter().enumerate() {
                    if many {
                        say!("Attempt {} of {}:", i + 1, windows.len());
                    }
                    say!(
                        "{}",
                        instant_line("Pause completed", w.pause_completed_at())
                    );
                    say!(
                        "{}",
                        instant_line("Unpause started", w.unpause_started_at())
                    );
                    say!(
                        "Window: {} to {} ({:.6} s)",
                        zoned(w.pause_completed_at(), tz),
                        zoned(w.unpause_started_at(), tz),
                        w.length().as_secs_f64()
                    );
                    let (_, mid_ms) = java_instant(w.midpoint());
                    say!(
                        "Restore point (midpoint): {} ({mid_ms})",
                        zoned(w.midpoint(), tz)
                    );
                    if let Some(line) = paused_line(w) {
                        say!("{line}");
                    }
                    if let Some(exec) = exec_of(i + 1) {
                        say!("{}", exec.line());
                    }
                    if w.verdict().is_valid() {
                        say!("Verdict: VALID");
                    } else {
                        say!("Verdict: INVALID");
                        for finding in w.verdict().findings() {
                            say!("  {finding}");
                        }
                    }
                }
            }
        }
        Output::Json => {
            let windows: Vec<WindowJson> = result
                .as_ref()
                .map(|ws| {
                    ws.iter()
                        .enumerate()
                        .map(|(i, w)| {
                            let (start, end) = (
                                micros(w.pause_completed_at()),
                                micros(w.unpause_started_at()),
                            );
                            WindowJson {
                                attempt: i + 1,
                                verdict: if w.verdict().is_valid() {
                                    "VALID"
                                } else {
                                    "INVALID"
                                },
                                reasons: reasons(w.verdict()),
                                instants: Instants::new(start, end, micros(w.midpoint()), tz),
                                exec: exec_of(i + 1),
                                hold_us: micros_of(w.hold()),
                                paused_per_pod: w
                                    .paused_per_pod()
                                    .iter()
                                    .map(|p| PodPauseJson {
                                        pod: p.target().to_string(),
                                        at_least_us: micros_of(p.at_least()),
                                        at_most_us: micros_of(p.at_most()),
                                    })
                                    .collect(),
                                detail: w,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let (maybe_paused, recovery_command) = maybe_paused(config, result.as_ref().err());
            let doc = WindowsJson {
                command: "window",
                ok: matches!(valid, Ok(true)),
                time_zone: tz.iana_name().unwrap_or("UTC"),
                error: result.as_ref().err().map(|e| e.to_string()),
                maybe_paused,
                recovery_command,
                rollback: result.as_ref().err().and_then(Error::rollback),
                windows,
                reports: result
                    .as_ref()
                    .err()
                    .map(Error::reports)
                    .unwrap_or_default(),
            };
            say!("{}", to_json(&doc));
        }
    }
    match result {
        Ok(windows) => {
            if let Some(w) = windows.last().filter(|w| !w.verdict().is_valid()) {
                // Only a confirmed release is an `Ok`, so this is what its checks said.
                tell!(
                    "error: the backup window is INVALID after {} attempt(s); {} pod(s) confirmed unpaused by CheckPaused; do not restore to it",
                    windows.len(),
                    w.release().unpaused().count()
                );
            }
        }
        Err(e) => {
            // A command cut short by the failure (a signal) still says how it ended.
            for exec in execs {
                tell!("{} (attempt {})", exec.line(), exec.attempt);
            }
            tell!("{}", failure_text(config, e).trim_end())
        }
    }
    status(valid)
}
