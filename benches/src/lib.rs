//! Shared by the bench report and the criterion benches: the pod-fleet process.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use scalar_admin::Target;

/// A running `pod-fleet` process. Stops when dropped.
pub struct FleetProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Every pod's address.
    pub pods: Vec<SocketAddr>,
    /// The DNS server publishing the first three pods.
    pub dns: SocketAddr,
    /// The SRV name of the first three pods.
    pub srv: String,
}

impl FleetProcess {
    /// Starts `n` pods in a `pod-fleet` process and waits until they all listen.
    pub fn start(pod_fleet: &Path, n: usize) -> FleetProcess {
        let mut child = Command::new(pod_fleet)
            .args(["--pods", &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", pod_fleet.display()));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut hello = String::new();
        stdout.read_line(&mut hello).expect("pod-fleet hello");
        let hello: serde_json::Value = serde_json::from_str(&hello).expect("pod-fleet hello JSON");
        let pods = hello["pods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().parse().unwrap())
            .collect();
        FleetProcess {
            child,
            stdin,
            stdout,
            pods,
            dns: hello["dns"].as_str().unwrap().parse().unwrap(),
            srv: hello["srv"].as_str().unwrap().to_owned(),
        }
    }

    /// The first `n` pods as targets.
    pub fn targets(&self, n: usize) -> Vec<Target> {
        self.pods[..n]
            .iter()
            .copied()
            .map(Target::from_socket_addr)
            .collect()
    }

    /// The server-side gate-closing spread of each Pause round since the last call, in
    /// microseconds.
    pub fn spreads(&mut self) -> Vec<u64> {
        writeln!(self.stdin, "spreads").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["spreads_us"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .collect()
    }
}

impl Drop for FleetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises the open-files soft limit to the hard limit.
pub fn raise_open_files() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}
