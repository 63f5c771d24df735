//! Shared by the bench report and the criterion benches: the pod-fleet process, core
//! pinning, and the report's chart.

pub mod chart;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
        Self::start_with(pod_fleet, n, None, &[])
    }

    /// The same, pinned to `core` when given (with one runtime thread), with more
    /// `pod-fleet` arguments.
    pub fn start_with(
        pod_fleet: &Path,
        n: usize,
        core: Option<usize>,
        args: &[String],
    ) -> FleetProcess {
        let mut command = pinned(pod_fleet, core);
        if core.is_some() {
            command.args(["--threads", "1"]);
        }
        let mut child = command
            .args(["--pods", &n.to_string()])
            .args(args)
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

    /// CPU time the pods' process has used so far (user and system).
    pub fn cpu_time(&self) -> std::time::Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        // Linux reports these in clock ticks of 1/100 s.
        std::time::Duration::from_millis(ticks * 10)
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

pub use scalar_admin_rig::raise_open_files;

/// A command for `program`, run on one core with `taskset` when `core` is given.
pub fn pinned(program: &Path, core: Option<usize>) -> Command {
    match core {
        Some(core) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &core.to_string()]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Whether processes can be pinned to cores here: `taskset` runs and there are two
/// cores or more.
pub fn can_pin() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && Command::new("taskset")
            .args(["-c", "0", "true"])
            .status()
            .is_ok_and(|s| s.success())
}

/// A binary next to this one in the target directory.
pub fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // Benches and tests run from `target/<profile>/deps`; binaries sit one level up.
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap()
    } else {
        dir
    };
    dir.join(name)
}

/// Builds the binaries the benches run, `pod-fleet` and `scalar-admin`, with the profile
/// of the running one (`cargo run` and `cargo bench` build only their own), and returns
/// their paths.
pub fn build_binaries() -> (PathBuf, PathBuf) {
    // One package per build: built together, their features would be unified and the
    // running binary rebuilt under our feet.
    for (package, bin) in [
        ("scalar-admin-rig", "pod-fleet"),
        ("scalar-admin-cli", "scalar-admin"),
    ] {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", package, "--bin", bin]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().expect("cargo build");
        assert!(
            status.success() && sibling(bin).exists(),
            "cannot build {bin}"
        );
    }
    (sibling("pod-fleet"), sibling("scalar-admin"))
}
