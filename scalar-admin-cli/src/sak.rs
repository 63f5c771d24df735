//! The command line of Scalar Admin for Kubernetes, for Jobs and CronJobs built for that
//! tool: the same flags, one line of JSON on success, exit 0 or 1.
//!
//! Chosen by the program name (`scalar-admin-for-kubernetes`, a link to this binary),
//! busybox-style, rather than a second binary: one build, one file in the image, and a
//! Job made for the other tool needs only its image changed when the image's entrypoint
//! is that name. Behind it is the same backup window as `-c WINDOW -r RELEASE`: pods
//! checked Running and ready first, paused together with rollback, held, verified
//! against the snapshot taken before (restarts, UIDs, pods added or removed, the
//! Deployment's generation), unpaused with confirmation, and compared again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Parser;
use scalar_admin::kubernetes::{KubeConfig, KubeGroup, Selector};
use scalar_admin::window::{Finding, Group, Window, WindowReport};
use scalar_admin::{ClientConfig, Error, PauseOptions};

use crate::args::{TlsFlags, parse_time_zone};
use crate::output::ExitStatus;

/// Pause every pod of a Scalar product's Helm release for a while, for a backup, as
/// Scalar Admin for Kubernetes does; prints the paused period as one line of JSON.
#[derive(Debug, Parser)]
#[command(name = "scalar-admin-for-kubernetes", version, max_term_width = 100)]
pub(crate) struct SakArgs {
    /// The Helm release of ScalarDB Cluster, ScalarDL Ledger or Auditor.
    #[arg(short = 'r', long, required_unless_present = "deployment_name")]
    release_name: Option<String>,

    /// How the pods are found: by Helm release, or by Deployment.
    #[arg(long, value_enum, default_value_t = DiscoveryMode::HelmRelease)]
    pod_discovery_mode: DiscoveryMode,

    /// The Deployment, with --pod-discovery-mode deployment.
    #[arg(long)]
    deployment_name: Option<String>,

    /// The release's namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,

    /// How long the pods stay paused, in milliseconds.
    #[arg(short = 'd', long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=i32::MAX as u64))]
    pause_duration: u64,

    /// How long each pod waits for in-flight requests, in milliseconds (default: the
    /// product's own).
    #[arg(short = 'w', long, value_name = "MS")]
    max_pause_wait_time: Option<u64>,

    /// The time zone of the printed date times: an IANA name, `Z`, or an offset such as
    /// `+09:00` (as Java's `ZoneId.of` takes them).
    #[arg(short = 'z', long, default_value = "Etc/UTC", value_parser = parse_zone)]
    time_zone: Zone,

    /// Connect with TLS.
    #[arg(long)]
    tls: bool,

    /// A PEM file of CA certificates (used with --tls).
    #[arg(long, value_name = "FILE")]
    ca_root_cert_path: Option<PathBuf>,

    /// CA certificates as PEM text; wins over --ca-root-cert-path (used with --tls).
    #[arg(long, value_name = "PEM", allow_hyphen_values = true)]
    ca_root_cert_pem: Option<String>,

    /// The name expected in the pods' certificates (used with --tls).
    #[arg(long, value_name = "NAME")]
    override_authority: Option<String>,
}

/// The other tool's discovery modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DiscoveryMode {
    /// By Helm release (`-r`).
    HelmRelease,
    /// By Deployment (`--deployment-name`).
    Deployment,
}

/// A time zone as given, and its rules.
#[derive(Debug, Clone)]
struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

fn parse_zone(name: &str) -> Result<Zone, String> {
    let tz = if name == "Z" {
        jiff::tz::TimeZone::UTC
    } else if let Some(rest) = name.strip_prefix(['+', '-']) {
        // `+H`, `+HH`, `+HH:MM`, `+HHMM`, as Java's ZoneOffset.of.
        let bad = || format!("invalid offset {name:?}: use +HH:MM");
        let digits: String = rest.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let (h, m) = digits.split_at(digits.len().min(2));
        let hours: i32 = h.parse().map_err(|_| bad())?;
        let minutes: i32 = if m.is_empty() {
            0
        } else {
            m.parse().map_err(|_| bad())?
        };
        if hours > 18 || minutes > 59 {
            return Err(bad());
        }
        let sign = if name.starts_with('-') { -1 } else { 1 };
        let offset = jiff::tz::Offset::from_seconds(sign * (hours * 3600 + minutes * 60))
            .map_err(|_| bad())?;
        jiff::tz::TimeZone::fixed(offset)
    } else {
        parse_time_zone(name)?
    };
    Ok(Zone {
        name: name.to_owned(),
        tz,
    })
}

/// The one line Scalar Admin for Kubernetes prints.
#[derive(serde::Serialize)]
struct SakResult<'a> {
    namespace: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    helm_release_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_name: Option<&'a str>,
    pause_start_timestamp_ms: i64,
    pause_end_timestamp_ms: i64,
    pause_start_date_time: String,
    pause_end_date_time: String,
    timezone: &'a str,
}

/// Whether this process was started under the other tool's name.
pub(crate) fn is_invoked() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|name| name == "scalar-admin-for-kubernetes")
}

/// Parses, runs and prints; the exit status is 0 or 1 as the other tool's (2 for flags
/// its parser would reject too).
pub(crate) fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = match crate::parse::<SakArgs>(&argv) {
        Ok(args) => args,
        Err(status) => return status,
    };
    let window = match window(&args) {
        Ok(window) => window,
        // As the other tool: anything past its flag parser (an unreadable CA file...)
        // fails with 1.
        Err(message) => {
            tell!("error: {message}");
            return ExitStatus::Failure.into();
        }
    };
    crate::init_logging(false, 0, false);
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        tell!("error: cannot start the runtime");
        return ExitStatus::Failure.into();
    };
    let result = runtime.block_on(async {
        // SIGTERM (a Job deleted) unpauses what the window paused.
        let interrupted = crate::interrupted()?;
        Ok::<_, String>(window.run(interrupted).await)
    });
    runtime.shutdown_background();
    let result = match result {
        Ok(result) => result,
        Err(message) => {
            tell!("error: {message}");
            return ExitStatus::Failure.into();
        }
    };
    print(&args, &result).into()
}

fn window(args: &SakArgs) -> Result<Window, String> {
    let (tls, _, _) = TlsFlags {
        tls: args.tls,
        ca_root_cert_pem: args.ca_root_cert_pem.as_deref(),
        ca_root_cert_path: args.ca_root_cert_path.as_deref(),
        override_authority: args.override_authority.as_deref(),
    }
    .build()
    .map_err(|e| e.to_string())?;
    let mut client = ClientConfig::default();
    if let Some(tls) = tls {
        client = client.tls(tls);
    }
    let mut pause = PauseOptions::default();
    if let Some(ms) = args.max_pause_wait_time {
        pause = pause.max_pause_wait(Duration::from_millis(ms));
    }
    let selector = match (
        args.pod_discovery_mode,
        &args.deployment_name,
        &args.release_name,
    ) {
        (DiscoveryMode::Deployment, Some(name), _) => Selector::Deployment(name.clone()),
        (DiscoveryMode::Deployment, None, _) => {
            return Err("--pod-discovery-mode deployment needs --deployment-name".into());
        }
        (DiscoveryMode::HelmRelease, _, Some(release)) => Selector::Release(release.clone()),
        (DiscoveryMode::HelmRelease, _, None) => {
            return Err("--pod-discovery-mode helm-release needs -r/--release-name".into());
        }
    };
    // The other tool's chart grants get/list on pods, services and deployments only:
    // pod IPs and the Service's targetPort, as it does.
    let group = KubeGroup::new(KubeConfig::default(), selector)
        .namespace(&args.namespace)
        .pod_ips(true);
    Ok(Window::new([Group::Kubernetes(group)])
        .client(client)
        .pause_options(pause)
        .hold(Duration::from_millis(args.pause_duration)))
}

/// Prints the result line on success; on failure one line on stderr, in the other
/// tool's order: unpause failure first (the cluster may be left paused), then pause
/// failure, then a target that could not be read again, then pods that changed.
fn print(args: &SakArgs, result: &Result<Vec<WindowReport>, Error>) -> ExitStatus {
    let window = match result {
        Ok(windows) => windows.last(),
        Err(e) => {
            tell!("error: {e}");
            for stuck in e.rollback().map(|r| r.stuck()).unwrap_or_default() {
                tell!("may still be paused: {stuck}");
            }
            return ExitStatus::Failure;
        }
    };
    let Some(window) = window else {
        return ExitStatus::Failure;
    };
    if !window.verdict().is_valid() {
        // The other tool's order: could not re-read the targets, then could not check
        // their status, then the pods changed.
        let findings = window.verdict().findings();
        let of = |f: fn(&Finding) -> bool| -> Vec<String> {
            findings
                .iter()
                .filter(|x| f(x))
                .map(ToString::to_string)
                .collect()
        };
        let unread = of(|f| matches!(f, Finding::NotResolved { .. }));
        let unchecked = of(|f| matches!(f, Finding::Unchecked { .. }));
        let (what, list) = if !unread.is_empty() {
            ("could not read the pods again", unread)
        } else if !unchecked.is_empty() {
            ("could not check the pods' status", unchecked)
        } else {
            ("the pods changed during the pause", of(|_| true))
        };
        tell!("error: {what}; do not restore to it: {}", list.join("; "));
        return ExitStatus::Failure;
    }
    let (start, end) = (window.pause_completed_at(), window.unpause_started_at());
    let tz = &args.time_zone.tz;
    let by_deployment = args.pod_discovery_mode == DiscoveryMode::Deployment;
    let line = SakResult {
        namespace: &args.namespace,
        helm_release_name: args.release_name.as_deref().filter(|_| !by_deployment),
        deployment_name: args.deployment_name.as_deref().filter(|_| by_deployment),
        pause_start_timestamp_ms: epoch_ms(start),
        pause_end_timestamp_ms: epoch_ms(end),
        pause_start_date_time: local_date_time(start, tz),
        pause_end_date_time: local_date_time(end, tz),
        timezone: &args.time_zone.name,
    };
    match serde_json::to_string(&line) {
        Ok(json) => {
            say!("{json}");
            ExitStatus::Success
        }
        Err(e) => {
            tell!("error: cannot write the result: {e}");
            ExitStatus::Failure
        }
    }
}

fn epoch_ms(t: SystemTime) -> i64 {
    scalar_admin::unix_micros(t).div_euclid(1000)
}

/// The instant in `tz`, to the millisecond, as Java's `LocalDateTime.toString()` writes
/// it: seconds and the fraction only when not zero (`2024-05-21T11:18:11.548`,
/// `2024-05-21T11:18`).
fn local_date_time(t: SystemTime, tz: &jiff::tz::TimeZone) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(epoch_ms(t)) else {
        return format!("{t:?}");
    };
    let dt = ts.to_zoned(tz.clone()).datetime();
    let mut out = dt.strftime("%Y-%m-%dT%H:%M").to_string();
    let millis = dt.subsec_nanosecond() / 1_000_000;
    if dt.second() != 0 || millis != 0 {
        out.push_str(&format!(":{:02}", dt.second()));
    }
    if millis != 0 {
        out.push_str(&format!(".{millis:03}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_as_java_writes_them() {
        let utc = jiff::tz::TimeZone::UTC;
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        assert_eq!(
            local_date_time(at(1_716_257_891_548), &utc),
            "2024-05-21T02:18:11.548"
        );
        assert_eq!(
            local_date_time(at(1_716_257_891_000), &utc),
            "2024-05-21T02:18:11"
        );
        assert_eq!(
            local_date_time(at(1_716_257_880_000), &utc),
            "2024-05-21T02:18"
        );
        let tokyo = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(
            local_date_time(at(1_716_257_891_548), &tokyo),
            "2024-05-21T11:18:11.548"
        );
    }

    #[test]
    fn zones_as_java_takes_them() {
        assert_eq!(parse_zone("Z").unwrap().tz, jiff::tz::TimeZone::UTC);
        let plus9 = parse_zone("+09:00").unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_716_257_891_548);
        assert_eq!(local_date_time(at, &plus9.tz), "2024-05-21T11:18:11.548");
        assert!(parse_zone("Mars/Olympus").is_err());
        assert!(parse_zone("+99:00").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        SakArgs::command().debug_assert();
    }
}
