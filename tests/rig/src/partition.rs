//! A partition of one TCP connection on loopback: nftables drops its packets both ways
//! until healed, while every other connection (a fresh one to the same pod included)
//! goes through. Only inside the private network namespace of `tests/k8s/netns.sh`
//! (where 198.18.0.0/15 is local), so that a test never touches the host's firewall.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

/// A partition made by [`Partition::between`]; healed by [`heal`](Self::heal) or when
/// dropped.
#[derive(Debug)]
pub struct Partition {
    table: String,
    healed: bool,
}

impl Partition {
    /// Why a partition cannot be made here (not in the test's network namespace, or no
    /// `nft`), or `Ok`.
    pub fn available() -> Result<(), String> {
        if let Err(e) = std::net::TcpListener::bind((Ipv4Addr::new(198, 18, 0, 1), 0)) {
            return Err(format!(
                "not in the private network namespace of tests/k8s/netns.sh (198.18.0.0/15 is not local: {e})"
            ));
        }
        match Command::new("nft").arg("--version").output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!("nft --version failed: {}", out.status)),
            Err(e) => Err(format!("nft not found ({e}); Debian's package is nftables")),
        }
    }

    /// Drops every TCP packet between local ports `a` and `b`, both ways.
    pub fn between(a: u16, b: u16) -> Result<Partition, String> {
        Self::available()?;
        let table = format!("partition_{a}_{b}");
        let script = format!(
            "table inet {table} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n  tcp sport {a} tcp dport {b} drop\n  tcp sport {b} tcp dport {a} drop\n }}\n}}\n"
        );
        nft(&["-f", "-"], Some(&script))?;
        Ok(Partition {
            table,
            healed: false,
        })
    }

    /// Lets the packets through again.
    pub fn heal(mut self) {
        self.heal_now();
    }

    fn heal_now(&mut self) {
        if !std::mem::replace(&mut self.healed, true)
            && let Err(e) = nft(&["delete", "table", "inet", &self.table], None)
        {
            eprintln!("cannot heal the partition: {e}");
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.heal_now();
    }
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.unwrap_or_default().as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The kernel's IPv4 TCP sockets: (local port, remote address) of each, any state.
fn sockets() -> Vec<(u16, SocketAddr)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let parse = |field: &str| -> Option<SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        // The address is in network order, read as a little-endian number.
        Some(SocketAddr::new(
            Ipv4Addr::from(ip.swap_bytes()).into(),
            port,
        ))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = parse(fields.next()?)?;
            let remote = parse(fields.next()?)?;
            Some((local.port(), remote))
        })
        .collect()
}

/// The local ports of this namespace's TCP sockets connected to `remote`.
pub fn ports_to(remote: SocketAddr) -> Vec<u16> {
    sockets()
        .into_iter()
        .filter(|(_, r)| *r == remote)
        .map(|(port, _)| port)
        .collect()
}

/// Whether the kernel still holds a socket of the connection from local port `port` to
/// `remote`, in any state: while it does, it may still send what it holds.
pub fn kernel_holds(port: u16, remote: SocketAddr) -> bool {
    sockets().contains(&(port, remote))
}
