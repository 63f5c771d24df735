//! A pod endpoint, and the address lists users type.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::error::InvalidInput;

/// One pod's admin endpoint.
///
/// A target has a *name*, the key it is reported under (the `host:port` as the user gave
/// it, or the SRV target host name without its trailing dot plus the port, as the Java
/// tool keys it), the host and port to connect to, and the [TLS name](Self::tls_name)
/// the pod is known by: the host as given, or the SRV target host name when the address
/// came from DNS.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Target {
    name: String,
    host: Host,
    port: u16,
    /// Determined by `name` (it is its host part), so it changes neither equality nor
    /// order, and reports have no need for it.
    #[cfg_attr(feature = "serde", serde(skip))]
    tls_name: Host,
}

/// Where a target's connection goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(untagged))]
pub enum Host {
    /// An IP address, given or resolved from an SRV target.
    Ip(IpAddr),
    /// A host name, resolved by the system resolver when the connection is made.
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl Target {
    /// A target at an IP address, named `ip:port` (`[ip]:port` for IPv6).
    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        Self {
            name: addr.to_string(),
            host: Host::Ip(addr.ip()),
            port: addr.port(),
            tls_name: Host::Ip(addr.ip()),
        }
    }

    /// A target from its parts, as [`name`](Self::name), [`host`](Self::host),
    /// [`port`](Self::port) and [`tls_name`](Self::tls_name) return them: for a process
    /// that rebuilds the targets another one found, such as the CLI's guardian.
    pub fn from_parts(name: impl Into<String>, host: Host, port: u16, tls_name: Host) -> Self {
        Self {
            name: name.into(),
            host,
            port,
            tls_name,
        }
    }

    /// A pod found by SRV discovery: connected to at `ip`, known by the target host
    /// name, as grpc-java's `forAddress(host, port)` knows it in the Java tool.
    pub(crate) fn from_srv(target_name: &str, ip: IpAddr, port: u16) -> Self {
        let host_name = target_name.trim_end_matches('.');
        Self {
            name: format!("{host_name}:{port}"),
            host: Host::Ip(ip),
            port,
            tls_name: Host::Name(host_name.to_owned()),
        }
    }

    /// A pod found through the Kubernetes API: named `<pod>:<port>`, reached at its IP,
    /// which is also the name its certificate is checked against (pass an authority
    /// override for certificates that name the service).
    pub(crate) fn from_kubernetes(pod: &str, ip: IpAddr, port: u16) -> Self {
        let mut target = Self::from_socket_addr(SocketAddr::new(ip, port));
        target.name = format!("{pod}:{port}");
        target
    }

    /// The key this pod is reported under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host the connection goes to.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The admin port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address, when the host is an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }

    /// `host:port` as connected to (IPv6 bracketed): the address a recovery command
    /// names.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The name the pod is known by, as the Java tool knows it: the name its TLS
    /// certificate must carry (an IP address is checked against the certificate's IP
    /// addresses) and the host part of the `:authority` sent.
    ///
    /// The host as given for an address (`-a`); for a pod found by SRV discovery (`-s`),
    /// the SRV target host name without its trailing dot, e.g.
    /// `10-0-0-5.scalardb-headless.ns-scalar.svc.cluster.local`, which a wildcard
    /// certificate for the headless service covers, although the connection goes to
    /// the address that name resolved to. [`Tls::authority`](crate::Tls::authority)
    /// overrides it.
    ///
    /// ```
    /// use scalar_admin::{Host, Target};
    ///
    /// let target: Target = "10.0.0.5:60051".parse()?;
    /// assert_eq!(target.tls_name(), &Host::Ip("10.0.0.5".parse().unwrap()));
    /// # Ok::<(), scalar_admin::InvalidInput>(())
    /// ```
    pub fn tls_name(&self) -> &Host {
        &self.tls_name
    }

    /// `tls_name:port` (IPv6 bracketed): the `:authority` of every request unless
    /// [`Tls::authority`](crate::Tls::authority) overrides it, as grpc-java sends it.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.tls_name, self.port)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl std::str::FromStr for Target {
    type Err = InvalidInput;

    /// Parses one `host:port`: an IPv4 address, a host name, or a bracketed IPv6
    /// address (`[::1]:60051`).
    fn from_str(entry: &str) -> Result<Self, InvalidInput> {
        let bad = |reason: &str| InvalidInput::new("address", entry, reason);
        if entry.is_empty() {
            return Err(bad("empty address"));
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (ip, port) = rest
                .split_once(']')
                .ok_or_else(|| bad("missing ']' after the IPv6 address"))?;
            let ip: Ipv6Addr = ip
                .parse()
                .map_err(|_| bad(&format!("{ip:?} is not an IPv6 address")))?;
            let port = port
                .strip_prefix(':')
                .ok_or_else(|| bad("expected ':port' after ']'"))?;
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = entry
                .rsplit_once(':')
                .ok_or_else(|| bad("expected host:port"))?;
            if host.contains(':') {
                return Err(bad("an IPv6 address must be bracketed, as in [::1]:60051"));
            }
            let host = match host.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) => {
                    validate_host_name(host).map_err(|r| bad(&r))?;
                    Host::Name(host.to_ascii_lowercase())
                }
            };
            (host, port)
        };
        let port = parse_port(port).map_err(|r| bad(&r))?;
        Ok(Self {
            name: entry.to_owned(),
            tls_name: host.clone(),
            host,
            port,
        })
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("missing port".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 is not a valid destination".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("port {port} is out of range (1-65535)")),
    }
}

/// Checks a DNS host name: at most 253 characters, labels of 1 to 63 letters, digits,
/// hyphens or underscores, not starting or ending with a hyphen.
pub(crate) fn validate_host_name(name: &str) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("empty host name".into());
    }
    if trimmed.len() > 253 {
        return Err("host name longer than 253 characters".into());
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row?)".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("invalid character {c:?} in {label:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

/// Parses a comma-separated address list, `host:port,host:port`.
///
/// Entries may be IPv4 addresses, host names or bracketed IPv6 addresses; spaces around
/// entries are ignored; duplicates are dropped, keeping the first. Each error names the
/// entry and what is wrong with it.
///
/// ```
/// let targets = scalar_admin::parse_addresses("10.0.0.5:60051, [::1]:60051,pod-0.ledger:50053")?;
/// assert_eq!(targets.len(), 3);
/// assert_eq!(targets[1].name(), "[::1]:60051");
/// assert!(scalar_admin::parse_addresses("10.0.0.5").is_err());
/// # Ok::<(), scalar_admin::InvalidInput>(())
/// ```
pub fn parse_addresses(list: &str) -> Result<Vec<Target>, InvalidInput> {
    let mut targets: Vec<Target> = Vec::new();
    for (i, entry) in list.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(InvalidInput::new(
                "address list",
                list,
                format!("entry {} is empty", i + 1),
            ));
        }
        let target: Target = entry.parse()?;
        if !targets
            .iter()
            .any(|t| t.host == target.host && t.port == target.port)
        {
            targets.push(target);
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        let t = parse_addresses("127.0.0.1:1,[::1]:2,Pod-0.svc:3").unwrap();
        assert_eq!(t[0].socket_addr(), Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(t[1].socket_addr(), Some("[::1]:2".parse().unwrap()));
        assert_eq!(t[1].address(), "[::1]:2");
        assert_eq!(t[2].host(), &Host::Name("pod-0.svc".into()));
        assert_eq!(t[2].name(), "Pod-0.svc:3");
    }

    #[test]
    fn srv_targets_are_known_by_their_host_name() {
        let host = "10-0-0-5.scalardb-headless.ns-scalar.svc.cluster.local";
        let t = Target::from_srv(&format!("{host}."), "10.0.0.5".parse().unwrap(), 60051);
        assert_eq!(t.name(), format!("{host}:60051"));
        assert_eq!(t.address(), "10.0.0.5:60051", "connected to the address");
        assert_eq!(t.tls_name(), &Host::Name(host.into()));
        assert_eq!(t.authority(), format!("{host}:60051"));
        let t = parse_addresses("[::1]:2,Pod-0.svc:3").unwrap();
        assert_eq!(t[0].authority(), "[::1]:2");
        assert_eq!(t[1].authority(), "pod-0.svc:3");
    }

    #[test]
    fn drops_duplicates() {
        assert_eq!(parse_addresses("a:1, a:1,a:2").unwrap().len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_fails_cleanly(input in "\\PC{0,200}") {
            if let Err(e) = parse_addresses(&input) {
                proptest::prop_assert!(!e.to_string().is_empty());
                proptest::prop_assert!(!e.to_string().contains('\n'), "one line");
            }
        }

        #[test]
        fn address_like_text_parses_or_fails_cleanly(input in "[\\[\\]0-9a-fA-F:.,a-z_ -]{0,80}") {
            let _ = parse_addresses(&input);
        }

        #[test]
        fn well_formed_addresses_round_trip(
            ip in proptest::arbitrary::any::<std::net::IpAddr>(),
            port in 1u16..,
        ) {
            let addr = std::net::SocketAddr::new(ip, port);
            let parsed = parse_addresses(&addr.to_string()).unwrap();
            proptest::prop_assert_eq!(parsed[0].socket_addr(), Some(addr));
            proptest::prop_assert_eq!(parsed[0].name(), addr.to_string());
        }

        #[test]
        fn any_host_name_is_checked_without_panic(name in "\\PC{0,300}") {
            let _ = validate_host_name(&name);
        }
    }

    #[test]
    fn errors_name_the_entry_and_the_fault() {
        for (input, needle) in [
            ("", "entry 1 is empty"),
            ("a:1,,b:2", "entry 2 is empty"),
            ("a", "expected host:port"),
            ("a:", "missing port"),
            ("a:x1", "not a number"),
            ("a:70000", "out of range"),
            ("a:0", "port 0"),
            ("::1:5", "must be bracketed"),
            ("[::1:5", "missing ']'"),
            ("[::g]:5", "not an IPv6 address"),
            ("[::1]5", "expected ':port'"),
            ("a..b:1", "empty label"),
            ("a b:1", "invalid character"),
            ("-a:1", "starts or ends"),
        ] {
            let err = parse_addresses(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }
}
