//! Finding every pod of a product from its DNS SRV record.
//!
//! A Scalar Helm chart's headless Service publishes one SRV record per ready pod, with a
//! target host name whose A (or AAAA) record is the pod IP. Cluster DNS usually puts
//! those A records in the additional section; when it does not, each target is looked up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};
use tracing::{debug, instrument};

use crate::error::{DiscoveryError, DiscoveryErrorKind, InvalidInput};
use crate::failure::Error;
use crate::target::{Target, validate_host_name};

/// How many target-address lookups run at once when the SRV answer carries no addresses.
const ADDRESS_LOOKUP_CONCURRENCY: usize = 64;

/// Where and how SRV names are resolved.
///
/// By default everything comes from the system configuration (`/etc/resolv.conf`: its
/// name servers, search list and `ndots`), as for any program in a pod, so the short name
/// `_scalardb._tcp.scalardb-headless` resolves through the pod's search list. Each
/// setting can be overridden.
///
/// ```
/// use std::time::Duration;
/// use scalar_admin::DnsConfig;
///
/// let dns = DnsConfig::default()
///     .name_server("10.96.0.10:53".parse()?)
///     .search(["ns-scalar.svc.cluster.local", "svc.cluster.local"])
///     .ndots(5)
///     .timeout(Duration::from_secs(2));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DnsConfig {
    name_servers: Vec<SocketAddr>,
    search: Option<Vec<String>>,
    ndots: Option<usize>,
    timeout: Duration,
    attempts: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            name_servers: Vec::new(),
            search: None,
            ndots: None,
            timeout: Duration::from_secs(3),
            attempts: 2,
        }
    }
}

impl DnsConfig {
    /// Adds a name server to ask, by UDP then TCP, instead of the system's.
    ///
    /// None by default: the system's name servers are used.
    pub fn name_server(mut self, addr: SocketAddr) -> Self {
        self.name_servers.push(addr);
        self
    }

    /// Sets the search list used for names with fewer than `ndots` dots.
    ///
    /// The system's search list by default.
    pub fn search<S: Into<String>>(mut self, domains: impl IntoIterator<Item = S>) -> Self {
        self.search = Some(domains.into_iter().map(Into::into).collect());
        self
    }

    /// Sets how many dots a name needs to be tried as absolute before the search list.
    ///
    /// The system's value by default (Kubernetes pods have 5).
    pub fn ndots(mut self, ndots: usize) -> Self {
        self.ndots = Some(ndots);
        self
    }

    /// Sets the time allowed for one query to one name server. 3 seconds by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many times a query is tried. 2 by default.
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The longest a whole resolution may take: every name of the search list, tried
    /// `attempts` times, plus one round of target-address lookups. Saturating, so that
    /// `Duration::MAX` or a huge count means "no limit" rather than a panic.
    fn deadline(&self, search_len: usize) -> Duration {
        let names = u32::try_from(search_len)
            .unwrap_or(u32::MAX)
            .saturating_add(2);
        let attempts = u32::try_from(self.attempts).unwrap_or(u32::MAX);
        self.timeout.saturating_mul(names.saturating_mul(attempts))
    }

    /// The time one query may take, as the resolver is given it: hickory adds it to
    /// `Instant::now()` unchecked, which panics for `Duration::MAX`. A query that may
    /// take a year is as unbounded as one that may take forever.
    fn query_timeout(&self) -> Duration {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);
        self.timeout.min(YEAR)
    }

    fn resolver(&self, name: &str) -> Result<Resolved, DiscoveryError> {
        let system = if self.name_servers.is_empty()
            || self.search.is_none()
            || self.ndots.is_none()
        {
            match hickory_resolver::system_conf::read_system_conf() {
                Ok(conf) => Some(conf),
                Err(e) if self.name_servers.is_empty() => {
                    return Err(
                        DiscoveryError::new(name, DiscoveryErrorKind::Config).with_source(format!(
                            "cannot read the system resolver configuration: {e}"
                        )),
                    );
                }
                Err(e) => {
                    debug!(error = %e, "no system resolver configuration; using given settings only");
                    None
                }
            }
        } else {
            None
        };
        let (system_config, system_opts) = match system {
            Some((c, o)) => (Some(c), Some(o)),
            None => (None, None),
        };

        let name_servers = if self.name_servers.is_empty() {
            system_config
                .as_ref()
                .map(|c| c.name_servers().to_vec())
                .unwrap_or_default()
        } else {
            self.name_servers.iter().map(|a| name_server(*a)).collect()
        };
        let search: Vec<Name> = match &self.search {
            Some(list) => list
                .iter()
                .map(|d| {
                    Name::from_ascii(d).map_err(|e| {
                        DiscoveryError::new(name, DiscoveryErrorKind::Config)
                            .with_source(format!("bad search domain {d:?}: {e}"))
                    })
                })
                .collect::<Result<_, _>>()?,
            None => system_config
                .as_ref()
                .map(|c| c.search().to_vec())
                .unwrap_or_default(),
        };
        // The search list is applied here rather than by the resolver, so that a
        // failure reports the most telling answer (an empty answer for one candidate
        // beats NXDOMAIN for the others), not just the last name tried.
        let servers = config_servers(&name_servers);
        let config = ResolverConfig::from_parts(None, Vec::new(), name_servers);

        let mut opts = system_opts.unwrap_or_default();
        let ndots = self.ndots.unwrap_or(opts.ndots);
        opts.timeout = self.query_timeout();
        opts.attempts = self.attempts;
        // Every resolution asks the server afresh: a cached answer would hide a pod
        // added or removed since, which is exactly what the backup window checks for.
        opts.cache_size = 0;
        // A pod list must come from DNS, never from the local hosts file.
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;

        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| DiscoveryError::new(name, DiscoveryErrorKind::Config).with_source(e))?;
        Ok(Resolved {
            resolver,
            search,
            ndots,
            servers,
        })
    }
}

struct Resolved {
    resolver: TokioResolver,
    search: Vec<Name>,
    ndots: usize,
    /// The name servers asked, for messages.
    servers: String,
}

fn config_servers(name_servers: &[NameServerConfig]) -> String {
    let servers: Vec<String> = name_servers
        .iter()
        .map(|ns| match ns.connections.first() {
            Some(c) => SocketAddr::new(ns.ip, c.port).to_string(),
            None => ns.ip.to_string(),
        })
        .collect();
    servers.join(", ")
}

impl Resolved {
    /// The fully qualified names to try for `name`, in order, as a stub resolver does
    /// with resolv.conf: a name ending in '.' as it is; a name with at least `ndots` dots
    /// first as it is, then with each search domain; a shorter one the other way round.
    fn candidates(&self, name: &str) -> Result<Vec<Name>, String> {
        let parsed = Name::from_ascii(name).map_err(|e| e.to_string())?;
        if name.ends_with('.') {
            return Ok(vec![parsed]);
        }
        let absolute = {
            let mut n = parsed.clone();
            n.set_fqdn(true);
            n
        };
        let searched = self
            .search
            .iter()
            .filter_map(|domain| parsed.clone().append_domain(domain).ok());
        let dots = name.matches('.').count();
        Ok(if dots >= self.ndots {
            std::iter::once(absolute).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(absolute)).collect()
        })
    }
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

/// Checks an SRV name as a user types it, before any query.
fn validate_srv_name(name: &str) -> Result<(), InvalidInput> {
    validate_host_name(name).map_err(|reason| InvalidInput::new("SRV name", name, reason))
}

/// Resolves an SRV name to every pod endpoint it lists.
///
/// The name may be fully qualified (`_scalardb._tcp.scalardb-headless.ns.svc.cluster.local`)
/// or short (`_scalardb._tcp.scalardb-headless`) when the search list completes it.
/// Targets are deduplicated by address and returned in a stable order (by name), each
/// named after its SRV target host name and port.
///
/// Fails, naming the name and the cause, on NXDOMAIN, an empty answer, a target with no
/// address, a time-out, or a truncated answer: acting on part of the pods would break the
/// backup's consistency, so a partial list is never returned.
///
/// ```no_run
/// # async fn run() -> Result<(), scalar_admin::Error> {
/// use scalar_admin::{DnsConfig, resolve_srv};
///
/// let pods = resolve_srv("_scalardb._tcp.scalardb-headless", &DnsConfig::default()).await?;
/// for pod in &pods {
///     println!("{pod}");
/// }
/// # Ok(()) }
/// ```
#[instrument(skip(dns), err(Display, level = "debug"))]
pub async fn resolve_srv(name: &str, dns: &DnsConfig) -> Result<Vec<Target>, Error> {
    validate_srv_name(name)?;
    let resolved = dns.resolver(name)?;
    let deadline = dns.deadline(resolved.search.len());
    match tokio::time::timeout(deadline, lookup(&resolved, name)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(DiscoveryError::new(name, DiscoveryErrorKind::TimedOut(deadline)).into()),
    }
}

/// Finds the SRV records of the first candidate name that has any.
async fn srv_records(resolved: &Resolved, name: &str) -> Result<Lookup, DiscoveryError> {
    let fail = |kind| DiscoveryError::new(name, kind);
    let candidates = resolved
        .candidates(name)
        .map_err(|e| fail(DiscoveryErrorKind::Config).with_source(e))?;
    let mut empty = None;
    for candidate in candidates {
        match resolved.resolver.srv_lookup(candidate.clone()).await {
            Ok(lookup) => return Ok(lookup),
            Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => {
                if nr.response_code != ResponseCode::NXDomain && empty.is_none() {
                    empty = Some(candidate);
                }
            }
            Err(e) => return Err(resolved.failure(name, e)),
        }
    }
    Err(match empty {
        Some(candidate) => fail(DiscoveryErrorKind::NoRecords(candidate.to_ascii())),
        None => fail(DiscoveryErrorKind::NoSuchName),
    })
}

async fn lookup(resolved: &Resolved, name: &str) -> Result<Vec<Target>, DiscoveryError> {
    let fail = |kind| DiscoveryError::new(name, kind);
    let resolver = &resolved.resolver;
    let lookup = srv_records(resolved, name).await?;
    if lookup.message().metadata.truncation {
        return Err(fail(DiscoveryErrorKind::Truncated));
    }

    let mut additional: HashMap<&Name, Vec<IpAddr>> = HashMap::new();
    for record in lookup.additionals() {
        let ip = match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        additional.entry(&record.name).or_default().push(ip);
    }

    let srvs: Vec<(Name, u16)> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((srv.target.clone(), srv.port)),
            _ => None,
        })
        .collect();
    if srvs.is_empty() {
        return Err(fail(DiscoveryErrorKind::NoRecords(name.to_owned())));
    }
    debug!(
        records = srvs.len(),
        with_addresses = additional.len(),
        "SRV answer"
    );

    let targets: Vec<Target> = stream::iter(srvs)
        .map(|(target, port)| {
            let known = additional.get(&target).and_then(|ips| pick(ips));
            async move {
                let no_address = || fail(DiscoveryErrorKind::NoAddress(target.to_ascii()));
                let ip = match known {
                    Some(ip) => ip,
                    None => {
                        let found =
                            resolver
                                .lookup_ip(target.clone())
                                .await
                                .map_err(|e| match e {
                                    NetError::Dns(DnsError::NoRecordsFound(_)) => no_address(),
                                    other => resolved.failure(name, other),
                                })?;
                        let ips: Vec<IpAddr> = found.iter().collect();
                        pick(&ips).ok_or_else(no_address)?
                    }
                };
                Ok::<_, DiscoveryError>(Target::from_srv(&target.to_ascii(), ip, port))
            }
        })
        .buffer_unordered(ADDRESS_LOOKUP_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(dedup_sorted(targets))
}

/// One address per pod: the first IPv4 address, else the first IPv6 one. A dual-stack
/// pod has both, and pausing it twice under one name would help nobody.
fn pick(ips: &[IpAddr]) -> Option<IpAddr> {
    ips.iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| ips.first())
        .copied()
}

/// Sorts by name and drops later targets that connect to an address already listed.
pub(crate) fn dedup_sorted(mut targets: Vec<Target>) -> Vec<Target> {
    targets.sort();
    let mut seen = std::collections::HashSet::new();
    targets.retain(|t| seen.insert((t.host().clone(), t.port())));
    targets
}

impl Resolved {
    /// The error for what the resolver reported.
    fn failure(&self, name: &str, e: NetError) -> DiscoveryError {
        let kind = match &e {
            NetError::Timeout => DiscoveryErrorKind::TimedOut(self.resolver.options().timeout),
            NetError::Truncated => DiscoveryErrorKind::Truncated,
            NetError::Dns(DnsError::NoRecordsFound(nr))
                if nr.response_code == ResponseCode::NXDomain =>
            {
                DiscoveryErrorKind::NoSuchName
            }
            NetError::Dns(DnsError::ResponseCode(code)) => {
                DiscoveryErrorKind::ServerError(code.to_string())
            }
            // A message that does not decode: the name server is broken, and asking it
            // again would only time out.
            NetError::Proto(_) => DiscoveryErrorKind::Malformed(self.servers.clone()),
            _ => DiscoveryErrorKind::Other,
        };
        DiscoveryError::new(name, kind).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(search: &[&str], ndots: usize) -> Vec<String> {
        let r = Resolved {
            resolver: Resolver::builder_with_config(
                ResolverConfig::default(),
                TokioRuntimeProvider::default(),
            )
            .build()
            .unwrap(),
            search: search
                .iter()
                .map(|s| Name::from_ascii(s).unwrap())
                .collect(),
            ndots,
            servers: String::new(),
        };
        r.candidates("_scalardb._tcp.scalardb-headless")
            .unwrap()
            .iter()
            .map(|n| n.to_ascii())
            .collect()
    }

    #[test]
    fn unbounded_time_limits_saturate_instead_of_panicking() {
        let dns = DnsConfig::default()
            .timeout(Duration::MAX)
            .attempts(usize::MAX);
        assert_eq!(dns.deadline(usize::MAX), Duration::MAX);
        assert!(dns.query_timeout() < Duration::MAX);
        let dns = DnsConfig::default().timeout(Duration::from_secs(2));
        assert_eq!(dns.deadline(3), Duration::from_secs(20));
        assert_eq!(dns.query_timeout(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn candidates_follow_ndots_like_a_stub_resolver() {
        let search = ["ns.svc.cluster.local", "svc.cluster.local"];
        assert_eq!(
            resolved(&search, 5),
            [
                "_scalardb._tcp.scalardb-headless.ns.svc.cluster.local.",
                "_scalardb._tcp.scalardb-headless.svc.cluster.local.",
                "_scalardb._tcp.scalardb-headless.",
            ]
        );
        assert_eq!(resolved(&search, 2)[0], "_scalardb._tcp.scalardb-headless.");
    }

    proptest::proptest! {
        #[test]
        fn any_srv_name_is_checked_without_panic(name in "\\PC{0,300}") {
            if let Err(e) = validate_srv_name(&name) {
                proptest::prop_assert!(!e.to_string().contains('\n'));
            }
        }
    }
}
