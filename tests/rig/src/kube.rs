//! A real Kubernetes control plane for the Kubernetes way of finding pods (issue 15):
//! a real `kube-apiserver` and `etcd` (built by `tests/k8s/build.sh`, started by
//! `tests/k8s/start.sh` as controller-runtime's envtest starts them), and the objects
//! a Helm release of ScalarDB Cluster or ScalarDL has, created through the API the way
//! Helm and the controllers would.
//!
//! There is no kubelet, scheduler or controller-manager. The rig does their part:
//! it creates the Deployment (or StatefulSet), the ReplicaSet that owns the pods, the
//! pods, sets each pod's status through the status subresource as a kubelet does
//! (phase, IPs, conditions, container restart counts), keeps the workloads' status
//! up to date, and writes the EndpointSlices of the headless Service as the
//! EndpointSlice controller does (at most 100 endpoints each, its labels, `targetRef`s
//! and ready conditions). Everything the client under test reads is therefore what a
//! real API server serves, with real resource versions, UIDs, RBAC and errors.
//!
//! The pods' IPs point at the rig's real admin pods ([`crate::Pod`]), each on its own
//! address in 198.18.0.0/15: the API server refuses loopback addresses in
//! EndpointSlices, so the tests run under `tests/k8s/netns.sh`, which makes that range
//! local in a private network namespace. Without it, or without the binaries,
//! [`KubeCluster::shared`] returns `None` and says once how to get them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, mpsc};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SubjectAccessReview};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod as PodObject, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedContext};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{Pod, PodBuilder};

/// How long [`KubeCluster::shared`] waits for `start.sh` to print `READY`. It is ready
/// in 3 to 5 s on the 2-core CI machine; the margin is for a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(60);

/// How long [`TestNamespace::grant_tester`] waits for a new binding to take effect.
const RBAC_LIMIT: Duration = Duration::from_secs(10);

/// The EndpointSlice controller's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Requests in flight at once when the rig creates many pods: enough to create 1000
/// pods in seconds, well below the API server's `--max-requests-inflight` (400).
const API_CONCURRENCY: usize = 32;

/// The port every release pod exposes for metrics: a second, unrelated port on the
/// Service and the pods, so a client must pick the admin port by name.
pub const METRICS_PORT: u16 = 9080;

/// The port the headless Services publish for the admin API (`port`, not `targetPort`):
/// the charts' default, deliberately not the port the rig's pods listen on, so a
/// client that uses `port` instead of `targetPort` fails.
pub const SERVICE_PORT: u16 = 60053;

/// The node name the rig's pods are bound to (no Node object exists; the API server
/// does not check).
pub const NODE_NAME: &str = "scalar-test-node";

/// Who talks to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// Client certificate in group `system:masters`: every right, RBAC bypassed.
    Admin,
    /// Static token, user `tester`, group `scalar-admin:testers`: only what the RBAC
    /// bootstrap policy gives every authenticated user, plus what a test grants with
    /// [`TestNamespace::grant_tester`].
    Tester,
}

impl User {
    /// The context of this user in [`KubeCluster::kubeconfig`].
    pub fn context(self) -> &'static str {
        match self {
            User::Admin => "admin",
            User::Tester => "tester",
        }
    }
}

/// The rules of `scalar-admin-cli/deploy/rbac.yaml`: what the Kubernetes way needs and
/// nothing more, as `(verbs, resource)` for [`TestNamespace::grant_tester`].
pub const SCALAR_ADMIN_RULES: &[(&[&str], &str)] = &[
    (&["get", "list"], "pods"),
    (&["get", "list"], "services"),
    (&["get", "list"], "endpointslices"),
    (&["get", "list"], "deployments"),
    (&["get", "list"], "statefulsets"),
];

/// What `--journal k8s:` adds to [`SCALAR_ADMIN_RULES`] (`deploy/rbac.yaml` grants both).
pub const JOURNAL_RULES: &[(&[&str], &str)] =
    &[(&["create", "get", "list", "update", "delete"], "configmaps")];

/// A running control plane: `tests/k8s/start.sh` and the etcd and kube-apiserver it
/// started on loopback.
pub struct KubeCluster {
    api_url: String,
    kubeconfig: PathBuf,
    ca_file: PathBuf,
    tester_token: String,
    dir: PathBuf,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("api_url", &self.api_url)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Why there is no cluster: the binaries or the 198.18.0.0/15 route are missing.
#[derive(Debug, Clone)]
struct Skip(String);

impl KubeCluster {
    /// The control plane of this test process, started on first use, or `None` (after
    /// one line on stderr, once per process, saying how to get one) when the binaries
    /// are not built or 198.18.0.0/15 is not local (not under `tests/k8s/netns.sh`).
    ///
    /// One per process, because starting one takes seconds and every test gets a
    /// namespace of its own anyway. It is never stopped by the process: `start.sh`
    /// watches this process's pid (`--watch-pid`) and stops the servers and removes
    /// its directory when the process is gone, however it ended.
    ///
    /// Holds no client: a `kube::Client` belongs to the runtime it was made on, and
    /// each `#[tokio::test]` has its own, so every test makes its own clients.
    ///
    /// # Panics
    ///
    /// When the binaries are there and the route is too, but the control plane does not
    /// start within 60 s: that is a broken rig, not a reason to skip.
    pub async fn shared() -> Option<&'static KubeCluster> {
        static SHARED: tokio::sync::OnceCell<Result<Result<KubeCluster, Skip>, String>> =
            tokio::sync::OnceCell::const_new();
        let started = SHARED
            .get_or_init(|| async {
                tokio::task::spawn_blocking(Self::start_blocking)
                    .await
                    .unwrap_or_else(|e| Err(format!("starting the control plane panicked: {e}")))
            })
            .await;
        match started {
            Ok(Ok(cluster)) => Some(cluster),
            Ok(Err(Skip(why))) => {
                static SAID: Once = Once::new();
                SAID.call_once(|| {
                    // Straight to stderr, not `eprintln!`: the test harness captures the
                    // macros, and this line is for whoever runs `cargo test`.
                    let _ = writeln!(std::io::stderr().lock(), "{}", skip_line(why));
                });
                None
            }
            Err(error) => panic!("{error}"),
        }
    }

    /// A control plane of its own, stopped when dropped, for a test that must stop or
    /// break it. `None` as for [`KubeCluster::shared`] (without the line).
    ///
    /// # Panics
    ///
    /// As [`KubeCluster::shared`].
    pub async fn start() -> Option<KubeCluster> {
        match tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .expect("start the control plane")
        {
            Ok(Ok(cluster)) => Some(cluster),
            Ok(Err(_)) => None,
            Err(error) => panic!("{error}"),
        }
    }

    /// Runs `start.sh` and waits for `READY`. Blocking: it reads the child's stdout.
    fn start_blocking() -> Result<Result<KubeCluster, Skip>, String> {
        let root = repo_root();
        let bin_dir = std::env::var_os("K8S_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/k8s/bin"));
        for binary in ["kube-apiserver", "etcd"] {
            if !bin_dir.join(binary).is_file() {
                return Ok(Err(Skip(format!(
                    "{} not built",
                    bin_dir.join(binary).display()
                ))));
            }
        }
        if let Err(e) = std::net::TcpListener::bind((Ipv4Addr::new(198, 18, 0, 1), 0)) {
            return Ok(Err(Skip(format!("198.18.0.0/15 is not local here ({e})"))));
        }

        // stderr to a file, not a pipe: start.sh outlives this process by a moment
        // when the process ends (its watcher polls once a second), and a write to a
        // closed pipe would kill it before it stops the servers.
        let logs = root.join("target/k8s/logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        let log = logs.join(format!("start.{}.log", std::process::id()));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let script = root.join("tests/k8s/start.sh");
        let mut child = Command::new("bash")
            .arg(&script)
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("run {}: {e}", script.display()))?;

        // A thread reads stdout for as long as start.sh runs (it prints nothing after
        // READY, but the pipe must stay drained and open), passing lines on until
        // READY; the wait for them is bounded by `recv_timeout`.
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("k8s-start-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = lines_tx.send(line);
                }
            })
            .map_err(|e| format!("spawn reader thread: {e}"))?;

        let deadline = Instant::now() + START_LIMIT;
        let mut env = HashMap::new();
        let failure = loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line == "READY" => break None,
                Ok(line) => {
                    if let Some((key, value)) = line.split_once('=') {
                        env.insert(key.to_owned(), value.to_owned());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    break Some(format!("not READY after {}s", START_LIMIT.as_secs()));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    break Some(format!("exited ({status}) before READY"));
                }
            }
        };
        if let Some(failure) = failure {
            stop_child(&mut child);
            return Err(format!(
                "tests/k8s/start.sh {failure}; its stderr ({}):\n{}",
                log.display(),
                tail(&log, 40)
            ));
        }
        let get = |key: &str| {
            env.get(key)
                .cloned()
                .ok_or_else(|| format!("start.sh printed no {key}= line (got {env:?})"))
        };
        Ok(Ok(KubeCluster {
            api_url: get("K8S_API_URL")?,
            kubeconfig: get("KUBECONFIG")?.into(),
            ca_file: get("K8S_CA_FILE")?.into(),
            tester_token: get("K8S_TESTER_TOKEN")?,
            dir: get("K8S_DIR")?.into(),
            log,
            child: Mutex::new(Some(child)),
        }))
    }

    /// `https://127.0.0.1:PORT`.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The kubeconfig with both users: contexts `admin` (current) and `tester`, each
    /// with namespace `default`. See [`TestNamespace::kubeconfig`] for one that names a
    /// test's namespace.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA that signed the API server's certificate (and the admin's).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The `tester` user's bearer token.
    pub fn tester_token(&self) -> &str {
        &self.tester_token
    }

    /// The control plane's directory (certificates, logs of both servers, etcd data);
    /// removed when it stops.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `start.sh` writes its stderr.
    pub fn start_log(&self) -> &Path {
        &self.log
    }

    /// A client as `user`, with `namespace` as its default namespace (`default` if
    /// `None`), built from the kubeconfig as a user's tool would.
    ///
    /// # Panics
    ///
    /// When the kubeconfig cannot be read or the client cannot be built.
    pub async fn client(&self, user: User, namespace: Option<&str>) -> kube::Client {
        client_from(&self.kubeconfig, user, namespace).await
    }

    /// The admin's client (every right).
    pub async fn admin_client(&self) -> kube::Client {
        self.client(User::Admin, None).await
    }

    /// The `tester` user's client (only the rights a test granted).
    pub async fn tester_client(&self) -> kube::Client {
        self.client(User::Tester, None).await
    }

    /// Creates a namespace of its own for a test: `PREFIX-N-PID`, so tests running at
    /// once, and test processes sharing a cluster, never meet.
    ///
    /// It is not deleted afterwards: without a controller-manager a namespace never
    /// finishes terminating, and the whole etcd is thrown away with the process.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("-{n}-{}", std::process::id());
        let mut stem: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        stem.truncate(63 - suffix.len());
        let stem = stem.trim_matches('-');
        let name = format!("{}{suffix}", if stem.is_empty() { "test" } else { stem });
        let client = self.admin_client().await;
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"metadata": {"name": name, "labels": {"scalar-admin-rig/test": "true"}}}),
        )
        .await;
        TestNamespace {
            name,
            client,
            kubeconfig: self.kubeconfig.clone(),
            dir: self.dir.clone(),
        }
    }

    /// The port every admin pod of this process listens on (each on its own IP), as
    /// every pod of a Deployment listens on the same container port.
    pub fn admin_port(&self) -> u16 {
        admin_port()
    }

    /// `n` real admin pods, each on its own 198.18.x.y address and
    /// [`KubeCluster::admin_port`]; raises the open-files limit first, so 1000 and more
    /// fit in one process.
    pub async fn admin_pods(&self, n: usize) -> Vec<Pod> {
        self.admin_pods_with(n, |_, builder| builder).await
    }

    /// As [`KubeCluster::admin_pods`], each pod configured by `configure(addr, builder)`
    /// first (TLS with a certificate for `addr`, a failing Pause...).
    pub async fn admin_pods_with(
        &self,
        n: usize,
        configure: impl FnMut(SocketAddr, PodBuilder) -> PodBuilder,
    ) -> Vec<Pod> {
        self.admin_pods_at(n, admin_port(), configure).await
    }

    /// A second port for admin pods, other than [`KubeCluster::admin_port`]: the pods
    /// of a rollout whose new template moved the admin port.
    pub fn second_admin_port(&self) -> u16 {
        static PORT: OnceLock<u16> = OnceLock::new();
        *PORT.get_or_init(|| {
            loop {
                let listener = std::net::TcpListener::bind((next_ip(), 0))
                    .expect("bind a 198.18 address (run under tests/k8s/netns.sh)");
                let port = listener.local_addr().expect("local addr").port();
                if port != admin_port() {
                    break port;
                }
            }
        })
    }

    /// As [`KubeCluster::admin_pods_with`], the pods listening on `port`.
    pub async fn admin_pods_at(
        &self,
        n: usize,
        port: u16,
        mut configure: impl FnMut(SocketAddr, PodBuilder) -> PodBuilder,
    ) -> Vec<Pod> {
        crate::raise_open_files();
        let mut pods = Vec::with_capacity(n);
        for _ in 0..n {
            let addr = SocketAddr::V4(SocketAddrV4::new(next_ip(), port));
            pods.push(configure(addr, Pod::builder().addr(addr)).start().await);
        }
        pods
    }

    /// A fresh 198.18.x.y address where nothing listens: for a pod whose IP must be
    /// refused (the Envoy pods use these).
    pub fn unused_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(next_ip(), admin_port()))
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) {
            stop_child(&mut child);
        }
    }
}

/// A client as `user` from the kubeconfig at `path`, default namespace `namespace`.
async fn client_from(path: &Path, user: User, namespace: Option<&str>) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("read the kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &KubeConfigOptions {
            context: Some(user.context().to_owned()),
            ..KubeConfigOptions::default()
        },
    )
    .await
    .expect("kube config from the kubeconfig");
    if let Some(namespace) = namespace {
        config.default_namespace = namespace.to_owned();
    }
    kube::Client::try_from(config).expect("kube client")
}

/// The line printed once when the Kubernetes tests skip.
fn skip_line(why: &str) -> String {
    format!(
        "skipping the Kubernetes tests ({why}): build kube-apiserver and etcd with \
         `tests/k8s/build.sh`, then run the tests under `tests/k8s/netns.sh`, e.g. \
         `tests/k8s/netns.sh cargo test --workspace --all-features`"
    )
}

/// The repository root: two levels above this crate (`tests/rig`).
fn repo_root() -> PathBuf {
    let rig = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = rig.join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Stops `start.sh` with SIGTERM, so that its trap stops both servers and removes its
/// directory (SIGKILL would leave them running), then waits for it, bounded.
fn stop_child(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    // It stops the API server, then etcd, each within ~10 s at worst.
    let deadline = Instant::now() + Duration::from_secs(25);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The next unused address of 198.18.0.0/15 in this process. Each process starts at
/// its own offset (by pid), so two test processes in one namespace rarely meet;
/// addresses ending in .0 or .255 and 198.18.0.1 (the probe) are skipped.
fn next_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const RANGE: u32 = 1 << 17;
    let base = (std::process::id() % 32) * 4096;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (base + n) % RANGE);
        let last = ip.octets()[3];
        if last != 0 && last != 255 && ip != Ipv4Addr::new(198, 18, 0, 1) {
            return ip;
        }
    }
}

/// The admin port of this process: a port the kernel chose for one 198.18 address,
/// shared by every pod (each has its own address, so they cannot clash).
fn admin_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let listener = std::net::TcpListener::bind((next_ip(), 0))
            .expect("bind a 198.18 address (run under tests/k8s/netns.sh)");
        listener.local_addr().expect("local addr").port()
    })
}

/// A name suffix as Kubernetes makes them (`generateName`, pod-template-hash), from its
/// alphabet without vowels, random per process, and never the same twice in it: among a
/// thousand pods two 5-character suffixes would collide in about one run in thirty,
/// where the ReplicaSet controller would simply try another name.
fn random_suffix(len: usize) -> String {
    static ISSUED: std::sync::Mutex<Option<std::collections::HashSet<String>>> =
        std::sync::Mutex::new(None);
    loop {
        let suffix = any_suffix(len);
        let mut issued = ISSUED.lock().unwrap_or_else(|e| e.into_inner());
        if issued
            .get_or_insert_with(Default::default)
            .insert(suffix.clone())
        {
            return suffix;
        }
    }
}

fn any_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    static SEED: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = SEED.get_or_init(Default::default).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut bits = hasher.finish();
    (0..len)
        .map(|_| {
            let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize];
            bits /= ALPHABET.len() as u64;
            if bits == 0 {
                hasher.write_u8(c);
                bits = hasher.finish();
            }
            c as char
        })
        .collect()
}

/// Now, as the timestamps in statuses and conditions.
fn now() -> String {
    Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or(Timestamp::now())
        .to_string()
}

/// Creates an object given as JSON, panicking with the API's answer on failure.
async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let typed: K = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("not a {}: {e}: {object}", std::any::type_name::<K>()));
    api.create(&PostParams::default(), &typed)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}: {object}", std::any::type_name::<K>()))
}

/// A JSON merge patch of the status subresource (lists are replaced whole).
async fn patch_status<K>(api: &Api<K>, name: &str, status: Value) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap_or_else(|e| panic!("patch status of {name}: {e}"))
}

/// The UID of an object the API returned.
fn uid_of<K: kube::Resource>(object: &K) -> String {
    object.meta().uid.clone().expect("uid")
}

/// A namespace of one test, with the admin's client.
pub struct TestNamespace {
    name: String,
    client: kube::Client,
    /// The cluster's kubeconfig and directory (not the cluster itself, so that a
    /// namespace of a cluster of the test's own, [`KubeCluster::start`], works too).
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admin's client, with this namespace as its default.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// An `Api` of this namespace, as the admin.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// The `tester` user's client, with this namespace as its default.
    pub async fn tester_client(&self) -> kube::Client {
        client_from(&self.kubeconfig, User::Tester, Some(&self.name)).await
    }

    /// Writes a kubeconfig whose current context is `user` in this namespace (for a
    /// command under test: `KUBECONFIG=...`, no `--context`, no namespace flag) and
    /// returns its path, in the cluster's directory.
    pub fn kubeconfig(&self, user: User) -> PathBuf {
        let base = Kubeconfig::read_from(&self.kubeconfig).expect("read the kubeconfig");
        let auth = base
            .auth_infos
            .iter()
            .find(|a| a.name == user.context())
            .and_then(|a| a.auth_info.clone())
            .expect("user in the kubeconfig");
        self.write_kubeconfig(base, user.context(), auth)
    }

    /// Creates ServiceAccount `name` (if needed) and a token for it, and writes a
    /// kubeconfig that authenticates with that token in this namespace, as the tool
    /// does in a pod with `serviceAccountName: name`. Grant it rights with
    /// [`TestNamespace::grant_service_account`].
    pub async fn service_account_kubeconfig(&self, name: &str) -> PathBuf {
        let api: Api<ServiceAccount> = self.api();
        if api
            .get_opt(name)
            .await
            .expect("get serviceaccount")
            .is_none()
        {
            create(&api, json!({"metadata": {"name": name}})).await;
        }
        let request: TokenRequest =
            serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}})).unwrap();
        let token = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .expect("token request")
            .status
            .expect("token status")
            .token;
        let base = Kubeconfig::read_from(&self.kubeconfig).expect("read the kubeconfig");
        let auth: AuthInfo = serde_json::from_value(json!({ "token": token })).unwrap();
        self.write_kubeconfig(base, &format!("sa-{name}"), auth)
    }

    /// Writes `base`'s cluster with one user and one context, both named `context`, in
    /// this namespace, as the current context. JSON, which is YAML too: kube-rs and
    /// kubectl read it, and no YAML writer is needed. Credentials are inline.
    fn write_kubeconfig(&self, mut base: Kubeconfig, context: &str, auth: AuthInfo) -> PathBuf {
        base.auth_infos = vec![NamedAuthInfo {
            name: context.to_owned(),
            auth_info: Some(auth),
            other: BTreeMap::new(),
        }];
        let cluster = base
            .clusters
            .first()
            .expect("cluster in the kubeconfig")
            .name
            .clone();
        base.contexts = vec![NamedContext {
            name: context.to_owned(),
            context: Some(kube::config::Context {
                cluster,
                user: Some(context.to_owned()),
                namespace: Some(self.name.clone()),
                extensions: None,
                other: BTreeMap::new(),
            }),
            other: BTreeMap::new(),
        }];
        base.current_context = Some(context.to_owned());
        let path = self.dir.join(format!("kubeconfig-{}-{context}", self.name));
        let text = serde_json::to_string_pretty(&base).expect("kubeconfig as JSON");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Creates every object of a YAML manifest file (documents split on `---`) in this
    /// namespace, as `kubectl create -n NS -f FILE` does: the API server parses the
    /// YAML itself (`Content-Type: application/yaml`), so what it accepts is exactly
    /// what a cluster would. Returns `kind/name` of each. Only the namespaced kinds
    /// the project's manifests use are known.
    ///
    /// # Panics
    ///
    /// On an unknown kind or when the API server refuses a document.
    pub async fn apply_manifest(&self, path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut created = Vec::new();
        for doc in text.split("\n---") {
            let field = |key: &str| {
                doc.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_owned())
            };
            let Some(kind) = field("kind:") else { continue };
            let api_version = field("apiVersion:").expect("apiVersion");
            let plural = match kind.as_str() {
                "ServiceAccount" => "serviceaccounts",
                "Role" => "roles",
                "RoleBinding" => "rolebindings",
                "ConfigMap" => "configmaps",
                "Secret" => "secrets",
                "Pod" => "pods",
                "Job" => "jobs",
                "CronJob" => "cronjobs",
                other => panic!("apply_manifest: kind {other} unknown to the rig"),
            };
            let prefix = if api_version.contains('/') {
                "apis"
            } else {
                "api"
            };
            let uri = format!("/{prefix}/{api_version}/namespaces/{}/{plural}", self.name);
            let request = http::Request::post(&uri)
                .header(http::header::CONTENT_TYPE, "application/yaml")
                .body(doc.as_bytes().to_vec())
                .expect("request");
            let object: Value = self
                .client
                .request(request)
                .await
                .unwrap_or_else(|e| panic!("create {kind} from {}: {e}", path.display()));
            created.push(format!(
                "{kind}/{}",
                object["metadata"]["name"].as_str().unwrap_or("?")
            ));
        }
        created
    }

    /// Whether ServiceAccount `service_account` of this namespace may `verb` `resource`
    /// here (SubjectAccessReview, asked as the admin).
    pub async fn service_account_can(
        &self,
        service_account: &str,
        verb: &str,
        resource: &str,
    ) -> bool {
        let user = format!("system:serviceaccount:{}:{service_account}", self.name);
        let groups = [
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{}", self.name),
        ];
        let (group, resource) = api_group(resource);
        let review: SubjectAccessReview = serde_json::from_value(json!({
            "spec": {"user": user, "groups": groups, "resourceAttributes": {
                "namespace": self.name, "verb": verb, "group": group, "resource": resource,
            }}
        }))
        .unwrap();
        Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .expect("SubjectAccessReview")
            .status
            .is_some_and(|s| s.allowed)
    }

    /// Waits (bounded) until ServiceAccount `service_account` may do everything in
    /// `rules`: RBAC applies a new binding a moment after it is written.
    pub async fn wait_service_account_allowed(
        &self,
        service_account: &str,
        rules: &[(&[&str], &str)],
    ) {
        let deadline = Instant::now() + RBAC_LIMIT;
        for &(verbs, resource) in rules {
            for verb in verbs {
                while !self
                    .service_account_can(service_account, verb, resource)
                    .await
                {
                    assert!(
                        Instant::now() < deadline,
                        "RBAC: {service_account} still may not {verb} {resource} after {RBAC_LIMIT:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Starts describing a Helm release `name` of `product` (`scalardb-cluster`,
    /// `ledger`, `auditor`) in this namespace.
    pub fn release(&self, name: &str, product: &str) -> ReleaseBuilder<'_> {
        ReleaseBuilder::new(self, name, product)
    }

    /// Grants the `tester` user `rules` in this namespace: Role and RoleBinding `name`
    /// (replaced if they exist), then waits until the authorizer applies them.
    ///
    /// `rules` are `(verbs, resource)`; the resource's API group is the one Kubernetes
    /// serves it from (`endpointslices`: `discovery.k8s.io`; `deployments`,
    /// `statefulsets`, `replicasets`: `apps`; others the core group), or given as
    /// `group/resource`. Leaving out `(["list"], "endpointslices")` is how a test makes
    /// the one-line permission error happen.
    pub async fn grant_tester(&self, name: &str, rules: &[(&[&str], &str)]) {
        let subject =
            json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "tester"});
        self.grant(name, subject, rules).await;
        // The RBAC authorizer reads roles through informers, so a new binding takes
        // effect a moment later, and no event says when. Poll what the tester may do,
        // bounded, through SelfSubjectAccessReview: the same authorizer a request meets.
        let client = self.tester_client().await;
        let deadline = Instant::now() + RBAC_LIMIT;
        for &(verbs, resource) in rules {
            for verb in verbs {
                while !can(&client, &self.name, verb, resource).await {
                    assert!(
                        Instant::now() < deadline,
                        "RBAC: tester still may not {verb} {resource} in {} after {:?}",
                        self.name,
                        RBAC_LIMIT
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Grants `rules` to ServiceAccount `service_account` of this namespace (Role and
    /// RoleBinding `name`), as `scalar-admin-cli/deploy/rbac.yaml` does, and waits until
    /// they apply.
    pub async fn grant_service_account(
        &self,
        name: &str,
        service_account: &str,
        rules: &[(&[&str], &str)],
    ) {
        let subject =
            json!({"kind": "ServiceAccount", "name": service_account, "namespace": self.name});
        self.grant(name, subject, rules).await;
        // As the admin, SubjectAccessReview for the account's user and groups: the
        // account's own token may not be made yet.
        self.wait_service_account_allowed(service_account, rules)
            .await;
    }

    async fn grant(&self, name: &str, subject: Value, rules: &[(&[&str], &str)]) {
        let rules: Vec<Value> = rules
            .iter()
            .map(|&(verbs, resource)| {
                let (group, resource) = api_group(resource);
                json!({"apiGroups": [group], "resources": [resource], "verbs": verbs})
            })
            .collect();
        let roles: Api<Role> = self.api();
        let bindings: Api<RoleBinding> = self.api();
        let _ = roles.delete(name, &DeleteParams::default()).await;
        let _ = bindings.delete(name, &DeleteParams::default()).await;
        create(&roles, json!({"metadata": {"name": name}, "rules": rules})).await;
        create(
            &bindings,
            json!({
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [subject],
            }),
        )
        .await;
    }

    /// The user name of ServiceAccount `name` of this namespace, as the API server
    /// authenticates its tokens: `system:serviceaccount:NS:NAME`.
    pub fn service_account_user(&self, name: &str) -> String {
        format!("system:serviceaccount:{}:{name}", self.name)
    }

    /// The requests `user` made that the API server's audit log holds (`start.sh` logs
    /// the tester's and the service accounts' requests, at level Metadata), in the order
    /// logged, once every request made before this call is in the log: the audit
    /// backend writes an event as its response completes, so the tester makes a marker
    /// request and this waits (bounded) until the log has it.
    ///
    /// # Panics
    ///
    /// When the marker is not logged within 10 s.
    pub async fn audited(&self, user: &str) -> Vec<Audited> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let marker = format!(
            "audit-marker-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // Refused or not found: logged either way.
        let _ = Api::<ConfigMap>::namespaced(self.tester_client().await, &self.name)
            .get_opt(&marker)
            .await;
        let path = self.dir.join("audit.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let events: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if events
                .iter()
                .any(|e| e["objectRef"]["name"].as_str() == Some(marker.as_str()))
            {
                return events
                    .iter()
                    .filter(|e| e["user"]["username"].as_str() == Some(user))
                    .map(Audited::from_event)
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "the audit log ({}) has no marker {marker} after 10 s",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Removes Role and RoleBinding `name`. Like a grant, it takes effect a moment
    /// later; check with [`TestNamespace::tester_can`] where it matters.
    pub async fn revoke(&self, name: &str) {
        let _ = self
            .api::<RoleBinding>()
            .delete(name, &DeleteParams::default())
            .await;
        let _ = self
            .api::<Role>()
            .delete(name, &DeleteParams::default())
            .await;
    }

    /// Whether the `tester` user may `verb` `resource` here now (SelfSubjectAccessReview).
    pub async fn tester_can(&self, verb: &str, resource: &str) -> bool {
        can(&self.tester_client().await, &self.name, verb, resource).await
    }
}

/// One request as the API server's audit log recorded it (level Metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    /// `get`, `list`, `watch`, `create`...
    pub verb: String,
    /// `resource` or `group/resource` (`apps/deployments`), `/subresource` after it.
    pub resource: String,
    /// The path and query asked.
    pub uri: String,
    /// The response's status code (403 for a request the authorizer refused).
    pub code: u16,
    /// The client's `User-Agent`.
    pub user_agent: String,
}

impl Audited {
    fn from_event(event: &Value) -> Audited {
        let object = &event["objectRef"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let mut resource = text(&object["resource"]);
        if let Some(group) = object["apiGroup"].as_str().filter(|g| !g.is_empty()) {
            resource = format!("{group}/{resource}");
        }
        if let Some(sub) = object["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        Audited {
            verb: text(&event["verb"]),
            resource,
            uri: text(&event["requestURI"]),
            code: event["responseStatus"]["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or_default(),
            user_agent: text(&event["userAgent"]),
        }
    }
}

impl std::fmt::Display for Audited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} ({})",
            self.code, self.verb, self.resource, self.uri
        )
    }
}

/// The API group of a resource name, or `group/resource` as given.
fn api_group(resource: &str) -> (&str, &str) {
    if let Some((group, resource)) = resource.split_once('/') {
        return (group, resource);
    }
    let group = match resource {
        "endpointslices" => "discovery.k8s.io",
        "deployments" | "statefulsets" | "replicasets" | "controllerrevisions" => "apps",
        "roles" | "rolebindings" => "rbac.authorization.k8s.io",
        _ => "",
    };
    (group, resource)
}

/// SelfSubjectAccessReview as `client`'s user.
async fn can(client: &kube::Client, namespace: &str, verb: &str, resource: &str) -> bool {
    let (group, resource) = api_group(resource);
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": {
            "namespace": namespace, "verb": verb, "group": group, "resource": resource,
        }}
    }))
    .unwrap();
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

/// How the headless Service names the pods' admin port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    /// `targetPort: <number>` (what Scalar Admin for Kubernetes reads).
    Number,
    /// `targetPort: <name>`, resolved against each pod's container ports; the
    /// container port of that name is the admin port (at most 15 characters).
    Named(String),
}

/// What owns the release's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// A Deployment, through a ReplicaSet (ScalarDB Cluster's and ScalarDL's charts).
    Deployment,
    /// A StatefulSet with the headless Service as its `serviceName`.
    StatefulSet,
}

/// Describes a Helm release before [`ReleaseBuilder::create`] makes its objects.
pub struct ReleaseBuilder<'a> {
    ns: &'a TestNamespace,
    name: String,
    product: String,
    port_name: String,
    target: TargetPort,
    workload: Workload,
    workload_name: Option<String>,
    envoy: bool,
    sidecar: Option<String>,
}

impl<'a> ReleaseBuilder<'a> {
    fn new(ns: &'a TestNamespace, name: &str, product: &str) -> Self {
        let port_name = match product {
            "ledger" => "scalardl-admin",
            "auditor" => "scalardl-auditor-admin",
            _ => "scalardb-cluster",
        };
        ReleaseBuilder {
            ns,
            name: name.to_owned(),
            product: product.to_owned(),
            port_name: port_name.to_owned(),
            target: TargetPort::Number,
            workload: Workload::Deployment,
            workload_name: None,
            envoy: true,
            sidecar: None,
        }
    }

    /// The headless Service's name for the admin port (default by product:
    /// `scalardb-cluster`, `scalardl-admin`, `scalardl-auditor-admin`; `scalardb` is the
    /// other one ScalarDB charts use).
    pub fn port_name(mut self, name: &str) -> Self {
        self.port_name = name.to_owned();
        self
    }

    /// `targetPort` by name: the pods' container port named `container_port` (at most
    /// 15 characters, e.g. `admin`) instead of the number.
    pub fn named_target_port(mut self, container_port: &str) -> Self {
        assert!(
            container_port.len() <= 15,
            "container port names are at most 15 characters"
        );
        self.target = TargetPort::Named(container_port.to_owned());
        self
    }

    /// Pods owned by a StatefulSet (`NAME-0`, `NAME-1`...) instead of a Deployment.
    pub fn statefulset(mut self) -> Self {
        self.workload = Workload::StatefulSet;
        self
    }

    /// The Deployment's or StatefulSet's name (default `RELEASE-PRODUCT`).
    pub fn workload_name(mut self, name: &str) -> Self {
        self.workload_name = Some(name.to_owned());
        self
    }

    /// Whether the release also has an Envoy Deployment, Service and pod
    /// (`app.kubernetes.io/app: envoy`, an address where nothing listens), which a client
    /// must skip. On by default, as in the charts.
    pub fn envoy(mut self, envoy: bool) -> Self {
        self.envoy = envoy;
        self
    }

    /// A second container in each pod, so restart counts are per container.
    pub fn sidecar(mut self, name: &str) -> Self {
        self.sidecar = Some(name.to_owned());
        self
    }

    /// Creates the release for these admin pods: one Kubernetes pod per admin pod, at
    /// its address.
    pub async fn create(self, pods: &[Pod]) -> Release {
        let addrs: Vec<SocketAddr> = pods.iter().map(Pod::addr).collect();
        self.create_at(&addrs).await
    }

    /// Creates the release with pods at these addresses: the workload (and ReplicaSet),
    /// the headless Service, the pods with their status, the EndpointSlices, and the
    /// Envoy part.
    ///
    /// Pods on several ports are a rollout that moved the admin port: each pod's
    /// container port is its own, the Service's `targetPort` must name it
    /// ([`ReleaseBuilder::named_target_port`]), and the EndpointSlices are one set per
    /// port, as the EndpointSlice controller groups endpoints by their ports.
    pub async fn create_at(self, addrs: &[SocketAddr]) -> Release {
        let port = addrs.first().map_or_else(admin_port, SocketAddr::port);
        assert!(
            addrs.iter().all(|a| a.port() == port) || matches!(self.target, TargetPort::Named(_)),
            "pods on several ports need a named targetPort: {addrs:?}"
        );
        let ns = self.ns;
        let workload_name = self
            .workload_name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.name, self.product));
        let container_port_name = match &self.target {
            TargetPort::Named(name) => name.clone(),
            TargetPort::Number => "grpc".to_owned(),
        };
        let mut release = Release {
            client: ns.client(),
            namespace: ns.name.clone(),
            name: self.name.clone(),
            product: self.product.clone(),
            service: format!("{}-headless", self.name),
            service_uid: String::new(),
            port_name: self.port_name.clone(),
            target: self.target.clone(),
            container_port_name,
            port,
            workload: self.workload,
            workload_name,
            workload_uid: String::new(),
            generation: 1,
            replica_set: None,
            pods: Vec::new(),
            envoy_pod: None,
            sidecar: self.sidecar.clone(),
            next_ordinal: 0,
        };
        release.create_workload(addrs.len()).await;
        release.create_service().await;
        let mut new = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            new.push(release.new_pod(addr));
        }
        release.pods = release.create_pods(new).await;
        release.sync_endpoint_slices().await;
        release.sync_workload_status().await;
        if self.envoy {
            release.create_envoy().await;
        }
        release
    }
}

/// One pod of a release as the rig made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePod {
    /// Its name.
    pub name: String,
    /// Its UID (new when replaced).
    pub uid: String,
    /// The admin pod it points at: `status.podIP` and the admin port.
    pub addr: SocketAddr,
    /// Its Ready condition.
    pub ready: bool,
    /// Restart count per container, in container order.
    pub restarts: Vec<i32>,
    /// The StatefulSet ordinal, if any.
    ordinal: Option<usize>,
}

/// A Helm release's objects in the API, kept up to date as the controllers would.
pub struct Release {
    client: kube::Client,
    namespace: String,
    name: String,
    product: String,
    service: String,
    service_uid: String,
    port_name: String,
    target: TargetPort,
    container_port_name: String,
    port: u16,
    workload: Workload,
    workload_name: String,
    workload_uid: String,
    generation: i64,
    /// `(name, uid, pod-template-hash)` of the ReplicaSet (Deployment only).
    replica_set: Option<(String, String, String)>,
    pods: Vec<ReleasePod>,
    envoy_pod: Option<String>,
    sidecar: Option<String>,
    next_ordinal: usize,
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("product", &self.product)
            .field("pods", &self.pods)
            .finish_non_exhaustive()
    }
}

impl Release {
    /// The release name (`app.kubernetes.io/instance`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The product (`app.kubernetes.io/app`).
    pub fn product(&self) -> &str {
        &self.product
    }

    /// `RELEASE-headless`.
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// The Service's name of the admin port.
    pub fn port_name(&self) -> &str {
        &self.port_name
    }

    /// The port the admin pods listen on (the container port, the `targetPort`); the
    /// first pod's, when they listen on several ([`ReleasePod::addr`] has each one's).
    pub fn admin_port(&self) -> u16 {
        self.port
    }

    /// The Deployment's or StatefulSet's name.
    pub fn workload_name(&self) -> &str {
        &self.workload_name
    }

    /// Its kind.
    pub fn workload(&self) -> Workload {
        self.workload
    }

    /// The workload's `metadata.generation`.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// The label selector of the release's product pods.
    pub fn selector(&self) -> String {
        format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/app={}",
            self.name, self.product
        )
    }

    /// The product pods, in creation order (not Envoy).
    pub fn pods(&self) -> &[ReleasePod] {
        &self.pods
    }

    /// Their names.
    pub fn pod_names(&self) -> Vec<String> {
        self.pods.iter().map(|p| p.name.clone()).collect()
    }

    /// The pod named `name`.
    ///
    /// # Panics
    ///
    /// When there is none.
    pub fn pod(&self, name: &str) -> &ReleasePod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name} in release {}", self.name))
    }

    /// The name of the pod whose IP is `addr`'s.
    pub fn pod_at(&self, addr: SocketAddr) -> &str {
        &self
            .pods
            .iter()
            .find(|p| p.addr == addr)
            .unwrap_or_else(|| panic!("no pod at {addr} in release {}", self.name))
            .name
    }

    /// The Envoy pod's name, if the release has one.
    pub fn envoy_pod(&self) -> Option<&str> {
        self.envoy_pod.as_deref()
    }

    fn pods_api(&self) -> Api<PodObject> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn index(&self, name: &str) -> usize {
        self.pods
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name} in release {}", self.name))
    }

    /// The labels of the product's pod template.
    fn template_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), self.product.clone()),
            ("app.kubernetes.io/instance".to_owned(), self.name.clone()),
            ("app.kubernetes.io/app".to_owned(), self.product.clone()),
        ])
    }

    /// Labels of the release's objects themselves, as Helm sets them.
    fn object_labels(&self, app: &str) -> Value {
        json!({
            "app.kubernetes.io/name": app,
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/app": app,
            "app.kubernetes.io/managed-by": "Helm",
            "helm.sh/chart": format!("{}-1.0.0", self.product),
        })
    }

    /// The containers of a pod whose admin container port is `port`.
    fn containers(&self, port: u16) -> Value {
        let mut containers = vec![json!({
            "name": self.product,
            "image": format!("ghcr.io/scalar-labs/{}:test", self.product),
            "ports": [
                {"name": self.container_port_name, "containerPort": port, "protocol": "TCP"},
                {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            ],
        })];
        if let Some(sidecar) = &self.sidecar {
            containers.push(json!({"name": sidecar, "image": "busybox:test"}));
        }
        Value::Array(containers)
    }

    fn container_names(&self) -> Vec<String> {
        std::iter::once(self.product.clone())
            .chain(self.sidecar.clone())
            .collect()
    }

    async fn create_workload(&mut self, replicas: usize) {
        let labels = self.template_labels();
        let template = json!({
            "metadata": {"labels": labels},
            "spec": {"containers": self.containers(self.port)},
        });
        let metadata =
            json!({"name": self.workload_name, "labels": self.object_labels(&self.product)});
        match self.workload {
            Workload::Deployment => {
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
                let deployment = create(
                    &api,
                    json!({
                        "metadata": metadata,
                        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template},
                    }),
                )
                .await;
                self.workload_uid = uid_of(&deployment);
                self.generation = deployment.metadata.generation.unwrap_or(1);
                // The ReplicaSet the deployment controller would make: named after the
                // template's hash, labelled with it, owned by the Deployment.
                let hash = random_suffix(10);
                let rs_name = format!("{}-{hash}", self.workload_name);
                let mut rs_labels = labels.clone();
                rs_labels.insert("pod-template-hash".into(), hash.clone());
                let mut rs_template = template.clone();
                rs_template["metadata"]["labels"] = json!(rs_labels);
                let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.namespace);
                let rs = create(
                    &rs_api,
                    json!({
                        "metadata": {
                            "name": rs_name,
                            "labels": rs_labels,
                            "annotations": {"deployment.kubernetes.io/revision": "1"},
                            "ownerReferences": [owner("apps/v1", "Deployment", &self.workload_name, &self.workload_uid)],
                        },
                        "spec": {"replicas": replicas, "selector": {"matchLabels": rs_labels}, "template": rs_template},
                    }),
                )
                .await;
                self.replica_set = Some((rs_name, uid_of(&rs), hash));
            }
            Workload::StatefulSet => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
                let sts = create(
                    &api,
                    json!({
                        "metadata": metadata,
                        "spec": {
                            "replicas": replicas,
                            "serviceName": self.service,
                            "selector": {"matchLabels": labels},
                            "template": template,
                        },
                    }),
                )
                .await;
                self.workload_uid = uid_of(&sts);
                self.generation = sts.metadata.generation.unwrap_or(1);
            }
        }
    }

    async fn create_service(&mut self) {
        let target = match &self.target {
            TargetPort::Number => json!(self.port),
            TargetPort::Named(name) => json!(name),
        };
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        let service = create(
            &api,
            json!({
                "metadata": {"name": self.service, "labels": self.object_labels(&self.product)},
                "spec": {
                    "clusterIP": "None",
                    "selector": self.template_labels(),
                    "ports": [
                        {"name": self.port_name, "port": SERVICE_PORT, "targetPort": target, "protocol": "TCP"},
                        {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
                    ],
                },
            }),
        )
        .await;
        self.service_uid = uid_of(&service);
    }

    /// The Envoy of the release: a Deployment, a ReplicaSet, a ClusterIP Service and one
    /// Running pod at an address where nothing listens, labelled
    /// `app.kubernetes.io/app: envoy`.
    async fn create_envoy(&mut self) {
        let name = format!("{}-envoy", self.name);
        let labels = json!({
            "app.kubernetes.io/name": "envoy",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/app": "envoy",
        });
        let containers = json!([{
            "name": "envoy", "image": "envoyproxy/envoy:test",
            "ports": [{"name": "envoy", "containerPort": SERVICE_PORT, "protocol": "TCP"}],
        }]);
        let deployment = create(
            &Api::<Deployment>::namespaced(self.client.clone(), &self.namespace),
            json!({
                "metadata": {"name": name, "labels": self.object_labels("envoy")},
                "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}}},
            }),
        )
        .await;
        let hash = random_suffix(10);
        let mut pod_labels = labels.clone();
        pod_labels["pod-template-hash"] = json!(hash);
        let rs = create(
            &Api::<ReplicaSet>::namespaced(self.client.clone(), &self.namespace),
            json!({
                "metadata": {"name": format!("{name}-{hash}"), "labels": pod_labels,
                             "ownerReferences": [owner("apps/v1", "Deployment", &name, &uid_of(&deployment))]},
                "spec": {"replicas": 1, "selector": {"matchLabels": pod_labels},
                         "template": {"metadata": {"labels": pod_labels}, "spec": {"containers": containers}}},
            }),
        )
        .await;
        create(
            &Api::<Service>::namespaced(self.client.clone(), &self.namespace),
            json!({
                "metadata": {"name": name, "labels": self.object_labels("envoy")},
                "spec": {"selector": labels,
                         "ports": [{"name": "scalardb-cluster", "port": SERVICE_PORT, "targetPort": "envoy"}]},
            }),
        )
        .await;
        let pod_name = format!("{name}-{hash}-{}", random_suffix(5));
        let ip = next_ip();
        let api = self.pods_api();
        create(
            &api,
            json!({
                "metadata": {"name": pod_name, "labels": pod_labels,
                             "ownerReferences": [owner("apps/v1", "ReplicaSet", &format!("{name}-{hash}"), &uid_of(&rs))]},
                "spec": {"nodeName": NODE_NAME, "containers": containers},
            }),
        )
        .await;
        patch_status(
            &api,
            &pod_name,
            pod_status(ip, true, &[("envoy".to_owned(), 0)]),
        )
        .await;
        self.envoy_pod = Some(pod_name);
    }

    /// A new pod's record (not yet created): its name as the controller would make it.
    fn new_pod(&mut self, addr: SocketAddr) -> ReleasePod {
        let (name, ordinal) = match (&self.workload, &self.replica_set) {
            (Workload::Deployment, Some((rs, _, _))) => {
                (format!("{rs}-{}", random_suffix(5)), None)
            }
            _ => {
                let ordinal = self.next_ordinal;
                self.next_ordinal += 1;
                (format!("{}-{ordinal}", self.workload_name), Some(ordinal))
            }
        };
        ReleasePod {
            name,
            uid: String::new(),
            addr,
            ready: true,
            restarts: vec![0; self.container_names().len()],
            ordinal,
        }
    }

    /// The pod object the controller would create for `pod`.
    fn pod_object(&self, pod: &ReleasePod) -> Value {
        let mut labels = self.template_labels();
        let owner_ref = match (&self.workload, &self.replica_set) {
            (Workload::Deployment, Some((rs, uid, hash))) => {
                labels.insert("pod-template-hash".into(), hash.clone());
                owner("apps/v1", "ReplicaSet", rs, uid)
            }
            _ => {
                labels.insert(
                    "statefulset.kubernetes.io/pod-name".into(),
                    pod.name.clone(),
                );
                labels.insert(
                    "apps.kubernetes.io/pod-index".into(),
                    pod.ordinal.unwrap_or_default().to_string(),
                );
                labels.insert(
                    "controller-revision-hash".into(),
                    format!("{}-{}", self.workload_name, "5d4f6b7c8d"),
                );
                owner(
                    "apps/v1",
                    "StatefulSet",
                    &self.workload_name,
                    &self.workload_uid,
                )
            }
        };
        let mut spec =
            json!({"nodeName": NODE_NAME, "containers": self.containers(pod.addr.port())});
        if self.workload == Workload::StatefulSet {
            spec["hostname"] = json!(pod.name);
            spec["subdomain"] = json!(self.service);
        }
        json!({
            "metadata": {"name": pod.name, "labels": labels, "ownerReferences": [owner_ref]},
            "spec": spec,
        })
    }

    fn status_of(&self, pod: &ReleasePod) -> Value {
        let containers: Vec<(String, i32)> = self
            .container_names()
            .into_iter()
            .zip(pod.restarts.iter().copied())
            .collect();
        let ip = match pod.addr.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(ip) => panic!("IPv4 pods only: {ip}"),
        };
        pod_status(ip, pod.ready, &containers)
    }

    /// Creates `pods` and sets their status, concurrently (bounded), returning them
    /// with their UIDs, in the given order.
    async fn create_pods(&self, pods: Vec<ReleasePod>) -> Vec<ReleasePod> {
        let permits = Arc::new(Semaphore::new(API_CONCURRENCY));
        let mut tasks = JoinSet::new();
        for (i, mut pod) in pods.into_iter().enumerate() {
            let api = self.pods_api();
            let object = self.pod_object(&pod);
            let status = self.status_of(&pod);
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire().await.expect("semaphore");
                let created: PodObject = create(&api, object).await;
                pod.uid = uid_of(&created);
                patch_status(&api, &pod.name, status).await;
                (i, pod)
            });
        }
        let mut done: Vec<(usize, ReleasePod)> = tasks.join_all().await;
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, pod)| pod).collect()
    }

    async fn put_status(&self, index: usize) {
        let pod = &self.pods[index];
        patch_status(&self.pods_api(), &pod.name, self.status_of(pod)).await;
    }

    /// Adds one to the restart count of `pod`'s first container, as a kubelet does when
    /// the container restarts (the pod's resourceVersion changes). Returns the count.
    pub async fn bump_restarts(&mut self, pod: &str) -> i32 {
        self.bump_container_restarts(pod, 0).await
    }

    /// Adds one to the restart count of container `container` (by position; the
    /// sidecar is 1) of `pod`. Returns the new count.
    pub async fn bump_container_restarts(&mut self, pod: &str, container: usize) -> i32 {
        let i = self.index(pod);
        self.pods[i].restarts[container] += 1;
        self.put_status(i).await;
        self.pods[i].restarts[container]
    }

    /// Sets `pod`'s Ready condition (and its endpoint's `ready`), as a failing or
    /// recovering readiness probe does.
    pub async fn set_ready(&mut self, pod: &str, ready: bool) {
        let i = self.index(pod);
        self.pods[i].ready = ready;
        self.put_status(i).await;
        self.sync_endpoint_slices().await;
        self.sync_workload_status().await;
    }

    /// Deletes `pod` and creates it again under the same name at the same address (as a
    /// StatefulSet does): same name and IP, new UID. Returns the new UID.
    pub async fn replace_pod(&mut self, pod: &str) -> String {
        let i = self.index(pod);
        self.delete_pod_object(pod).await;
        let mut fresh = self.pods[i].clone();
        fresh.ready = true;
        fresh.restarts.iter_mut().for_each(|r| *r = 0);
        let fresh = self.create_pods(vec![fresh]).await.remove(0);
        self.pods[i] = fresh;
        self.sync_endpoint_slices().await;
        self.sync_workload_status().await;
        self.pods[i].uid.clone()
    }

    /// Adds a Running, ready pod at `addr`, as the ReplicaSet controller does after a
    /// pod was lost or a scale-up; returns its name. The workload's spec is left alone
    /// (its generation stays), so a test sees only the pod change; follow with
    /// [`Release::scale`] for a scale-up.
    pub async fn add_pod(&mut self, addr: SocketAddr) -> String {
        assert!(
            addr.port() == self.port || matches!(self.target, TargetPort::Named(_)),
            "the release's pods listen on {} (a named targetPort allows others)",
            self.port
        );
        let pod = self.new_pod(addr);
        let pod = self.create_pods(vec![pod]).await.remove(0);
        let name = pod.name.clone();
        self.pods.push(pod);
        self.sync_endpoint_slices().await;
        self.sync_workload_status().await;
        name
    }

    /// Removes `pod`, as an eviction or a node failure does before a replacement is
    /// made. The workload's spec is left alone (its generation stays); follow with
    /// [`Release::scale`] for a scale-down.
    pub async fn remove_pod(&mut self, pod: &str) {
        let i = self.index(pod);
        self.delete_pod_object(pod).await;
        self.pods.remove(i);
        self.sync_endpoint_slices().await;
        self.sync_workload_status().await;
    }

    /// Changes the workload's spec (an annotation of its pod template), as a `helm
    /// upgrade` does: its `metadata.generation` goes up. Returns the new generation.
    pub async fn bump_generation(&mut self) -> i64 {
        let patch = Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
            "scalar-admin-rig/touched": now(),
        }}}}}));
        let generation = self.patch_workload(&patch).await;
        self.generation = generation.expect("generation");
        self.sync_workload_status().await;
        self.generation
    }

    /// Patches the Deployment or StatefulSet; returns its generation after.
    async fn patch_workload(&self, patch: &Patch<serde_json::Value>) -> Option<i64> {
        let params = PatchParams::default();
        let name = &self.workload_name;
        match self.workload {
            Workload::Deployment => {
                Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
                    .patch(name, &params, patch)
                    .await
                    .expect("patch deployment")
                    .metadata
                    .generation
            }
            Workload::StatefulSet => {
                Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace)
                    .patch(name, &params, patch)
                    .await
                    .expect("patch statefulset")
                    .metadata
                    .generation
            }
        }
    }

    /// Deletes a pod object at once. Pods bound to a node are deleted gracefully: the
    /// API server only marks them until the kubelet confirms, and there is none, so the
    /// rig deletes with grace period 0, which removes the object immediately.
    async fn delete_pod_object(&self, name: &str) {
        let api = self.pods_api();
        api.delete(
            name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("delete pod {name}: {e}"));
        assert!(
            api.get_opt(name).await.expect("get pod").is_none(),
            "pod {name} still there after a delete with grace period 0"
        );
    }

    /// Sets the workload's (and ReplicaSet's) `spec.replicas` to the pod count, as
    /// `kubectl scale` does: the generation goes up. Returns the new generation.
    pub async fn scale(&mut self) -> i64 {
        let patch = Patch::Merge(json!({"spec": {"replicas": self.pods.len()}}));
        let generation = self.patch_workload(&patch).await;
        self.generation = generation.expect("generation");
        if let Some((rs, _, _)) = &self.replica_set {
            Api::<ReplicaSet>::namespaced(self.client.clone(), &self.namespace)
                .patch(rs, &PatchParams::default(), &patch)
                .await
                .expect("scale replicaset");
        }
        self.sync_workload_status().await;
        self.generation
    }

    /// Writes the workload's (and ReplicaSet's) status from the pods, as their
    /// controllers do.
    async fn sync_workload_status(&self) {
        let replicas = self.pods.len();
        let ready = self.pods.iter().filter(|p| p.ready).count();
        let (deployments, sets) = (
            Api::<Deployment>::namespaced(self.client.clone(), &self.namespace),
            Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace),
        );
        match self.workload {
            Workload::Deployment => {
                patch_status(
                    &deployments,
                    &self.workload_name,
                    json!({
                        "observedGeneration": self.generation,
                        "replicas": replicas, "updatedReplicas": replicas,
                        "readyReplicas": ready, "availableReplicas": ready,
                        "unavailableReplicas": replicas - ready,
                    }),
                )
                .await;
                if let Some((rs, _, _)) = &self.replica_set {
                    patch_status(
                        &Api::<ReplicaSet>::namespaced(self.client.clone(), &self.namespace),
                        rs,
                        json!({"observedGeneration": 1, "replicas": replicas,
                               "fullyLabeledReplicas": replicas,
                               "readyReplicas": ready, "availableReplicas": ready}),
                    )
                    .await;
                }
            }
            Workload::StatefulSet => {
                patch_status(
                    &sets,
                    &self.workload_name,
                    json!({
                        "observedGeneration": self.generation,
                        "replicas": replicas, "currentReplicas": replicas, "updatedReplicas": replicas,
                        "readyReplicas": ready, "availableReplicas": ready,
                    }),
                )
                .await;
            }
        }
    }

    /// The Service's EndpointSlices, as the API serves them.
    pub async fn endpoint_slices(&self) -> Vec<EndpointSlice> {
        Api::<EndpointSlice>::namespaced(self.client.clone(), &self.namespace)
            .list(
                &ListParams::default()
                    .labels(&format!("kubernetes.io/service-name={}", self.service)),
            )
            .await
            .expect("list endpointslices")
            .items
    }

    /// Writes the Service's EndpointSlices from the pods, as the EndpointSlice
    /// controller does: every pod with an IP, ready or not (`conditions.ready`), grouped
    /// by admin port (each slice has one set of ports), sorted by name, at most
    /// [`MAX_ENDPOINTS_PER_SLICE`] per slice, existing slices updated in place, new ones
    /// created with `generateName`, surplus ones deleted.
    pub async fn sync_endpoint_slices(&self) {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut existing = self.endpoint_slices().await;
        existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut by_port: BTreeMap<u16, Vec<&ReleasePod>> = BTreeMap::new();
        for pod in &self.pods {
            by_port.entry(pod.addr.port()).or_default().push(pod);
        }
        let mut chunks: Vec<(u16, &[&ReleasePod])> = Vec::new();
        for (port, pods) in &mut by_port {
            pods.sort_by(|a, b| a.name.cmp(&b.name));
            chunks.extend(pods.chunks(MAX_ENDPOINTS_PER_SLICE).map(|c| (*port, c)));
        }
        let mut existing = existing.into_iter();
        let mut kept = BTreeSet::new();
        for (port, chunk) in chunks {
            let endpoints: Vec<Value> = chunk
                .iter()
                .map(|pod| {
                    json!({
                        "addresses": [pod.addr.ip().to_string()],
                        "conditions": {"ready": pod.ready, "serving": pod.ready, "terminating": false},
                        "nodeName": NODE_NAME,
                        "targetRef": {"kind": "Pod", "namespace": self.namespace, "name": pod.name, "uid": pod.uid},
                    })
                })
                .collect();
            let mut labels = self.object_labels(&self.product);
            labels["kubernetes.io/service-name"] = json!(self.service);
            labels["endpointslice.kubernetes.io/managed-by"] =
                json!("endpointslice-controller.k8s.io");
            let body = json!({
                "metadata": {
                    "labels": labels,
                    "ownerReferences": [owner("v1", "Service", &self.service, &self.service_uid)],
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [
                    {"name": self.port_name, "port": port, "protocol": "TCP"},
                    {"name": "metrics", "port": METRICS_PORT, "protocol": "TCP"},
                ],
            });
            match existing.next() {
                Some(slice) => {
                    let name = slice.metadata.name.clone().expect("slice name");
                    let mut body = body;
                    body["metadata"]["name"] = json!(name);
                    body["metadata"]["resourceVersion"] = json!(slice.metadata.resource_version);
                    let typed: EndpointSlice = serde_json::from_value(body).expect("slice");
                    api.replace(&name, &PostParams::default(), &typed)
                        .await
                        .unwrap_or_else(|e| panic!("update endpointslice {name}: {e}"));
                    kept.insert(name);
                }
                None => {
                    let mut body = body;
                    body["metadata"]["generateName"] = json!(format!("{}-", self.service));
                    let slice = create(&api, body).await;
                    kept.insert(slice.metadata.name.expect("slice name"));
                }
            }
        }
        for surplus in existing {
            let name = surplus.metadata.name.expect("slice name");
            api.delete(&name, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| panic!("delete endpointslice {name}: {e}"));
        }
    }
}

/// An owner reference from a controller.
fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
        "controller": true, "blockOwnerDeletion": true,
    })
}

/// A Running pod's status as a kubelet reports it.
fn pod_status(ip: Ipv4Addr, ready: bool, containers: &[(String, i32)]) -> Value {
    let now = now();
    let ready_s = if ready { "True" } else { "False" };
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(name, restarts)| {
            json!({
                "name": name, "image": format!("{name}:test"), "imageID": "",
                "ready": ready, "started": true, "restartCount": restarts,
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    json!({
        "phase": "Running",
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "startTime": now,
        "qosClass": "BestEffort",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": ready_s, "lastTransitionTime": now},
            {"type": "Ready", "status": ready_s, "lastTransitionTime": now},
        ],
        "containerStatuses": statuses,
    })
}
