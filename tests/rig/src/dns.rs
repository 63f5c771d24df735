//! A DNS server on a loopback port, UDP and TCP, answering like cluster DNS for a
//! Kubernetes headless service: one SRV record per ready pod, each target host name with
//! an A (or AAAA) record, sent in the additional section unless turned off.
//!
//! Messages are encoded and decoded with hickory-proto; the zone is a small table the
//! test changes while the server runs (a pod added during a backup window, a server
//! that stops answering).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsMode {
    /// From the zone.
    #[default]
    Normal,
    /// SERVFAIL to everything.
    ServFail,
    /// Never answers.
    Silent,
    /// Sets the TC flag on every answer, over TCP too, as a server does when the answer
    /// does not fit one message.
    Truncated,
    /// Answers with the query's id and a body that does not decode, as a broken name
    /// server (or something else on port 53) may.
    Malformed,
}

#[derive(Default)]
struct Zone {
    srv: BTreeMap<String, Vec<(String, u16)>>,
    addrs: BTreeMap<String, Vec<IpAddr>>,
    no_additionals: bool,
    mode: DnsMode,
}

/// The DNS server. Serves until dropped.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

fn key(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

impl DnsServer {
    /// Binds UDP and TCP on one loopback port and serves in background tasks.
    pub async fn start() -> DnsServer {
        // UDP picks the port; TCP must get the same one, which another process may
        // hold, so try a few times.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let queries = Arc::new(AtomicUsize::new(0));
        let udp = Arc::new(udp);
        let udp_task = {
            let (zone, queries) = (zone.clone(), queries.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                    queries.fetch_add(1, Ordering::SeqCst);
                    if let Some(reply) = answer(&zone, &buf[..n], false) {
                        let _ = udp.send_to(&reply, peer).await;
                    }
                }
            })
        };
        let tcp_task = {
            let (zone, queries) = (zone.clone(), queries.clone());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = tcp.accept().await {
                    let (zone, queries) = (zone.clone(), queries.clone());
                    tokio::spawn(async move {
                        loop {
                            let Ok(len) = stream.read_u16().await else {
                                return;
                            };
                            let mut buf = vec![0u8; len as usize];
                            if stream.read_exact(&mut buf).await.is_err() {
                                return;
                            }
                            queries.fetch_add(1, Ordering::SeqCst);
                            if let Some(reply) = answer(&zone, &buf, true) {
                                let _ = stream.write_u16(reply.len() as u16).await;
                                let _ = stream.write_all(&reply).await;
                            }
                        }
                    });
                }
            })
        };
        DnsServer {
            addr,
            zone,
            queries,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Where the server listens, UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries arrived so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Publishes a headless service `<release>-headless.<ns>.svc.cluster.local` with
    /// one SRV record under `_<port_name>._tcp.` per pod, each target
    /// `<release>-<i>.<release>-headless.<ns>.svc.cluster.local.` with the pod's address.
    /// Returns the SRV name, fully qualified without the trailing dot.
    pub fn headless_service(
        &self,
        port_name: &str,
        release: &str,
        ns: &str,
        pods: &[SocketAddr],
    ) -> String {
        let service = format!("{release}-headless.{ns}.svc.cluster.local");
        let srv_name = format!("_{port_name}._tcp.{service}");
        let targets = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let target = format!("{release}-{i}.{service}.");
                self.set_address(&target, pod.ip());
                (target, pod.port())
            })
            .collect();
        self.set_srv(&srv_name, targets);
        srv_name
    }

    /// Publishes a headless service with `n` pods that exist only in DNS, named as
    /// Kubernetes names pods without a host name (`10-1-2-3.<release>-headless...`),
    /// at addresses 10.1.x.y, all on `port`. For answers of realistic size.
    pub fn many_pods(
        &self,
        port_name: &str,
        release: &str,
        ns: &str,
        n: usize,
        port: u16,
    ) -> String {
        let service = format!("{release}-headless.{ns}.svc.cluster.local");
        let srv_name = format!("_{port_name}._tcp.{service}");
        let targets = (0..n)
            .map(|i| {
                let ip = std::net::Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8);
                let dashed = ip.to_string().replace('.', "-");
                let target = format!("{dashed}.{service}.");
                self.set_address(&target, IpAddr::V4(ip));
                (target, port)
            })
            .collect();
        self.set_srv(&srv_name, targets);
        srv_name
    }

    /// Sets the SRV records of `name`: `(target, port)` pairs.
    pub fn set_srv(&self, name: &str, targets: Vec<(String, u16)>) {
        let targets = targets.into_iter().map(|(t, p)| (key(&t), p)).collect();
        self.zone.lock().unwrap().srv.insert(key(name), targets);
    }

    /// Sets the address of a host name, replacing any before.
    pub fn set_address(&self, host: &str, ip: IpAddr) {
        self.zone.lock().unwrap().addrs.insert(key(host), vec![ip]);
    }

    /// Removes the addresses of a host name.
    pub fn remove_address(&self, host: &str) {
        self.zone.lock().unwrap().addrs.remove(&key(host));
    }

    /// Whether SRV answers carry the targets' addresses in the additional section
    /// (on by default, as cluster DNS does).
    pub fn set_additionals(&self, on: bool) {
        self.zone.lock().unwrap().no_additionals = !on;
    }

    /// Changes how the server answers.
    pub fn set_mode(&self, mode: DnsMode) {
        self.zone.lock().unwrap().mode = mode;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn answer(zone: &Mutex<Zone>, request: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    let zone = zone.lock().unwrap();
    let mut reply = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    reply.add_queries(request.queries.clone());
    match zone.mode {
        DnsMode::Silent => return None,
        DnsMode::ServFail => {
            reply.metadata.response_code = ResponseCode::ServFail;
            return reply.to_vec().ok();
        }
        DnsMode::Malformed => {
            // A response header (id, QR, one question, one answer) and then garbage.
            let id = request.metadata.id.to_be_bytes();
            return Some(vec![
                id[0], id[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff,
            ]);
        }
        DnsMode::Normal | DnsMode::Truncated => {}
    }
    let query = request.queries.first()?;
    let name = query.name().to_ascii().to_ascii_lowercase();
    let name = key(&name);
    match query.query_type() {
        RecordType::SRV => {
            if let Some(targets) = zone.srv.get(&name) {
                for (target, port) in targets {
                    let target_name = Name::from_ascii(target).unwrap();
                    reply.add_answer(Record::from_rdata(
                        query.name().clone(),
                        5,
                        RData::SRV(SRV::new(0, 100, *port, target_name.clone())),
                    ));
                    if !zone.no_additionals {
                        for ip in zone.addrs.get(target).into_iter().flatten() {
                            reply.add_additional(address_record(target_name.clone(), *ip));
                        }
                    }
                }
            }
        }
        t @ (RecordType::A | RecordType::AAAA) => {
            if let Some(ips) = zone.addrs.get(&name) {
                for ip in ips {
                    if (t == RecordType::A) == ip.is_ipv4() {
                        reply.add_answer(address_record(query.name().clone(), *ip));
                    }
                }
            }
        }
        _ => {}
    }
    // A name with records of another type exists: NOERROR with no answer.
    if !zone.srv.contains_key(&name) && !zone.addrs.contains_key(&name) {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    let limit = if tcp {
        u16::MAX as usize
    } else {
        request
            .edns
            .as_ref()
            .map_or(512, |e| e.max_payload() as usize)
            .max(512)
    };
    if zone.mode == DnsMode::Truncated {
        reply.metadata.truncation = true;
        return reply.to_vec().ok();
    }
    fit(reply, limit)
}

/// What CoreDNS does with an answer larger than one message: drop the additional
/// records first; if it still does not fit, drop answers until it does and set TC.
fn fit(mut reply: Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    reply.additionals.clear();
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    reply.metadata.truncation = true;
    // Each answer costs at least this much: keep as many as the limit allows.
    let per_answer = bytes.len().div_ceil(reply.answers.len().max(1));
    let keep = limit.saturating_sub(64) / per_answer.max(1);
    reply.answers.truncate(keep);
    loop {
        let bytes = reply.to_vec().ok()?;
        if bytes.len() <= limit || reply.answers.is_empty() {
            return Some(bytes);
        }
        reply.answers.pop();
    }
}

fn address_record(name: Name, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name, 5, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name, 5, RData::AAAA(AAAA(v6))),
    }
}
