//! Flags in two stages (ripgrep's): [`LowArgs`] holds what was typed and only checks
//! its shape; [`Config::from_low_args`] turns it into library options, reading and
//! checking everything (addresses, names, certificates) before any pod is contacted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, ArgGroup, Parser, ValueEnum};
use scalar_admin::kubernetes::{KubeConfig, KubeGroup, Selector};
use scalar_admin::window::{Group, OnActionError, Window};

use crate::exec::{Exec, Program};
use crate::guardian::{Setup, TlsSetup, millis};
use crate::recovery::quote;

/// `--exec-timeout`'s default, as Velero's backup hooks'.
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// `--duration`'s default, the window's own.
const DEFAULT_HOLD: Duration = Duration::from_secs(10);

/// What the default `--max-hold` allows beyond the limits of every step: connecting, the
/// Pause's deadline, the hold and the command, the verification, the release.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

/// `--rollback-timeout`'s default, the library's.
const DEFAULT_ROLLBACK: Duration = Duration::from_secs(15);
use scalar_admin::{ClientConfig, DnsConfig, InvalidInput, PauseOptions, Tls};

/// Pause, unpause or check every pod of a ScalarDB or ScalarDL deployment.
///
/// Accepts the command line of the Java `scalar-admin` tool and prints the lines its
/// users' scripts read: "Pause completed at ..." after a pause, "Unpause started at ..."
/// for an unpause, and a JSON object of each pod's state for CHECK_PAUSED.
///
/// WINDOW runs a whole backup window in one command: pause every group given (repeat -s
/// and -a, one per product), hold for --duration, check that no pod was added or
/// restarted, unpause, and print the restorable window, its midpoint and a verdict.
///
/// HISTORY lists the restorable (VALID) windows recorded in --journal, newest first; it
/// contacts no pod.
///
/// Exit status: 0 on success (for WINDOW: a VALID window); 1 when the command failed
/// on any pod (the message says which pods, and what state the cluster is left in);
/// 2 for a usage error, found before any pod is contacted.
#[derive(Debug, Parser)]
#[command(name = "scalar-admin", version, max_term_width = 100)]
#[command(group(ArgGroup::new("pods").multiple(true).args(["srv_service_url", "addresses", "release_name", "selector", "deployment"])))]
pub(crate) struct LowArgs {
    /// The command: PAUSE, UNPAUSE, CHECK_PAUSED, WINDOW or HISTORY (any case).
    #[arg(short, long, value_enum, ignore_case = true)]
    pub(crate) command: Command,

    /// The DNS SRV name listing the pods, e.g.
    /// _scalardb._tcp.scalardb-headless.ns.svc.cluster.local, or the short
    /// _scalardb._tcp.scalardb-headless inside the namespace.
    /// Only WINDOW takes several -s and -a, one per group.
    #[arg(short, long, value_name = "NAME", action = ArgAction::Append)]
    pub(crate) srv_service_url: Vec<String>,

    /// The pods' admin addresses, host:port,host:port (IPv6 as [::1]:60051).
    #[arg(short, long, value_name = "LIST", action = ArgAction::Append)]
    pub(crate) addresses: Vec<String>,

    /// The Kubernetes way: the pods of this Helm release, found through the Kubernetes
    /// API (labels app.kubernetes.io/instance, and app.kubernetes.io/app for the
    /// product), with the admin port from the release's headless Service and the
    /// endpoints from its EndpointSlices. NS/RELEASE for another namespace than
    /// --namespace; CONTEXT:NS/RELEASE (or CONTEXT:RELEASE) for another kubeconfig
    /// context than --context, so that one window spans clusters. Only WINDOW takes
    /// several.
    #[arg(short, long, value_name = "RELEASE", action = ArgAction::Append)]
    pub(crate) release_name: Vec<String>,

    /// The Kubernetes way: the pods matching this label selector (kubectl's -l).
    #[arg(long, value_name = "SELECTOR", action = ArgAction::Append)]
    pub(crate) selector: Vec<String>,

    /// The Kubernetes way: the pods of this Deployment ([CONTEXT:][NS/]NAME, as -r).
    #[arg(long, value_name = "NAME", action = ArgAction::Append)]
    pub(crate) deployment: Vec<String>,

    /// The namespace of -r, --selector and --deployment (default: the kubeconfig
    /// context's, or inside a pod its own).
    #[arg(long, value_name = "NS")]
    pub(crate) namespace: Option<String>,

    /// The kubeconfig file (default: KUBECONFIG, ~/.kube/config, or inside a pod its
    /// service account).
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,

    /// The kubeconfig context (default: the current one).
    #[arg(long, value_name = "NAME")]
    pub(crate) context: Option<String>,

    /// Pause without waiting for in-flight requests to finish.
    #[arg(short, long)]
    pub(crate) no_wait: bool,

    /// How long each pod waits for in-flight requests before refusing to pause, in
    /// milliseconds. Unset, or 0, means the pods' default (30000): 0 is then not sent,
    /// since ScalarDL rejects it while ScalarDB reads it as the default.
    #[arg(short, long, value_name = "MS")]
    pub(crate) max_pause_wait_time: Option<u64>,

    /// Connect with TLS. The server certificate is always verified.
    #[arg(long)]
    pub(crate) tls: bool,

    /// A PEM file of CA certificates to verify the pods with (system roots otherwise).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub(crate) ca_root_cert_path: Option<PathBuf>,

    /// The CA certificates as PEM text; a literal \n stands for a newline. Wins over
    /// --ca-root-cert-path.
    #[arg(long, value_name = "PEM", requires = "tls", allow_hyphen_values = true)]
    pub(crate) ca_root_cert_pem: Option<String>,

    /// The name expected in the pods' certificates, instead of the host connected to.
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub(crate) override_authority: Option<String>,

    /// Output for humans and the Java tool's scripts (text), or one JSON document for
    /// programs (json).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,

    /// Deadline of each call, e.g. 10s or 500ms (default: 10s; for a waiting pause,
    /// the pods' wait limit plus 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,

    /// Time allowed to connect to each pod.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub(crate) connect_timeout: Duration,

    /// Ask this name server (ip:port) instead of the system's for -s.
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) dns_server: Option<SocketAddr>,

    /// Leave the pods that paused paused when the pause fails on another pod. By default
    /// every pod is unpaused again.
    #[arg(long)]
    pub(crate) no_rollback: bool,

    /// How long a rollback (or a window's end) may spend unpausing and confirming with
    /// CheckPaused that every pod it paused is unpaused, e.g. 15s (the default).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) rollback_timeout: Option<Duration>,

    /// WINDOW: how long the pods stay paused, the period backups can restore to.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,

    /// WINDOW: how many windows to try while they come out INVALID.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) attempts: Option<u32>,

    /// PAUSE and WINDOW: pause even when a pod already reports paused by someone else,
    /// and take such pods over: a rollback (or the window's end) unpauses them too.
    /// Without it such a run refuses before any Pause is sent.
    #[arg(long)]
    pub(crate) force: bool,

    /// WINDOW: the time zone of the printed window, e.g. Asia/Tokyo (default UTC).
    // No `default_value`: looking a zone up scans the system's zoneinfo, a cost every
    // command would pay at start-up.
    #[arg(long, value_name = "TZ", value_parser = parse_time_zone)]
    pub(crate) time_zone: Option<jiff::tz::TimeZone>,

    /// WINDOW: a backup command run through `sh -c` once every pod is paused; the hold
    /// lasts at least --duration and until it ends. Its environment has
    /// SCALAR_ADMIN_PAUSE_COMPLETED_MS (epoch ms), SCALAR_ADMIN_PAUSE_COMPLETED_AT (RFC
    /// 3339, UTC), SCALAR_ADMIN_ATTEMPT and SCALAR_ADMIN_PODS_FILE (a JSON file of the
    /// groups and pods); its output goes to stderr, prefixed "exec: ". Or give the
    /// command as arguments after `--`.
    #[arg(long, value_name = "CMD", conflicts_with = "exec_argv")]
    pub(crate) exec: Option<String>,

    /// WINDOW: the backup command as an argument vector, run as is (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) exec_argv: Vec<String>,

    /// WINDOW: how long the backup command may run before its whole process group is
    /// killed (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) exec_timeout: Option<Duration>,

    /// WINDOW: whether a failed backup command (non-zero exit, killed, timed out) makes
    /// the window INVALID (fail, the default) or is only reported (continue).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub(crate) on_error: Option<OnError>,

    /// WINDOW: append one JSON line per window to FILE when it opens and when it closes
    /// (fsynced); or, with k8s:NAMESPACE (k8s: alone: the context's namespace, or inside
    /// a pod its own), keep one ConfigMap per window there, through the Kubernetes API.
    /// HISTORY: the journal to read.
    #[arg(long, value_name = "FILE|k8s:NAMESPACE")]
    pub(crate) journal: Option<PathBuf>,

    /// WINDOW: the lease of the guardian process, which unpauses the pods if this tool
    /// dies (SIGKILL, OOM kill, crash) or has not ended an attempt within this long after
    /// its Pause (default: the sum of every step's limits, the Pause's deadline,
    /// --duration, --exec-timeout, the verification and --rollback-timeout, plus 1m).
    /// PAUSE: give the pause such a lease, after which it is unpaused unless someone
    /// unpaused it first (off by default: a plain pause outlives the command).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) max_hold: Option<Duration>,

    /// WINDOW: run without the guardian process; a SIGKILL during the hold then leaves
    /// the pods paused.
    #[arg(long, conflicts_with = "max_hold")]
    pub(crate) no_guardian: bool,

    /// WINDOW: how many windows the journal retains; older ones are dropped.
    #[arg(long, alias = "journal-keep", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) journal_retain: Option<u32>,

    /// Log more to stderr (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Log only errors to stderr.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

/// The admin commands, spelled as the Java tool spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Command {
    /// Pause every pod.
    Pause,
    /// Unpause every pod.
    Unpause,
    /// Report whether each pod is paused.
    CheckPaused,
    /// Pause every group, hold, verify, unpause: one backup window.
    Window,
    /// List the restorable windows of --journal, newest first.
    History,
}

/// What a failed `--exec` does to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnError {
    /// The window is INVALID.
    Fail,
    /// The failure is reported; the verdict comes from the checks.
    Continue,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// For humans and for the Java tool's scripts.
    Text,
    /// For computers: one JSON document on stdout.
    Json,
}

/// Parses `500ms`, `10s`, `2m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}: use ms, s or m")),
    };
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("{text:?} must be more than 0 and at most a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub(crate) fn parse_time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name)
        .map_err(|_| format!("unknown time zone {name:?}: use an IANA name like Asia/Tokyo"))
}

/// A usage error found after parsing: bad input, or flags that do not fit together.
#[derive(Debug)]
pub(crate) struct Usage(String);

impl From<InvalidInput> for Usage {
    fn from(e: InvalidInput) -> Self {
        Usage(e.to_string())
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What [`TlsFlags::build`] gives: the TLS settings, the recovery command's flags, and
/// TLS as the guardian rebuilds it.
pub(crate) type BuiltTls = (Option<Tls>, Vec<String>, Option<TlsSetup>);

/// The TLS flags both command lines share, as typed.
pub(crate) struct TlsFlags<'a> {
    pub(crate) tls: bool,
    pub(crate) ca_root_cert_pem: Option<&'a str>,
    pub(crate) ca_root_cert_path: Option<&'a std::path::Path>,
    pub(crate) override_authority: Option<&'a str>,
}

impl TlsFlags<'_> {
    /// The TLS settings (`None` for plaintext), the flags as a recovery command repeats
    /// them, and TLS as the guardian rebuilds it (the certificates read once, here). The
    /// PEM text may carry literal `\n` for newlines, and wins over the path, as in the
    /// Java tools.
    pub(crate) fn build(&self) -> Result<BuiltTls, Usage> {
        if !self.tls {
            return Ok((None, Vec::new(), None));
        }
        let mut flags = vec!["--tls".to_owned()];
        let pem = if let Some(pem) = self.ca_root_cert_pem {
            flags.push("--ca-root-cert-pem '<the same PEM>'".to_owned());
            Some(pem.replace("\\n", "\n"))
        } else if let Some(path) = self.ca_root_cert_path {
            // A path that is no file (`<(cat ca.pem)`, a pipe) cannot be read again.
            let again = std::fs::metadata(path).is_ok_and(|m| m.is_file());
            flags.push(if again {
                format!("--ca-root-cert-path {}", quote(&path.display().to_string()))
            } else {
                "--ca-root-cert-path '<the CA file>'".to_owned()
            });
            // Read once: a path like `<(cat ca.pem)` cannot be read again.
            let bad = |reason: &dyn std::fmt::Display| {
                Usage(format!(
                    "CA certificate file {:?}: {reason}",
                    path.display().to_string()
                ))
            };
            let pem = std::fs::read(path).map_err(|e| bad(&e))?;
            Tls::with_ca_pem(&pem).map_err(|e| bad(&e.reason()))?;
            Some(String::from_utf8_lossy(&pem).into_owned())
        } else {
            None
        };
        let mut tls = match &pem {
            Some(pem) => Tls::with_ca_pem(pem)?,
            None => Tls::system_roots()?,
        };
        if let Some(authority) = self.override_authority {
            flags.push(format!("--override-authority {}", quote(authority)));
            tls = tls.authority(authority)?;
        }
        let setup = TlsSetup {
            ca_pem: pem,
            authority: self.override_authority.map(str::to_owned),
        };
        Ok((Some(tls), flags, Some(setup)))
    }
}

/// Everything a command needs, checked.
pub(crate) struct Config {
    pub(crate) command: Command,
    /// Where the pods are: exactly one group except for WINDOW.
    pub(crate) groups: Vec<Group>,
    pub(crate) client: ClientConfig,
    pub(crate) dns: DnsConfig,
    pub(crate) pause: PauseOptions,
    pub(crate) window: Window,
    pub(crate) time_zone: jiff::tz::TimeZone,
    pub(crate) output: Output,
    /// The TLS flags as typed, for the recovery command printed on failure.
    pub(crate) tls_flags: Vec<String>,
    /// WINDOW's backup command.
    pub(crate) exec: Option<Exec>,
    /// WINDOW's and HISTORY's journal.
    pub(crate) journal: Option<crate::journal::Place>,
    pub(crate) journal_retain: usize,
    /// The longest a WINDOW attempt may last from its pause (the guardian's lease,
    /// whether or not there is a guardian): a journal in the cluster takes a window
    /// still open after that as left by a run that died.
    pub(crate) window_bound: Duration,
    /// The guardian's lease, when this command has a guardian: every WINDOW unless
    /// --no-guardian, and PAUSE with --max-hold.
    pub(crate) lease: Option<Duration>,
    /// What the guardian needs to reach the pods as this run does.
    pub(crate) guardian: Setup,
    /// Where to panic on purpose, for the tests of panic safety
    /// (`SCALAR_ADMIN_INJECT_PANIC`, read only by a build with the `fault-injection`
    /// feature, which only the tests enable).
    pub(crate) inject_panic: Option<String>,
}

impl Config {
    pub(crate) fn from_low_args(low: &LowArgs) -> Result<Config, Usage> {
        let usage = |flags: &str, reason: &str| Usage(format!("{flags}: {reason}"));
        let mut groups: Vec<Group> = low
            .srv_service_url
            .iter()
            .cloned()
            .map(Group::Srv)
            .collect();
        for list in &low.addresses {
            groups.push(Group::Addresses(scalar_admin::parse_addresses(list)?));
        }
        let mut kube = KubeConfig::default();
        if let Some(path) = &low.kubeconfig {
            kube = kube.kubeconfig(path);
        }
        if let Some(context) = &low.context {
            kube = kube.context(context);
        }
        let selectors = low
            .release_name
            .iter()
            .map(|r| Selector::Release(r.clone()))
            .chain(low.selector.iter().map(|s| Selector::Labels(s.clone())))
            .chain(
                low.deployment
                    .iter()
                    .map(|d| Selector::Deployment(d.clone())),
            );
        // One configuration per context, so that the groups of a cluster share its client.
        let mut contexts: std::collections::HashMap<String, KubeConfig> =
            std::collections::HashMap::new();
        for selector in selectors {
            // `[CONTEXT:][NS/]NAME` names a release or Deployment of another namespace,
            // or of another cluster, so that one window can span products in several.
            let (context, namespace, selector) = match selector {
                Selector::Release(r) => {
                    let (context, ns, name) = qualified(&r)?;
                    (context, ns, Selector::Release(name))
                }
                Selector::Deployment(d) => {
                    let (context, ns, name) = qualified(&d)?;
                    (context, ns, Selector::Deployment(name))
                }
                other => (None, None, other),
            };
            let config = match context {
                Some(context) => contexts
                    .entry(context.clone())
                    .or_insert_with(|| kube.clone().context(context))
                    .clone(),
                None => kube.clone(),
            };
            let mut group = KubeGroup::new(config, selector);
            if let Some(ns) = namespace.as_ref().or(low.namespace.as_ref()) {
                group = group.namespace(ns);
            }
            groups.push(Group::Kubernetes(group));
        }
        let journal = match &low.journal {
            Some(path) => Some(
                crate::journal::Place::parse(
                    path,
                    low.kubeconfig.as_deref(),
                    low.context.as_deref(),
                )
                .map_err(|e| usage("--journal", &e))?,
            ),
            None => None,
        };
        let in_cluster = journal
            .as_ref()
            .is_some_and(crate::journal::Place::is_cluster);
        let retain_max = crate::journal::MAX_RETAINED_IN_CLUSTER;
        if in_cluster && low.journal_retain.is_some_and(|n| n as usize > retain_max) {
            return Err(usage(
                "--journal-retain",
                &format!("at most {retain_max} with a journal in the cluster (k8s:)"),
            ));
        }
        if low.namespace.is_some() && !groups.iter().any(|g| matches!(g, Group::Kubernetes(_))) {
            return Err(usage(
                "--namespace",
                "only applies with -r, --selector or --deployment",
            ));
        }
        let kubernetes_flags = low.kubeconfig.is_some() || low.context.is_some();
        if kubernetes_flags
            && !in_cluster
            && !groups.iter().any(|g| matches!(g, Group::Kubernetes(_)))
        {
            return Err(usage(
                "--kubeconfig/--context",
                "only apply with -r, --selector, --deployment or --journal k8s:",
            ));
        }
        let exec_flags = low.exec.is_some()
            || !low.exec_argv.is_empty()
            || low.exec_timeout.is_some()
            || low.on_error.is_some();
        if exec_flags && low.command != Command::Window {
            return Err(usage(
                "--exec/--exec-timeout/--on-error/-- COMMAND",
                "only apply to -c WINDOW",
            ));
        }
        if (low.exec_timeout.is_some() || low.on_error.is_some())
            && low.exec.is_none()
            && low.exec_argv.is_empty()
        {
            return Err(usage(
                "--exec-timeout/--on-error",
                "only apply with --exec CMD or -- COMMAND",
            ));
        }
        if low.no_rollback && low.max_hold.is_some() {
            return Err(usage(
                "--no-rollback/--max-hold",
                "contradict: one leaves a failed pause's pods paused, the other unpauses them",
            ));
        }
        if low.no_guardian && low.command != Command::Window {
            return Err(usage("--no-guardian", "only applies to -c WINDOW"));
        }
        if low.journal_retain.is_some() && low.journal.is_none() {
            return Err(usage("--journal-retain", "only applies with --journal"));
        }
        if low.command == Command::History {
            // Reads the journal only: the pod flags, if any, are not used.
            if low.journal.is_none() {
                return Err(usage("-c HISTORY", "needs --journal FILE or k8s:NAMESPACE"));
            }
        } else if low.journal.is_some() && low.command != Command::Window {
            return Err(usage(
                "--journal",
                "only applies to -c WINDOW and -c HISTORY",
            ));
        } else if low.command == Command::Window {
            if groups.is_empty() {
                return Err(usage("-s/-a", "WINDOW needs at least one group"));
            }
        } else {
            if groups.len() != 1 {
                return Err(usage(
                    "-s/-a",
                    "give exactly one of -s NAME, -a LIST, -r RELEASE, --selector or --deployment (only WINDOW takes several)",
                ));
            }
            if low.duration.is_some() || low.attempts.is_some() {
                return Err(usage("--duration/--attempts", "only apply to -c WINDOW"));
            }
            if low.force && low.command != Command::Pause {
                return Err(usage("--force", "only applies to -c PAUSE and -c WINDOW"));
            }
        }

        let (tls, tls_flags, tls_setup) = TlsFlags {
            tls: low.tls,
            ca_root_cert_pem: low.ca_root_cert_pem.as_deref(),
            ca_root_cert_path: low.ca_root_cert_path.as_deref(),
            override_authority: low.override_authority.as_deref(),
        }
        .build()?;
        // What the guardian gets over its link; the tool's own client is built from it.
        let guardian = Setup {
            connect_timeout_ms: millis(low.connect_timeout),
            call_timeout_ms: low.timeout.map(millis),
            rollback_budget_ms: low.rollback_timeout.map(millis),
            tls: tls_setup,
            recovery_flags: tls_flags.clone(),
        };
        let client = guardian.client_with(tls);

        let mut dns = DnsConfig::default();
        if let Some(server) = low.dns_server {
            dns = dns.name_server(server);
        }

        let mut pause = PauseOptions::default()
            .wait_outstanding(!low.no_wait)
            .rollback(!low.no_rollback)
            .take_over(low.force);
        if let Some(ms) = low.max_pause_wait_time {
            pause = pause.max_pause_wait(Duration::from_millis(ms));
        }
        let hold = low.duration.unwrap_or(DEFAULT_HOLD);
        let lease = match low.command {
            Command::Window => {
                let exec = if low.exec.is_some() || !low.exec_argv.is_empty() {
                    low.exec_timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT)
                } else {
                    Duration::ZERO
                };
                let held = hold.saturating_add(exec);
                let lease = low.max_hold.unwrap_or_else(|| {
                    // Every step's own limit, so that only a hung tool meets the lease.
                    [
                        client.connect_deadline(),
                        client.pause_deadline(&pause),
                        held,
                        client.call_deadline(),
                        low.rollback_timeout.unwrap_or(DEFAULT_ROLLBACK),
                        LEASE_MARGIN,
                    ]
                    .into_iter()
                    .fold(Duration::ZERO, Duration::saturating_add)
                });
                if lease <= held {
                    return Err(usage(
                        "--max-hold",
                        "must be longer than --duration (10s by default) plus --exec-timeout, or every window would end early",
                    ));
                }
                Some(lease)
            }
            Command::Pause => low.max_hold,
            _ if low.max_hold.is_some() || low.no_guardian => {
                return Err(usage(
                    "--max-hold/--no-guardian",
                    "only apply to -c WINDOW and -c PAUSE",
                ));
            }
            _ => None,
        };
        let mut window = Window::new(groups.clone())
            .client(client.clone())
            .dns(dns.clone())
            .pause_options(pause)
            .force(low.force);
        if let Some(hold) = low.duration {
            window = window.hold(hold);
        }
        if let Some(attempts) = low.attempts {
            window = window.attempts(attempts as usize);
        }
        if low.on_error == Some(OnError::Continue) {
            window = window.on_action_error(OnActionError::Continue);
        }
        let program = match (&low.exec, low.exec_argv.is_empty()) {
            (Some(script), _) => Some(Program::Shell(script.clone())),
            (None, false) => Some(Program::Argv(low.exec_argv.clone())),
            (None, true) => None,
        };
        let exec = program.map(|program| Exec {
            program,
            timeout: low.exec_timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT),
        });

        Ok(Config {
            command: low.command,
            groups,
            client,
            dns,
            pause,
            window,
            time_zone: low.time_zone.clone().unwrap_or(jiff::tz::TimeZone::UTC),
            output: low.output,
            exec,
            journal,
            journal_retain: low.journal_retain.map_or(100, |n| n as usize),
            window_bound: lease.unwrap_or(Duration::MAX),
            lease: if low.no_guardian { None } else { lease },
            guardian,
            tls_flags,
            inject_panic: if cfg!(feature = "fault-injection") {
                std::env::var("SCALAR_ADMIN_INJECT_PANIC").ok()
            } else {
                None
            },
        })
    }
}

/// `[CONTEXT:][NS/]NAME`: the context, the namespace and the name. Names and namespaces
/// are DNS labels (no `:` or `/`), so both split from the right: a context may hold
/// either (`arn:aws:eks:...:cluster/prod`).
fn qualified(value: &str) -> Result<(Option<String>, Option<String>, String), Usage> {
    let bad = |why: &str| Usage(format!("-r/--deployment {value:?}: {why}"));
    let (prefix, name) = match value.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => match value.rsplit_once(':') {
            Some((context, name)) => {
                if context.is_empty() {
                    return Err(bad("the context before ':' is empty"));
                }
                return Ok((Some(context.to_owned()), None, non_empty(name, &bad)?));
            }
            None => (None, value),
        },
    };
    let name = non_empty(name, &bad)?;
    if name.contains(':') {
        // `arn:...:cluster/prod:db`: a context with a `/` needs the namespace given.
        return Err(bad("a name has no ':'; give CONTEXT:NS/NAME"));
    }
    let Some(prefix) = prefix else {
        return Ok((None, None, name));
    };
    let (context, ns) = match prefix.rsplit_once(':') {
        Some(("", _)) => {
            return Err(bad("the context before ':' is empty"));
        }
        Some((context, ns)) => (Some(context.to_owned()), ns),
        None => (None, prefix),
    };
    Ok((context, Some(non_empty(ns, &bad)?), name))
}

fn non_empty(part: &str, bad: &impl Fn(&str) -> Usage) -> Result<String, Usage> {
    if part.is_empty() {
        Err(bad("a namespace or name is empty"))
    } else {
        Ok(part.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        for bad in ["", "s", "0", "-1s", "10h", "1e9", "NaN", "99999999m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn releases_name_their_context_and_namespace_from_the_right() {
        let some = |s: &str| Some(s.to_owned());
        for (value, context, ns, name) in [
            ("db", None, None, "db"),
            ("ns/db", None, some("ns"), "db"),
            ("prod:db", some("prod"), None, "db"),
            ("prod:ns/db", some("prod"), some("ns"), "db"),
            (
                "arn:aws:eks:us-east-1:1:cluster/prod:ns/db",
                some("arn:aws:eks:us-east-1:1:cluster/prod"),
                some("ns"),
                "db",
            ),
            ("admin@kind-a:ns/db", some("admin@kind-a"), some("ns"), "db"),
        ] {
            let got = qualified(value).unwrap();
            assert_eq!(got, (context, ns, name.to_owned()), "{value}");
        }
        for bad in [
            "",
            "ns/",
            "/db",
            ":db",
            "prod:",
            "prod:/db",
            ":ns/db",
            "arn:aws:eks:r:1:cluster/prod:db",
        ] {
            assert!(qualified(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        LowArgs::command().debug_assert();
    }
}
