//! `--journal FILE`: one JSON line per window attempt, written and fsynced when the
//! window opens and when it closes, so that a crash leaves an "open" line the next run
//! reports; `-c HISTORY` lists the restorable (VALID) periods from it.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use scalar_admin::unix_micros;
use scalar_admin::window::{Paused, WindowReport};
use serde::Serialize;
use serde_json::{Value, json};

use crate::args::{Config, Output};
use crate::exec::ExecResult;
use crate::output::{ExitStatus, Instants};

/// The journal, open for append.
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    keep: usize,
    /// This run's id: the process id and the start instant.
    run: String,
    /// Attempts opened and not yet closed.
    open: Vec<usize>,
}

/// One line read back, with its line number.
struct Line {
    number: usize,
    value: Value,
}

impl Line {
    fn key(&self) -> Option<(String, u64)> {
        Some((
            self.value.get("run")?.as_str()?.to_owned(),
            self.value.get("attempt")?.as_u64()?,
        ))
    }

    fn event(&self) -> Option<&str> {
        self.value.get("event")?.as_str()
    }
}

/// Reads every entry; a line that is not one is reported on stderr and skipped.
fn read(path: &Path) -> Result<Vec<Line>, String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read the journal {}: {e}", path.display())),
    };
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line = Line {
            number: i + 1,
            value: serde_json::from_str(raw).unwrap_or(Value::Null),
        };
        if line.key().is_none() || !matches!(line.event(), Some("open" | "close")) {
            tell!(
                "warning: journal {} line {}: not a journal entry, skipped",
                path.display(),
                line.number
            );
            continue;
        }
        lines.push(line);
    }
    Ok(lines)
}

/// Warns about every window that was opened and never closed: the tool died during it.
fn warn_unclosed(path: &Path, lines: &[Line]) {
    let closed: HashSet<_> = lines
        .iter()
        .filter(|l| l.event() == Some("close"))
        .filter_map(Line::key)
        .collect();
    for line in lines.iter().filter(|l| l.event() == Some("open")) {
        let Some(key) = line.key() else { continue };
        if closed.contains(&key) {
            continue;
        }
        let at = line
            .value
            .get("pause_completed_at")
            .and_then(Value::as_str)
            .unwrap_or("?");
        tell!(
            "warning: journal {} line {}: the window opened at {at} (attempt {}) was never closed: \
             the tool died during it; its pods may have been left paused, and it is no restore point",
            path.display(),
            line.number,
            key.1
        );
    }
}

impl Journal {
    /// Opens the journal for append (creating it), before anything is paused, and warns
    /// about windows a previous run left open.
    pub(crate) fn open(path: &Path, keep: usize) -> Result<Journal, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the journal {} for append: {e}", path.display()))?;
        if let Ok(lines) = read(path) {
            warn_unclosed(path, &lines);
        }
        Ok(Journal {
            path: path.to_owned(),
            file,
            keep,
            run: format!("{}-{}", std::process::id(), unix_micros(SystemTime::now())),
            open: Vec::new(),
        })
    }

    fn append(&mut self, entry: &Value) -> Result<(), String> {
        let mut line = entry.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot write to the journal {}: {e}", self.path.display()))
    }

    fn warn(&self, result: Result<(), String>) {
        if let Err(e) = result {
            tell!("warning: {e}");
        }
    }

    /// The window is open: every pod paused.
    pub(crate) fn opened(&mut self, paused: &Paused) {
        let (at, _) = crate::output::java_instant(paused.pause_completed_at());
        let pods: Vec<&str> = paused.pods().map(|t| t.name()).collect();
        let entry = json!({
            "event": "open",
            "run": self.run,
            "attempt": paused.attempt(),
            "pause_completed_at_us": unix_micros(paused.pause_completed_at()),
            "pause_completed_at": at,
            "pods": pods,
        });
        self.open.push(paused.attempt());
        let result = self.append(&entry);
        self.warn(result);
    }

    /// The window closed with this report.
    pub(crate) fn closed(&mut self, attempt: usize, w: &WindowReport, exec: Option<&ExecResult>) {
        let (start, end) = (
            unix_micros(w.pause_completed_at()),
            unix_micros(w.unpause_started_at()),
        );
        let reasons: Vec<String> = w
            .verdict()
            .findings()
            .iter()
            .map(ToString::to_string)
            .collect();
        let entry = json!({
            "event": "close",
            "run": self.run,
            "attempt": attempt,
            "pause_completed_at_us": start,
            "unpause_started_at_us": end,
            "midpoint_us": unix_micros(w.midpoint()),
            "length_us": end - start,
            "verdict": if w.verdict().is_valid() { "VALID" } else { "INVALID" },
            "reasons": reasons,
            "exec": exec,
        });
        self.open.retain(|a| *a != attempt);
        let result = self.append(&entry);
        self.warn(result);
    }

    /// The run failed: every window still open closes as FAILED with the error.
    pub(crate) fn failed(&mut self, error: &str, exec: &[ExecResult]) {
        for attempt in std::mem::take(&mut self.open) {
            let entry = json!({
                "event": "close",
                "run": self.run,
                "attempt": attempt,
                "verdict": "FAILED",
                "reasons": [error],
                "exec": exec.iter().find(|e| e.attempt == attempt),
            });
            let result = self.append(&entry);
            self.warn(result);
        }
    }

    /// Keeps the last `keep` windows: rewrites the file (a temporary file renamed over
    /// it) once it holds more.
    pub(crate) fn trim(&mut self) {
        let result = self.trim_inner();
        self.warn(result);
    }

    fn trim_inner(&mut self) -> Result<(), String> {
        let lines = read(&self.path)?;
        let mut order: Vec<(String, u64)> = Vec::new();
        for key in lines.iter().filter_map(Line::key) {
            if !order.contains(&key) {
                order.push(key);
            }
        }
        if order.len() <= self.keep {
            return Ok(());
        }
        let kept: HashSet<_> = order[order.len() - self.keep..].iter().cloned().collect();
        let mut text = String::new();
        for line in lines
            .iter()
            .filter(|l| l.key().is_some_and(|k| kept.contains(&k)))
        {
            text.push_str(&line.value.to_string());
            text.push('\n');
        }
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self
            .path
            .with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let err =
            |e: std::io::Error| format!("cannot rewrite the journal {}: {e}", self.path.display());
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        Ok(())
    }
}

/// One restorable period in HISTORY's JSON.
#[derive(Serialize)]
struct Period {
    #[serde(flatten)]
    instants: Instants,
    attempt: u64,
    pods: Value,
    exec: Value,
}

/// `-c HISTORY`: the VALID windows of the journal, newest first. Contacts no pod.
pub(crate) fn history(config: &Config) -> ExitStatus {
    let Some(path) = &config.journal else {
        tell!("error: -c HISTORY needs --journal FILE");
        return ExitStatus::Usage;
    };
    let lines = match read(path) {
        Ok(lines) => lines,
        Err(e) => {
            tell!("error: {e}");
            return ExitStatus::Failure;
        }
    };
    warn_unclosed(path, &lines);
    let tz = &config.time_zone;
    let opens: HashMap<_, _> = lines
        .iter()
        .filter(|l| l.event() == Some("open"))
        .filter_map(|l| Some((l.key()?, &l.value)))
        .collect();
    let mut periods: Vec<Period> = lines
        .iter()
        .filter(|l| l.event() == Some("close") && l.value["verdict"] == "VALID")
        .filter_map(|l| {
            let v = &l.value;
            let (start, end, mid) = (
                v["pause_completed_at_us"].as_i64()?,
                v["unpause_started_at_us"].as_i64()?,
                v["midpoint_us"].as_i64()?,
            );
            let key = l.key()?;
            Some(Period {
                instants: Instants::new(start, end, mid, tz),
                attempt: key.1,
                pods: opens
                    .get(&key)
                    .map(|o| o["pods"].clone())
                    .unwrap_or(Value::Null),
                exec: v.get("exec").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    periods.sort_by_key(|p| std::cmp::Reverse(p.instants.pause_completed_at_us));
    match config.output {
        Output::Json => {
            let doc = json!({
                "command": "history",
                "journal": path.display().to_string(),
                "time_zone": tz.iana_name().unwrap_or("UTC"),
                "windows": periods,
            });
            say!(
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
            );
        }
        Output::Text => {
            if periods.is_empty() {
                say!("No restorable window in {}", path.display());
            } else {
                say!(
                    "{:<44}  {:<44}  {:>12}  {:>4}  {}",
                    "RESTORE POINT (MIDPOINT)",
                    "WINDOW START",
                    "LENGTH S",
                    "PODS",
                    "EXEC"
                );
                for p in &periods {
                    let pods = p.pods.as_array().map_or(0, Vec::len);
                    let exec = match &p.exec {
                        Value::Null => "-".to_owned(),
                        e => match (e["exit_code"].as_i64(), e["timed_out"].as_bool()) {
                            (_, Some(true)) => "timed out".to_owned(),
                            (Some(code), _) => format!("exit {code}"),
                            _ => "failed".to_owned(),
                        },
                    };
                    say!(
                        "{:<44}  {:<44}  {:>12.6}  {:>4}  {}",
                        p.instants.midpoint,
                        p.instants.pause_completed_at,
                        p.instants.length_us as f64 / 1e6,
                        pods,
                        exec
                    );
                }
            }
        }
    }
    ExitStatus::Success
}
