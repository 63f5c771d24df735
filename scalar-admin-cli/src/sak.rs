//! The command line of Scalar Admin for Kubernetes, for Jobs and CronJobs built for that
//! tool: the same flags, one line of JSON on success, its exit statuses (0, 1, 2).
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

use crate::args::TlsFlags;
use crate::java::ZoneId;
use crate::output::ExitStatus;

/// Pause every pod of a Scalar product's Helm release for a while, for a backup, as
/// Scalar Admin for Kubernetes does; prints the paused period as one line of JSON.
///
/// The flags are parsed as that tool's picocli parser parses them: a value it cannot
/// convert (a number that is not one, a zone `ZoneId.of` refuses), an unknown flag or a
/// flag given twice is a usage error (exit 2); what its code checks after parsing (the
/// discovery mode and the flags each mode needs, a pause duration below 1, an admin port
/// outside 1-65535, blank names) fails with 1, before the cluster is asked anything.
/// No `--version`: that tool has none.
#[derive(Debug, Parser)]
#[command(name = "scalar-admin-for-kubernetes", max_term_width = 100)]
pub(crate) struct SakArgs {
    /// The Helm release of ScalarDB Cluster, ScalarDL Ledger or Auditor (with
    /// --pod-discovery-mode helm-release).
    #[arg(short = 'r', long, allow_hyphen_values = true, value_parser = value)]
    release_name: Option<String>,

    /// How the pods are found: helm-release (by -r) or deployment (by --deployment-name
    /// and --admin-port); case-insensitive.
    #[arg(long, value_name = "MODE", default_value = "helm-release",
          allow_hyphen_values = true, value_parser = value)]
    pod_discovery_mode: String,

    /// The Deployment, with --pod-discovery-mode deployment.
    #[arg(long, allow_hyphen_values = true, value_parser = value)]
    deployment_name: Option<String>,

    /// The pods' admin port, with --pod-discovery-mode deployment.
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    admin_port: Option<i32>,

    /// The release's namespace.
    #[arg(short = 'n', long, default_value = "default", allow_hyphen_values = true,
          value_parser = value)]
    namespace: String,

    /// How long the pods stay paused, in milliseconds (at least 1).
    #[arg(
        short = 'd',
        long,
        value_name = "MS",
        default_value_t = 5000,
        allow_negative_numbers = true
    )]
    pause_duration: i32,

    /// How long each pod waits for in-flight requests, in milliseconds (default: the
    /// product's own).
    #[arg(short = 'w', long, value_name = "MS", allow_negative_numbers = true)]
    max_pause_wait_time: Option<i64>,

    /// The time zone of the printed date times, as Java's `ZoneId.of` takes it: a region
    /// id such as `Asia/Tokyo` (case-sensitive), `Z`, an offset such as `+09:00` or `+9`,
    /// or `UTC`, `GMT`, `UT` with or without an offset (`UTC+09:00`).
    #[arg(short = 'z', long, value_name = "ZONE", default_value = "Etc/UTC",
          allow_hyphen_values = true, value_parser = parse_zone)]
    time_zone: ZoneId,

    /// Connect with TLS.
    #[arg(long)]
    tls: bool,

    /// A PEM file of CA certificates (used with --tls).
    #[arg(long, value_name = "FILE", allow_hyphen_values = true, value_parser = path)]
    ca_root_cert_path: Option<PathBuf>,

    /// CA certificates as PEM text; wins over --ca-root-cert-path (used with --tls).
    #[arg(long, value_name = "PEM", allow_hyphen_values = true, value_parser = value)]
    ca_root_cert_pem: Option<String>,

    /// The name expected in the pods' certificates (used with --tls).
    #[arg(long, value_name = "NAME", allow_hyphen_values = true, value_parser = value)]
    override_authority: Option<String>,
}

/// The other tool's discovery modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiscoveryMode {
    /// By Helm release (`-r`).
    HelmRelease,
    /// By Deployment (`--deployment-name`, `--admin-port`).
    Deployment,
}

impl DiscoveryMode {
    /// `PodDiscoveryMode.fromValue`: `helm-release` or `deployment`, ignoring case.
    fn from_value(value: &str) -> Result<Self, String> {
        if value.eq_ignore_ascii_case("helm-release") {
            Ok(Self::HelmRelease)
        } else if value.eq_ignore_ascii_case("deployment") {
            Ok(Self::Deployment)
        } else {
            Err(format!(
                "Invalid podDiscoveryMode: {value}. Valid values are: helm-release, deployment"
            ))
        }
    }
}

/// The other tool's option names.
const OPTIONS: [&str; 19] = [
    "-r",
    "--release-name",
    "--pod-discovery-mode",
    "--deployment-name",
    "--admin-port",
    "-n",
    "--namespace",
    "-d",
    "--pause-duration",
    "-w",
    "--max-pause-wait-time",
    "-z",
    "--time-zone",
    "--tls",
    "--ca-root-cert-path",
    "--ca-root-cert-pem",
    "--override-authority",
    "-h",
    "--help",
];

/// Its one-letter options, which picocli also finds at the start of a clustered
/// argument such as `-dfoo`.
const SHORT_OPTIONS: &[u8] = b"rndwzh";

/// picocli's `isOption`: `--`, an option's name, an option's name and `=value`, or a
/// `-` and one of the one-letter options followed by more. picocli refuses such an
/// argument as an option's value (a usage error); any other, `-x` or `-1` included, it
/// takes.
fn looks_like_option(arg: &str) -> bool {
    let b = arg.as_bytes();
    arg == "--"
        || OPTIONS.contains(&arg)
        || arg
            .find('=')
            .is_some_and(|i| i > 0 && OPTIONS.contains(&&arg[..i]))
        || (b.len() > 2 && b[0] == b'-' && SHORT_OPTIONS.contains(&b[1]))
}

/// A text option's value, as picocli takes it: any text but an option.
fn value(text: &str) -> Result<String, String> {
    if looks_like_option(text) {
        return Err(format!("expected a parameter but found option '{text}'"));
    }
    Ok(text.to_owned())
}

fn path(text: &str) -> Result<PathBuf, String> {
    value(text).map(PathBuf::from)
}

fn parse_zone(text: &str) -> Result<ZoneId, String> {
    // picocli's message for a converter that throws, and its exit status 2.
    ZoneId::of(text).map_err(|e| format!("cannot convert '{text}' to ZoneId ({e})"))
}

/// What the flags ask for, once checked as the other tool checks them.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    mode: DiscoveryMode,
    /// The release or the Deployment.
    name: String,
    admin_port: Option<u16>,
    hold: Duration,
    max_pause_wait: Option<Duration>,
}

/// `isBlank()`: empty or only white space.
fn blank(text: &str) -> bool {
    text.trim().is_empty()
}

impl SakArgs {
    /// The checks the other tool makes after parsing, in its order (`PauseRequest`, then
    /// `PodDiscoveryMode.fromValue` and `validate`, then the pause command's): each
    /// failure is its exit 1, before the cluster is asked anything.
    fn request(&self) -> Result<Request, String> {
        // It reads the CA file (unless PEM text is given) before any check, with TLS or
        // without. With TLS the file is read once, later, where it is used: a path like
        // `<(cat ca.pem)` cannot be read twice.
        if let (None, Some(path), false) =
            (&self.ca_root_cert_pem, &self.ca_root_cert_path, self.tls)
        {
            std::fs::read(path)
                .map_err(|e| format!("Couldn't read the file: {} ({e})", path.display()))?;
        }
        if blank(&self.namespace) {
            return Err("namespace is required".into());
        }
        if blank(&self.pod_discovery_mode) {
            return Err("podDiscoveryMode is required".into());
        }
        if self.pause_duration < 1 {
            return Err(format!(
                "pauseDuration must be greater than 0, but was: {}",
                self.pause_duration
            ));
        }
        if self.tls {
            let no_ca = match &self.ca_root_cert_pem {
                Some(pem) => blank(pem),
                None => self.ca_root_cert_path.is_none(),
            };
            if no_ca {
                return Err("caRootCert is required when tlsEnabled is true".into());
            }
            if self.override_authority.as_deref().is_none_or(blank) {
                return Err("overrideAuthority is required when tlsEnabled is true".into());
            }
        }
        let mode = DiscoveryMode::from_value(&self.pod_discovery_mode)?;
        let name = match mode {
            DiscoveryMode::HelmRelease => {
                let release = self.release_name.as_deref().filter(|r| !blank(r));
                let Some(release) = release else {
                    return Err(
                        "helmReleaseName is required when podDiscoveryMode is HELM_RELEASE".into(),
                    );
                };
                if self.deployment_name.is_some() || self.admin_port.is_some() {
                    return Err("deploymentName and adminPort cannot be used when \
                                podDiscoveryMode is HELM_RELEASE"
                        .into());
                }
                release
            }
            DiscoveryMode::Deployment => {
                let deployment = self.deployment_name.as_deref().filter(|d| !blank(d));
                let Some(deployment) = deployment else {
                    return Err(
                        "deploymentName is required when podDiscoveryMode is DEPLOYMENT".into(),
                    );
                };
                if self.admin_port.is_none() {
                    return Err("adminPort is required when podDiscoveryMode is DEPLOYMENT".into());
                }
                if self.release_name.is_some() {
                    return Err(
                        "helmReleaseName cannot be used when podDiscoveryMode is DEPLOYMENT".into(),
                    );
                }
                deployment
            }
        };
        let admin_port = match self.admin_port {
            None => None,
            Some(port) => match u16::try_from(port) {
                Ok(port) if port >= 1 => Some(port),
                _ => {
                    return Err(format!(
                        "adminPort must be between 1 and 65535, but was: {port}"
                    ));
                }
            },
        };
        // The other tool passes a negative wait on to the pods; this one refuses it.
        let max_pause_wait = match self.max_pause_wait_time {
            None => None,
            Some(ms) => match u64::try_from(ms) {
                Ok(ms) => Some(Duration::from_millis(ms)),
                Err(_) => {
                    return Err(format!(
                        "maxPauseWaitTime must not be negative, but was: {ms}"
                    ));
                }
            },
        };
        Ok(Request {
            mode,
            name: name.to_owned(),
            admin_port,
            hold: Duration::from_millis(u64::from(self.pause_duration.unsigned_abs())),
            max_pause_wait,
        })
    }
}

/// The one line Scalar Admin for Kubernetes prints, its keys in the order its Jackson
/// `ObjectMapper` writes them: the fields named as they are (`namespace`, `timezone`)
/// first, then the ones renamed by `@JsonProperty`, each group in declaration order
/// (Jackson re-adds renamed properties after the others). `helm_release_name` and
/// `deployment_name` only when set (`@JsonInclude(NON_NULL)`).
#[derive(serde::Serialize)]
struct SakResult<'a> {
    namespace: &'a str,
    timezone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    helm_release_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_name: Option<&'a str>,
    pause_start_timestamp_ms: i64,
    pause_end_timestamp_ms: i64,
    pause_start_date_time: String,
    pause_end_date_time: String,
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
    let checked = args
        .request()
        .and_then(|request| Ok((window(&args, &request)?, request)));
    let (window, request) = match checked {
        Ok(checked) => checked,
        // As the other tool: anything past its flag parser (a missing release, an
        // unreadable CA file...) fails with 1.
        Err(message) => {
            tell!("error: {message}");
            return ExitStatus::Failure.into();
        }
    };
    crate::init_logging(false, 0, false);
    let Some(runtime) = crate::runtime::Background::start() else {
        tell!("error: cannot start the runtime");
        return ExitStatus::Failure.into();
    };
    let result = runtime.block_on(async {
        // SIGTERM (a Job deleted) unpauses what the window paused.
        let interrupted = crate::interrupted()?;
        Ok::<_, String>(window.run(interrupted).await)
    });
    let result = match result {
        Ok(result) => result,
        Err(message) => {
            tell!("error: {message}");
            return ExitStatus::Failure.into();
        }
    };
    print(&args, &request, &result).into()
}

fn window(args: &SakArgs, request: &Request) -> Result<Window, String> {
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
    if let Some(wait) = request.max_pause_wait {
        pause = pause.max_pause_wait(wait);
    }
    let selector = match request.mode {
        DiscoveryMode::Deployment => Selector::Deployment(request.name.clone()),
        DiscoveryMode::HelmRelease => Selector::Release(request.name.clone()),
    };
    // The other tool's chart grants get/list on pods, services and deployments only:
    // pod IPs and the Service's targetPort, as it does; in deployment mode the port it
    // is given, on each pod's IP, and no Service.
    let mut group = KubeGroup::new(KubeConfig::default(), selector)
        .namespace(&args.namespace)
        .pod_ips(true);
    if let Some(port) = request.admin_port {
        group = group.admin_port(port);
    }
    Ok(Window::new([Group::Kubernetes(group)])
        .client(client)
        .pause_options(pause)
        .hold(request.hold))
}

/// Prints the result line on success; on failure one line on stderr, in the other
/// tool's order: unpause failure first (the cluster may be left paused), then pause
/// failure, then a target that could not be read again, then pods that changed.
fn print(
    args: &SakArgs,
    request: &Request,
    result: &Result<Vec<WindowReport>, Error>,
) -> ExitStatus {
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
    let line = result_line(args, request, epoch_ms(start), epoch_ms(end));
    match line {
        Ok(line) => {
            say!("{line}");
            ExitStatus::Success
        }
        Err(e) => {
            tell!("error: cannot write the result: {e}");
            ExitStatus::Failure
        }
    }
}

/// The JSON line for a period from `start` to `end` (epoch milliseconds).
fn result_line(
    args: &SakArgs,
    request: &Request,
    start: i64,
    end: i64,
) -> Result<String, serde_json::Error> {
    let zone = &args.time_zone;
    let name = Some(request.name.as_str());
    let by_deployment = request.mode == DiscoveryMode::Deployment;
    let line = SakResult {
        namespace: &args.namespace,
        timezone: zone.id(),
        helm_release_name: name.filter(|_| !by_deployment),
        deployment_name: name.filter(|_| by_deployment),
        pause_start_timestamp_ms: start,
        pause_end_timestamp_ms: end,
        pause_start_date_time: zone.local_date_time(start),
        pause_end_date_time: zone.local_date_time(end),
    };
    serde_json::to_string(&line)
}

fn epoch_ms(t: SystemTime) -> i64 {
    scalar_admin::unix_micros(t).div_euclid(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<SakArgs, clap::Error> {
        SakArgs::try_parse_from(
            std::iter::once("scalar-admin-for-kubernetes").chain(args.iter().copied()),
        )
    }

    fn request(args: &[&str]) -> Result<Request, String> {
        parse(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .request()
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        SakArgs::command().debug_assert();
    }

    /// What picocli refuses while parsing (a usage error: exit 2): values its converters
    /// cannot convert (Integer.valueOf, Long.valueOf, ZoneId.of), unknown flags (there is
    /// no --version), a flag without its value, positional arguments, a flag twice.
    #[test]
    fn usage_errors_as_picocli_has_them() {
        let cases: &[&[&str]] = &[
            &["-r", "db", "-z", "+09:3"],
            &["-r", "db", "-z", "+18:30"],
            &["-r", "db", "-z", "asia/tokyo"],
            &["-r", "db", "-z", ""],
            &["-r", "db", "-d", "5s"],
            &["-r", "db", "-d", "2147483648"],
            &["-r", "db", "-w", "9223372036854775808"],
            &["-r", "db", "--admin-port", "x"],
            &["-r", "db", "--version"],
            &["-r", "db", "-V"],
            &["-r", "db", "extra"],
            &["-r", "db", "-r", "db2"],
            &["-r", "db", "--tls", "true"],
            // A value that picocli's isOption takes for an option.
            &["-r", "-n", "ns"],
            &["-r", "--namespace=ns"],
            &["-r", "-dfoo"],
            &["-r", "--"],
            &["-r", "db", "-n", "--help"],
            &["-r", "db", "--override-authority", "-z"],
            &["-r"],
            &["--no-such-flag"],
        ];
        for args in cases {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert!(e.use_stderr(), "{args:?}: {e}");
        }
        assert!(!parse(&["--help"]).unwrap_err().use_stderr());
        assert!(!parse(&["-h"]).unwrap_err().use_stderr());
    }

    /// What the tool accepts while parsing: zones ZoneId.of takes (the value may begin
    /// with '-'), numbers Integer.valueOf takes (a sign, negative ones: those its code
    /// refuses later, with 1), `=`-joined and attached values.
    #[test]
    fn what_its_parser_accepts() {
        for (args, zone) in [
            (&["-r", "db"][..], "Etc/UTC"),
            (&["-r", "db", "-z", "GMT+9"], "GMT+09:00"),
            (&["-r", "db", "-z", "UTC+09:00"], "UTC+09:00"),
            (&["-r", "db", "-z", "+9"], "+09:00"),
            (&["-r", "db", "-z", "+00:00"], "Z"),
            (&["-r", "db", "-z", "-05:00"], "-05:00"),
            (&["-r", "db", "--time-zone=-5"], "-05:00"),
            (&["-r", "db", "-zAsia/Tokyo"], "Asia/Tokyo"),
        ] {
            let parsed = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(parsed.time_zone.id(), zone, "{args:?}");
        }
        // Values that begin with '-' but are no option of its.
        let parsed = parse(&["-r", "-x", "-n", "-a", "--deployment-name", "--x=1"]).unwrap();
        assert_eq!(parsed.release_name.as_deref(), Some("-x"));
        assert_eq!(parsed.namespace, "-a");
        assert_eq!(parsed.deployment_name.as_deref(), Some("--x=1"));
        let pem = r"-----BEGIN CERTIFICATE-----\nMIIB==\n-----END CERTIFICATE-----";
        let parsed = parse(&["-r", "db", "--ca-root-cert-pem", pem]).unwrap();
        assert_eq!(parsed.ca_root_cert_pem.as_deref(), Some(pem));
        assert_eq!(
            parse(&["-r", "db", "-d", "+300"]).unwrap().pause_duration,
            300
        );
        assert_eq!(parse(&["-r", "db", "-d", "-1"]).unwrap().pause_duration, -1);
        assert_eq!(parse(&["-r", "db", "-d0"]).unwrap().pause_duration, 0);
        assert_eq!(
            parse(&["-r", "db", "-w", "-5"])
                .unwrap()
                .max_pause_wait_time,
            Some(-5)
        );
        assert_eq!(
            parse(&["--admin-port", "-1", "-r", "db"])
                .unwrap()
                .admin_port,
            Some(-1)
        );
    }

    /// The checks after parsing (PauseRequest, PodDiscoveryMode.fromValue and validate,
    /// the pause commands' constructors), each the tool's exit 1.
    #[test]
    fn checks_after_parsing_as_the_tool_makes_them() {
        let refused: &[&[&str]] = &[
            &[],
            &["-r", ""],
            &["-r", "  "],
            &["-r", "db", "-n", ""],
            &["-r", "db", "-n", " "],
            &["-r", "db", "-d", "0"],
            &["-r", "db", "-d", "-1"],
            &["-r", "db", "--pod-discovery-mode", ""],
            &["-r", "db", "--pod-discovery-mode", "helm_release"],
            &["-r", "db", "--pod-discovery-mode", "labels"],
            &["-r", "db", "--deployment-name", "d"],
            &["-r", "db", "--deployment-name", ""],
            &["-r", "db", "--admin-port", "60053"],
            &[
                "--pod-discovery-mode",
                "deployment",
                "--admin-port",
                "60053",
            ],
            &[
                "--pod-discovery-mode",
                "deployment",
                "--deployment-name",
                " ",
                "--admin-port",
                "1",
            ],
            &[
                "--pod-discovery-mode",
                "deployment",
                "--deployment-name",
                "d",
            ],
            &[
                "--pod-discovery-mode",
                "deployment",
                "--deployment-name",
                "d",
                "--admin-port",
                "1",
                "-r",
                "db",
            ],
            &[
                "--pod-discovery-mode",
                "deployment",
                "--deployment-name",
                "d",
                "--admin-port",
                "0",
            ],
            &[
                "--pod-discovery-mode",
                "deployment",
                "--deployment-name",
                "d",
                "--admin-port",
                "65536",
            ],
            &["-r", "db", "--ca-root-cert-path", "/nonexistent/ca.pem"],
            &["-r", "db", "--tls", "--override-authority", "db.example"],
            &[
                "-r",
                "db",
                "--tls",
                "--ca-root-cert-pem",
                " ",
                "--override-authority",
                "a",
            ],
            &["-r", "db", "--tls", "--ca-root-cert-pem", "PEM"],
            &[
                "-r",
                "db",
                "--tls",
                "--ca-root-cert-pem",
                "PEM",
                "--override-authority",
                "",
            ],
            // Not the tool's: it sends a negative wait on; this one refuses it.
            &["-r", "db", "-w", "-1"],
        ];
        for args in refused {
            assert!(request(args).is_err(), "{args:?} was accepted");
        }
        assert_eq!(
            request(&["-r", "db", "-w", "0"]).unwrap(),
            Request {
                mode: DiscoveryMode::HelmRelease,
                name: "db".into(),
                admin_port: None,
                hold: Duration::from_secs(5),
                max_pause_wait: Some(Duration::ZERO),
            }
        );
        // PEM text wins over the path, which is then not read; with TLS the file is
        // read where it is used.
        let pem_wins = [
            "-r",
            "db",
            "--ca-root-cert-pem",
            "PEM",
            "--ca-root-cert-path",
            "/nonexistent",
        ];
        assert!(request(&pem_wins).is_ok());
        let tls = [
            "-r",
            "db",
            "--tls",
            "--ca-root-cert-path",
            "/nonexistent",
            "--override-authority",
            "a",
        ];
        assert!(request(&tls).is_ok());
        assert_eq!(
            request(&["--pod-discovery-mode", "HELM-Release", "-r", "db"])
                .unwrap()
                .mode,
            DiscoveryMode::HelmRelease
        );
        assert_eq!(
            request(&[
                "--pod-discovery-mode",
                "Deployment",
                "--deployment-name",
                "scalardb-cluster-node",
                "--admin-port",
                "60053",
                "-d",
                "2147483647",
            ])
            .unwrap(),
            Request {
                mode: DiscoveryMode::Deployment,
                name: "scalardb-cluster-node".into(),
                admin_port: Some(60053),
                hold: Duration::from_millis(2_147_483_647),
                max_pause_wait: None,
            }
        );
    }

    /// The line, key for key and byte for byte, as the tool's Jackson writes its
    /// `Result`: `namespace`, `timezone`, then the renamed fields in declaration order.
    /// The values are ResultTest's (1000 to 6000 ms in Asia/Tokyo).
    #[test]
    fn the_line_in_the_tools_key_order() {
        let args = parse(&["-r", "test-release", "-n", "test-ns", "-z", "Asia/Tokyo"]).unwrap();
        let line = result_line(&args, &args.request().unwrap(), 1000, 6000).unwrap();
        assert_eq!(
            line,
            r#"{"namespace":"test-ns","timezone":"Asia/Tokyo","helm_release_name":"test-release","pause_start_timestamp_ms":1000,"pause_end_timestamp_ms":6000,"pause_start_date_time":"1970-01-01T09:00:01","pause_end_date_time":"1970-01-01T09:00:06"}"#
        );
        let args = parse(&[
            "-n",
            "test-ns",
            "--pod-discovery-mode",
            "deployment",
            "--deployment-name",
            "test-deployment",
            "--admin-port",
            "60053",
            "-z",
            "+00:00",
        ])
        .unwrap();
        let line = result_line(
            &args,
            &args.request().unwrap(),
            1_716_257_880_000,
            1_716_257_891_548,
        )
        .unwrap();
        assert_eq!(
            line,
            r#"{"namespace":"test-ns","timezone":"Z","deployment_name":"test-deployment","pause_start_timestamp_ms":1716257880000,"pause_end_timestamp_ms":1716257891548,"pause_start_date_time":"2024-05-21T02:18","pause_end_date_time":"2024-05-21T02:18:11.548"}"#
        );
    }
}
