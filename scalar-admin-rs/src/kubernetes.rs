//! Pods found through the Kubernetes API, as Scalar Admin for Kubernetes finds them:
//! by Helm release (or a label selector, or a Deployment), the admin port from the
//! release's headless Service, the endpoints from its EndpointSlices. Beside the pods, a
//! [`Snapshot`] of what the backup guide has the operator compare before and after the
//! pause: pod names, UIDs, restart counts, resource versions, readiness, and the
//! owning Deployments' and StatefulSets' generations.
//!
//! Why the API and not DNS: an SRV answer leaves out pods that are not ready, can lag
//! behind pods added or removed, cannot show restart counts or a pod replaced under the
//! same address, and stops at about 850 pods per name. EndpointSlices hold every
//! endpoint, 100 to a slice, with no message limit.
//!
//! Permissions: `get`/`list` on pods, services, `endpointslices.discovery.k8s.io`,
//! `deployments.apps` and `statefulsets.apps` in the namespace
//! (`scalar-admin-cli/deploy/rbac.yaml`). A missing one fails before any pod is
//! contacted, naming the verb, the resource and the namespace. Only the kinds that own
//! the pods are asked for; with [`KubeGroup::pod_ips`], only pods, services and
//! deployments, what the Role of Scalar Admin for Kubernetes's chart grants.
//!
//! Memory: every list is read in pages (`PAGE` objects each), and of a pod only the
//! fields this module reads are kept (`PodView`), so a release of thousands of pods
//! costs a few hundred bytes per pod beyond one page of JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ListMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::{Deserialize, Deserializer};

use crate::error::{DiscoveryError, DiscoveryErrorKind};
use crate::failure::Error;
use crate::target::Target;

/// The label Helm charts put the release name in.
pub const RELEASE_LABEL: &str = "app.kubernetes.io/instance";
/// The label Scalar's charts put the product in.
pub const APP_LABEL: &str = "app.kubernetes.io/app";
/// The products whose pods answer the admin interface, as `app.kubernetes.io/app` names
/// them; a release's other pods (Envoy) are skipped.
pub const PRODUCTS: [&str; 4] = ["scalardb-cluster", "scalardb", "ledger", "auditor"];
/// The headless Service port names of the admin interface, in the order they are tried.
pub const ADMIN_PORT_NAMES: [&str; 4] = [
    "scalardb-cluster",
    "scalardb",
    "scalardl-admin",
    "scalardl-auditor-admin",
];

/// How to reach the Kubernetes API: a kubeconfig (the given file, else `KUBECONFIG`,
/// else `~/.kube/config`) or, inside a pod, its service account.
///
/// ```
/// use std::time::Duration;
/// use scalar_admin::kubernetes::KubeConfig;
///
/// let config = KubeConfig::default().context("prod").timeout(Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    timeout: Duration,
    client: ClientCache,
}

impl Default for KubeConfig {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            context: None,
            timeout: Duration::from_secs(10),
            client: ClientCache::default(),
        }
    }
}

/// The client, built once for a configuration and its clones: building it reads the
/// kubeconfig and may run a credential plugin, which is no work to repeat for each
/// group and each snapshot of a run.
#[derive(Clone, Default)]
struct ClientCache(std::sync::Arc<tokio::sync::OnceCell<kube::Client>>);

impl PartialEq for ClientCache {
    /// A cache is no part of what a configuration says.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ClientCache {}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.initialized() {
            "built"
        } else {
            "unbuilt"
        })
    }
}

impl KubeConfig {
    /// Reads this kubeconfig file. Unset by default: `KUBECONFIG`, `~/.kube/config`, or
    /// the in-cluster service account, as kubectl looks.
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self.client = ClientCache::default();
        self
    }

    /// Uses this kubeconfig context. The current context by default.
    pub fn context(mut self, name: impl Into<String>) -> Self {
        self.context = Some(name.into());
        self.client = ClientCache::default();
        self
    }

    /// Sets the time limit of every API request, and of a whole discovery. 10 seconds by
    /// default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.client = ClientCache::default();
        self
    }
}

/// Which pods of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Selector {
    /// The pods of a Helm release (`app.kubernetes.io/instance`), of the products that
    /// answer the admin interface (`app.kubernetes.io/app`); others, such as Envoy, are
    /// skipped.
    Release(String),
    /// The pods matching a label selector, as kubectl's `-l` takes it.
    Labels(String),
    /// The pods of a Deployment, by its selector.
    Deployment(String),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Release(name) => write!(f, "release {name}"),
            Selector::Labels(labels) => write!(f, "pods {labels}"),
            Selector::Deployment(name) => write!(f, "deployment {name}"),
        }
    }
}

/// One product's pods in Kubernetes: the API to ask, the namespace, the selector.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct KubeGroup {
    #[cfg_attr(feature = "serde", serde(skip))]
    config: KubeConfig,
    namespace: Option<String>,
    selector: Selector,
    #[cfg_attr(feature = "serde", serde(skip))]
    pod_ips: bool,
    #[cfg_attr(feature = "serde", serde(skip))]
    admin_port: Option<u16>,
}

impl fmt::Display for KubeGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} in {ns}", self.selector),
            None => write!(f, "{}", self.selector),
        }
    }
}

impl KubeGroup {
    /// How the API is reached.
    pub(crate) fn config(&self) -> &KubeConfig {
        &self.config
    }

    /// The pods `selector` picks, in the namespace of the kubeconfig's context (or the
    /// service account's), asked through `config`.
    pub fn new(config: KubeConfig, selector: Selector) -> Self {
        Self {
            config,
            namespace: None,
            selector,
            pod_ips: false,
            admin_port: None,
        }
    }

    /// Calls every pod at this port on its address from its status (`podIP`), and looks
    /// up no Service or EndpointSlice: Scalar Admin for Kubernetes' `--admin-port`, for
    /// pods that no Service with a named admin port selects. Unset by default.
    pub fn admin_port(mut self, port: u16) -> Self {
        self.admin_port = Some(port);
        self
    }

    /// Takes each pod's address from its status (`podIP`) and the port from the
    /// Service's `targetPort`, as Scalar Admin for Kubernetes does, instead of from the
    /// EndpointSlices, and tolerates a Role that grants no StatefulSets: for the Roles of
    /// that tool's Helm chart (get/list on pods, services and deployments only). Off by
    /// default.
    pub fn pod_ips(mut self, pod_ips: bool) -> Self {
        self.pod_ips = pod_ips;
        self
    }

    /// Looks in this namespace instead.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The selector.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Finds the pods now, with a snapshot of their state. Fails, before any pod is
    /// contacted, when the API cannot be reached or refuses (naming the verb, resource
    /// and namespace), when no pod or no admin port is found, or when the API's answer
    /// does not add up (a pod of the release without a product label, pods of two
    /// products in one release).
    pub async fn discover(&self) -> Result<Found, Error> {
        let what = self.to_string();
        match tokio::time::timeout(self.config.timeout, discover(self)).await {
            Ok(found) => Ok(found?),
            Err(_) => Err(DiscoveryError::new(
                &what,
                DiscoveryErrorKind::ApiTimedOut(self.config.timeout),
            )
            .into()),
        }
    }

    /// [`discover`](Self::discover), then refuses unless every selected pod is Running
    /// and ready (and not terminating): the backup guide's first step. The error names
    /// the pods. What a Pause decides from; Unpause and CheckPaused use `discover`, and
    /// reach every pod that has an address, ready or not.
    pub async fn resolve(&self) -> Result<Found, Error> {
        let found = self.discover().await?;
        let unready: Vec<String> = found
            .snapshot
            .pods
            .iter()
            .filter(|p| !p.is_serving())
            .map(|p| format!("{} ({})", p.name, p.condition()))
            .collect();
        if !unready.is_empty() {
            return Err(DiscoveryError::new(
                &self.to_string(),
                DiscoveryErrorKind::NotReady(unready),
            )
            .into());
        }
        Ok(found)
    }
}

/// What a discovery found: the pods to call, and the snapshot to compare later.
#[derive(Debug, Clone)]
pub struct Found {
    targets: Vec<Target>,
    snapshot: Snapshot,
}

impl Found {
    /// The admin endpoints of the pods that are serving.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The pods' state.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The parts.
    pub fn into_parts(self) -> (Vec<Target>, Snapshot) {
        (self.targets, self.snapshot)
    }
}

/// One pod as the API showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PodRecord {
    name: String,
    uid: String,
    resource_version: String,
    phase: String,
    ready: bool,
    /// Restarts per container, by container name.
    restarts: BTreeMap<String, i32>,
    ip: Option<String>,
    /// Being deleted (in its grace period): it may still serve, and its replacement
    /// will not be the same pod.
    terminating: bool,
}

impl PodRecord {
    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its UID: a pod replaced under the same name has another.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The sum of its containers' restart counts.
    pub fn restarts(&self) -> i64 {
        self.restarts.values().map(|&n| i64::from(n)).sum()
    }

    /// Whether it is Running and ready, and not terminating.
    pub fn is_serving(&self) -> bool {
        self.phase == "Running" && self.ready && !self.terminating
    }

    fn condition(&self) -> String {
        match (self.phase.as_str(), self.ready) {
            _ if self.terminating => "terminating".to_owned(),
            ("Running", false) => "Running, not ready".to_owned(),
            (phase, _) => phase.to_owned(),
        }
    }
}

/// A Deployment or StatefulSet the pods belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OwnerRecord {
    kind: &'static str,
    name: String,
    generation: i64,
}

/// The pods and their owners at one instant, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Snapshot {
    pods: Vec<PodRecord>,
    owners: Vec<OwnerRecord>,
}

impl Snapshot {
    /// The pods.
    pub fn pods(&self) -> &[PodRecord] {
        &self.pods
    }

    /// What changed from `self` to `later`, each change naming the pod or owner.
    pub fn changes(&self, later: &Snapshot) -> Vec<Change> {
        let mut changes = Vec::new();
        let before: BTreeMap<&str, &PodRecord> =
            self.pods.iter().map(|p| (p.name.as_str(), p)).collect();
        let after: BTreeMap<&str, &PodRecord> =
            later.pods.iter().map(|p| (p.name.as_str(), p)).collect();
        for (name, was) in &before {
            let Some(now) = after.get(name) else {
                changes.push(Change::Removed((*name).to_owned()));
                continue;
            };
            let pod = (*name).to_owned();
            if was.uid != now.uid {
                changes.push(Change::Replaced {
                    pod,
                    uid: (was.uid.clone(), now.uid.clone()),
                });
                continue;
            }
            if was.restarts() != now.restarts() {
                changes.push(Change::Restarted {
                    pod: pod.clone(),
                    restarts: (was.restarts(), now.restarts()),
                });
            }
            if was.is_serving() && !now.is_serving() {
                changes.push(Change::NotServing {
                    pod: pod.clone(),
                    now: now.condition(),
                });
            }
            if was.resource_version != now.resource_version {
                changes.push(Change::Updated {
                    pod,
                    resource_version: (was.resource_version.clone(), now.resource_version.clone()),
                });
            }
        }
        for name in after.keys().filter(|n| !before.contains_key(*n)) {
            changes.push(Change::Added((*name).to_owned()));
        }
        for was in &self.owners {
            match later
                .owners
                .iter()
                .find(|o| o.kind == was.kind && o.name == was.name)
            {
                None => changes.push(Change::OwnerRemoved {
                    owner: format!("{}/{}", was.kind, was.name),
                }),
                Some(now) if now.generation != was.generation => {
                    changes.push(Change::OwnerUpdated {
                        owner: format!("{}/{}", was.kind, was.name),
                        generation: (was.generation, now.generation),
                    })
                }
                Some(_) => {}
            }
        }
        changes
    }
}

/// One difference between two snapshots. `Display` names the pod and what changed:
/// `scalardb-cluster-7d9f-x2: restarts 0 -> 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A pod appeared.
    Added(String),
    /// A pod went away.
    Removed(String),
    /// A pod was replaced under the same name: another UID.
    Replaced {
        /// The pod.
        pod: String,
        /// Its UID before and after.
        uid: (String, String),
    },
    /// A pod's containers restarted.
    Restarted {
        /// The pod.
        pod: String,
        /// Its restart count before and after (all containers).
        restarts: (i64, i64),
    },
    /// A pod stopped being Running and ready.
    NotServing {
        /// The pod.
        pod: String,
        /// What it is now.
        now: String,
    },
    /// A pod's object changed (its resource version), as Scalar Admin for Kubernetes
    /// compares it.
    Updated {
        /// The pod.
        pod: String,
        /// Its resource version before and after.
        resource_version: (String, String),
    },
    /// The Deployment's or StatefulSet's spec changed (its generation): a rollout.
    OwnerUpdated {
        /// `Deployment/<name>` or `StatefulSet/<name>`.
        owner: String,
        /// Its generation before and after.
        generation: (i64, i64),
    },
    /// The Deployment or StatefulSet went away.
    OwnerRemoved {
        /// `Deployment/<name>` or `StatefulSet/<name>`.
        owner: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added(pod) => write!(f, "{pod}: added"),
            Change::Removed(pod) => write!(f, "{pod}: removed"),
            Change::Replaced { pod, uid } => {
                write!(f, "{pod}: replaced (uid {} -> {})", uid.0, uid.1)
            }
            Change::Restarted { pod, restarts } => {
                write!(f, "{pod}: restarts {} -> {}", restarts.0, restarts.1)
            }
            Change::NotServing { pod, now } => write!(f, "{pod}: now {now}"),
            Change::Updated {
                pod,
                resource_version,
            } => write!(
                f,
                "{pod}: resource version {} -> {}",
                resource_version.0, resource_version.1
            ),
            Change::OwnerUpdated { owner, generation } => {
                write!(
                    f,
                    "{owner}: generation {} -> {}",
                    generation.0, generation.1
                )
            }
            Change::OwnerRemoved { owner } => write!(f, "{owner}: removed"),
        }
    }
}

/// An API call that failed, as a discovery error naming the verb, resource and
/// namespace, and what the API server said (its status code and message) or why the
/// call did not get there, on one line.
fn api_error(
    group: &KubeGroup,
    verb: &str,
    resource: &str,
    ns: &str,
    e: kube::Error,
) -> DiscoveryError {
    let what = group.to_string();
    let (verb, resource, namespace) = (verb.to_owned(), resource.to_owned(), ns.to_owned());
    let kind = match &e {
        kube::Error::Api(status) if status.is_forbidden() => DiscoveryErrorKind::Forbidden {
            verb,
            resource,
            namespace,
        },
        kube::Error::Api(status) => DiscoveryErrorKind::Api {
            verb,
            resource,
            namespace,
            cause: crate::error::sanitize(
                &format!("{} {}: {}", status.code, status.reason, status.message),
                300,
            ),
        },
        other => DiscoveryErrorKind::Api {
            verb,
            resource,
            namespace,
            cause: crate::error::sanitize(&other.to_string(), 300),
        },
    };
    DiscoveryError::new(&what, kind)
}

/// Whether a failed call was refused for want of permission.
fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.is_forbidden())
}

/// The group's client, built on first use and shared by the clones of its
/// configuration.
async fn client(group: &KubeGroup) -> Result<kube::Client, DiscoveryError> {
    group.config.client_for(&group.to_string()).await
}

impl KubeConfig {
    /// The Kubernetes client this configuration makes (built once, and shared by its
    /// clones), for a caller's own requests beside the pods' discovery: a journal of the
    /// windows kept in the cluster, events. Its requests have this configuration's time
    /// limit and name this tool in their User-Agent.
    pub async fn client(&self) -> Result<kube::Client, crate::Error> {
        Ok(self.client_for("the Kubernetes API").await?)
    }

    async fn client_for(&self, what: &str) -> Result<kube::Client, DiscoveryError> {
        self.client
            .0
            .get_or_try_init(|| build_client(self, what))
            .await
            .cloned()
    }
}

async fn build_client(config: &KubeConfig, what: &str) -> Result<kube::Client, DiscoveryError> {
    let fail = |e: Box<dyn std::error::Error + Send + Sync>| {
        let cause = crate::error::sanitize(&e.to_string(), 300);
        DiscoveryError::new(what, DiscoveryErrorKind::KubeConfig(cause))
    };
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut kube_config = match (&config.kubeconfig, &config.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path).map_err(|e| fail(e.into()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| fail(e.into()))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| fail(e.into()))?,
        (None, None) => kube::Config::infer().await.map_err(|e| fail(e.into()))?,
    };
    kube_config.connect_timeout = Some(config.timeout);
    kube_config.read_timeout = Some(config.timeout);
    kube_config.write_timeout = Some(config.timeout);
    // The API server's audit log and its rate limits by client name this tool.
    kube_config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("scalar-admin/", env!("CARGO_PKG_VERSION"))),
    ));
    // A credential plugin never talks to whoever is on this process's stdin (a
    // guardian's link, a script's pipe): it runs non-interactive, its stdin a pipe.
    if let Some(exec) = kube_config.auth_info.exec.as_mut() {
        exec.interactive_mode = Some(kube::config::ExecInteractiveMode::Never);
    }
    // Building the client runs that plugin, blocking: off the runtime, so that the
    // discovery's time limit still holds (a plugin that hangs is left behind).
    tokio::task::spawn_blocking(move || kube::Client::try_from(kube_config))
        .await
        .map_err(|e| fail(e.into()))?
        .map_err(|e| fail(e.into()))
}

/// The selector of a Deployment, in label-selector syntax.
fn selector_string(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default().join(",");
        parts.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            _ => format!("!{}", expr.key),
        });
    }
    parts.join(",")
}

/// Whether a Service's selector (labels that must all match) selects `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether a workload's `LabelSelector` (`matchLabels` and `matchExpressions`) selects
/// `labels`. An empty selector selects nothing here: a workload that selects every pod
/// is not one of the release's.
fn label_selector_selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector.match_labels.iter().flatten();
    let by_expressions = selector.match_expressions.iter().flatten();
    if by_labels.clone().next().is_none() && by_expressions.clone().next().is_none() {
        return false;
    }
    by_labels.into_iter().all(|(k, v)| labels.get(k) == Some(v))
        && by_expressions.into_iter().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

async fn discover(group: &KubeGroup) -> Result<Found, DiscoveryError> {
    let what = group.to_string();
    let fail = |kind| DiscoveryError::new(&what, kind);
    let client = client(group).await?;
    let ns = group
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let labels = match &group.selector {
        Selector::Release(release) => format!("{RELEASE_LABEL}={release}"),
        Selector::Labels(labels) => labels.clone(),
        Selector::Deployment(name) => {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let deployment = deployments
                .get(name)
                .await
                .map_err(|e| api_error(group, "get", "deployments.apps", &ns, e))?;
            let selector = deployment.spec.map(|s| s.selector).unwrap_or_default();
            selector_string(&selector)
        }
    };
    let mut pods: Vec<PodView> =
        list_all::<Pod, _>(&client, &ns, ListParams::default().labels(&labels))
            .await
            .map_err(|e| api_error(group, "list", "pods", &ns, e))?;
    if let Selector::Release(release) = &group.selector {
        let mut products = BTreeSet::new();
        let mut kept = Vec::new();
        for pod in pods {
            let name = pod.metadata.name.clone();
            let app = pod.metadata.labels.get(APP_LABEL).cloned();
            match app {
                None => {
                    return Err(fail(DiscoveryErrorKind::Inconsistent(format!(
                        "pod {name} of release {release} has no {APP_LABEL} label"
                    ))));
                }
                Some(app) if PRODUCTS.contains(&app.as_str()) => {
                    products.insert(app);
                    kept.push(pod);
                }
                // Envoy and the chart's other pods do not answer the admin interface.
                Some(_) => {}
            }
        }
        if products.len() > 1 {
            let products: Vec<String> = products.into_iter().collect();
            return Err(fail(DiscoveryErrorKind::Inconsistent(format!(
                "release {release} has pods of several products: {}",
                products.join(", ")
            ))));
        }
        pods = kept;
    }
    // Pods that ended (evicted, completed) serve nothing and never come back; a pod in
    // its grace period still may, and stays (not ready: a pause refuses it).
    pods.retain(|p| !matches!(p.status.phase.as_deref(), Some("Failed" | "Succeeded")));
    if pods.is_empty() {
        return Err(fail(DiscoveryErrorKind::NoPods(format!(
            "no pod in namespace {ns} matches {labels}"
        ))));
    }
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if let Some(port) = group.admin_port {
        return at_port(group, &client, &ns, &pods, port).await;
    }

    let (service, port_name) = admin_service(group, &client, &ns, &pods).await?;
    let service_name = service.metadata.name.clone().unwrap_or_default();
    let endpoints = if group.pod_ips {
        Endpoints::default()
    } else {
        let selector = format!("kubernetes.io/service-name={service_name}");
        let slices: Vec<EndpointSlice> =
            list_all::<EndpointSlice, _>(&client, &ns, ListParams::default().labels(&selector))
                .await
                .map_err(|e| api_error(group, "list", "endpointslices.discovery.k8s.io", &ns, e))?;
        Endpoints::from_slices(&slices, &port_name)
    };

    let target_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(port_name.as_str()))
        })
        .map(|p| (p.port, p.target_port.clone()));
    let mut targets = Vec::with_capacity(pods.len());
    let mut states = Vec::with_capacity(pods.len());
    for pod in &pods {
        let state = pod_state(pod);
        let pod_ips = pod_ips(pod);
        let endpoint = endpoints.of(&state.name, &state.uid, &pod_ips);
        if endpoint.is_none() && state.is_serving() && !group.pod_ips {
            return Err(fail(DiscoveryErrorKind::Inconsistent(format!(
                "pod {} is ready, but no EndpointSlice of service {service_name} lists it at its address",
                state.name
            ))));
        }
        // Unpause and CheckPaused reach every pod that has an address, ready or not.
        // A pod no slice lists: its own container port, else a port some slice gives.
        let address = endpoint.or_else(|| pod_ips.first().map(|&ip| (ip, None)));
        if let Some((ip, port)) = address {
            let port = port
                .or_else(|| resolve_port(pod, target_port.as_ref()))
                .or(endpoints.port);
            let Some(port) = port else {
                return Err(fail(DiscoveryErrorKind::Inconsistent(format!(
                    "pod {} has no container port for service port {port_name} of {service_name}",
                    state.name
                ))));
            };
            targets.push(Target::from_kubernetes(&state.name, ip, port));
        }
        states.push(state);
    }
    let owners = owners(group, &client, &ns, &pods).await?;
    Ok(Found {
        targets,
        snapshot: Snapshot {
            pods: states,
            owners,
        },
    })
}

/// The pods, each at `port` on its first address: [`KubeGroup::admin_port`].
async fn at_port(
    group: &KubeGroup,
    client: &kube::Client,
    ns: &str,
    pods: &[PodView],
    port: u16,
) -> Result<Found, DiscoveryError> {
    let mut targets = Vec::with_capacity(pods.len());
    let mut states = Vec::with_capacity(pods.len());
    for pod in pods {
        let state = pod_state(pod);
        // Unpause and CheckPaused reach every pod that has an address, ready or not.
        if let Some(&ip) = pod_ips(pod).first() {
            targets.push(Target::from_kubernetes(&state.name, ip, port));
        }
        states.push(state);
    }
    let owners = owners(group, client, ns, pods).await?;
    Ok(Found {
        targets,
        snapshot: Snapshot {
            pods: states,
            owners,
        },
    })
}

/// The admin endpoints the EndpointSlices list, by pod name: every endpoint of the
/// Service, ready or not, with the pod UID it names and the admin port of its own slice
/// (slices may map the port name to different numbers during a rollout).
#[derive(Debug, Default)]
struct Endpoints {
    by_pod: BTreeMap<String, Vec<Endpoint>>,
    /// An admin port some slice gives, for a pod no slice lists and whose own spec does
    /// not name it.
    port: Option<u16>,
}

/// One endpoint: the pod UID it names, its address, and its slice's admin port.
#[derive(Debug)]
struct Endpoint {
    uid: String,
    ip: IpAddr,
    port: Option<u16>,
}

impl Endpoints {
    fn from_slices(slices: &[EndpointSlice], port_name: &str) -> Self {
        let mut endpoints = Self::default();
        for slice in slices {
            let port = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(port_name))
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok());
            endpoints.port = endpoints.port.or(port);
            for endpoint in &slice.endpoints {
                let Some(target) = endpoint
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                else {
                    continue;
                };
                let (Some(name), Some(uid)) = (target.name.clone(), target.uid.clone()) else {
                    continue;
                };
                for ip in endpoint.addresses.iter().filter_map(|a| a.parse().ok()) {
                    endpoints
                        .by_pod
                        .entry(name.clone())
                        .or_default()
                        .push(Endpoint {
                            uid: uid.clone(),
                            ip,
                            port,
                        });
                }
            }
        }
        endpoints
    }

    /// The endpoint of pod `name` with this UID at one of its addresses (the first of
    /// `pod_ips` that a slice lists: the pod's primary family first). A stale slice (an
    /// old UID or address after the pod was recreated) does not count.
    fn of(&self, name: &str, uid: &str, pod_ips: &[IpAddr]) -> Option<(IpAddr, Option<u16>)> {
        let listed = self.by_pod.get(name)?;
        pod_ips.iter().find_map(|ip| {
            listed
                .iter()
                .find(|e| e.uid == uid && e.ip == *ip)
                .map(|e| (e.ip, e.port))
        })
    }
}

/// The pod's addresses from its status, primary first.
fn pod_ips(pod: &PodView) -> Vec<IpAddr> {
    let status = &pod.status;
    let mut ips: Vec<IpAddr> = status
        .pod_ip
        .iter()
        .chain(status.pod_ips.iter().map(|p| &p.ip))
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.dedup();
    ips
}

/// The headless Service that selects the pods and has an admin port, and that port's
/// name.
async fn admin_service(
    group: &KubeGroup,
    client: &kube::Client,
    ns: &str,
    pods: &[PodView],
) -> Result<(Service, String), DiscoveryError> {
    let services: Vec<Service> = list_all::<Service, _>(client, ns, ListParams::default())
        .await
        .map_err(|e| api_error(group, "list", "services", ns, e))?;
    let mut candidates: Vec<(Service, String)> = services
        .into_iter()
        .filter_map(|svc| {
            let spec = svc.spec.as_ref()?;
            if spec.cluster_ip.as_deref() != Some("None") {
                return None;
            }
            let selector = spec.selector.as_ref()?;
            if !pods.iter().all(|p| selects(selector, &p.metadata.labels)) {
                return None;
            }
            let names: Vec<&str> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.name.as_deref())
                .collect();
            let port = ADMIN_PORT_NAMES.iter().find(|n| names.contains(n))?;
            Some((svc.clone(), (*port).to_owned()))
        })
        .collect();
    // Scalar's charts name it `<release>-headless`.
    candidates.sort_by_key(|(svc, _)| {
        !svc.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.ends_with("-headless"))
    });
    candidates.into_iter().next().ok_or_else(|| {
        DiscoveryError::new(
            &group.to_string(),
            DiscoveryErrorKind::Inconsistent(format!(
                "no headless service in {ns} selects the pods with a port named {}",
                ADMIN_PORT_NAMES.join(", ")
            )),
        )
    })
}

/// A Service's target port on one pod: the number, or the pod's container port of that
/// name.
fn resolve_port(pod: &PodView, port: Option<&(i32, Option<IntOrString>)>) -> Option<u16> {
    let (service_port, target) = port?;
    let number = match target {
        None => *service_port,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(name)) => {
            pod.spec
                .containers
                .iter()
                .flat_map(|c| c.ports.iter())
                .find(|p| p.name.as_deref() == Some(name.as_str()))?
                .container_port
        }
    };
    u16::try_from(number).ok().filter(|&p| p != 0)
}

fn pod_state(pod: &PodView) -> PodRecord {
    let status = &pod.status;
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let restarts = status
        .container_statuses
        .iter()
        .chain(status.init_container_statuses.iter())
        .map(|c| (c.name.clone(), c.restart_count))
        .collect();
    PodRecord {
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        phase: status.phase.clone().unwrap_or_default(),
        ready,
        restarts,
        ip: status.pod_ip.clone(),
        terminating: pod.metadata.deletion_timestamp.is_some(),
    }
}

/// The Deployments and StatefulSets whose selectors select the pods. Only the kinds
/// that own these pods are asked for (a Deployment's pods belong to its ReplicaSets), so
/// a Role that grants only what its mode needs is never asked for more. In
/// [`pod_ips`](KubeGroup::pod_ips) mode, the Role of Scalar Admin for Kubernetes's chart
/// (get/list on pods, services and deployments): StatefulSets are not asked for at all
/// (a StatefulSet's rollout still shows, as each pod it replaces gets a new UID), and a
/// Role that grants no Deployments either is tolerated.
async fn owners(
    group: &KubeGroup,
    client: &kube::Client,
    ns: &str,
    pods: &[PodView],
) -> Result<Vec<OwnerRecord>, DiscoveryError> {
    let selects_a_pod = |selector: Option<&LabelSelector>| {
        selector.is_some_and(|selector| {
            pods.iter()
                .any(|p| label_selector_selects(selector, &p.metadata.labels))
        })
    };
    let owned_by = |kind: &str| {
        pods.iter()
            .any(|p| p.metadata.owner_references.iter().any(|r| r.kind == kind))
    };
    let mut owners = Vec::new();
    if owned_by("ReplicaSet") {
        match list_all::<Deployment, Deployment>(client, ns, ListParams::default()).await {
            Ok(list) => {
                for d in list {
                    if selects_a_pod(d.spec.as_ref().map(|s| &s.selector)) {
                        owners.push(OwnerRecord {
                            kind: "Deployment",
                            name: d.metadata.name.unwrap_or_default(),
                            generation: d.metadata.generation.unwrap_or_default(),
                        });
                    }
                }
            }
            Err(e) if group.pod_ips && is_forbidden(&e) => {}
            Err(e) => return Err(api_error(group, "list", "deployments.apps", ns, e)),
        }
    }
    if owned_by("StatefulSet") && !group.pod_ips {
        let list = list_all::<StatefulSet, StatefulSet>(client, ns, ListParams::default())
            .await
            .map_err(|e| api_error(group, "list", "statefulsets.apps", ns, e))?;
        for s in list {
            if selects_a_pod(s.spec.as_ref().map(|s| &s.selector)) {
                owners.push(OwnerRecord {
                    kind: "StatefulSet",
                    name: s.metadata.name.unwrap_or_default(),
                    generation: s.metadata.generation.unwrap_or_default(),
                });
            }
        }
    }
    owners.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    Ok(owners)
}

/// Objects per page of a list: a page is read whole into memory before it is parsed,
/// so pages bound what a large release costs. A pod's JSON is 3 to 10 KB (its managed
/// fields, the whole spec), so a page of 100 is up to 1 MB of text, where one list of
/// 5000 pods would be 15 to 50 MB. Measured at 1000 pods (README, Performance): the
/// window's peak RSS 44 MB with pages of 100, 48 MB with kubectl's 500, 81 MB unpaged
/// with whole `Pod` objects; ten requests per list instead of two cost 0.1 s or less.
const PAGE: u32 = 100;

/// How many times a list that lost its place (an expired `continue` token: the API
/// server compacted the revision it was reading, 410 Gone) starts again from the first
/// page before its error is returned.
const RESTARTS: usize = 2;

/// One page of a list, as the API server sends it.
#[derive(Deserialize)]
struct Page<T> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(
        default = "Vec::new",
        deserialize_with = "nullable",
        bound(deserialize = "T: Deserialize<'de>")
    )]
    items: Vec<T>,
}

/// Every object of kind `K` in namespace `ns` that `params` selects, read as `T` (`K`
/// itself, or a view of it that keeps only the fields this module reads), [`PAGE`] at a
/// time. The pages of one list are one consistent read of the API server's state (the
/// `continue` token carries its revision); when that revision has been compacted away
/// (410), the list starts again, up to [`RESTARTS`] times.
async fn list_all<K, T>(
    client: &kube::Client,
    ns: &str,
    params: ListParams,
) -> Result<Vec<T>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
    T: serde::de::DeserializeOwned,
{
    let request = kube::core::Request::new(K::url_path(&Default::default(), Some(ns)));
    let mut restarts = 0;
    'list: loop {
        let mut items = Vec::new();
        let mut params = params.clone().limit(PAGE);
        loop {
            let http = request.list(&params).map_err(kube::Error::BuildRequest)?;
            let page: Page<T> = match client.request(http).await {
                Ok(page) => page,
                Err(kube::Error::Api(status))
                    if status.code == 410
                        && params.continue_token.is_some()
                        && restarts < RESTARTS =>
                {
                    restarts += 1;
                    continue 'list;
                }
                Err(e) => return Err(e),
            };
            items.extend(page.items);
            match page.metadata.continue_.filter(|t| !t.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(items),
            }
        }
    }
}

/// `null` read as the default (an empty list or map), as the API server may send it.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The fields of a Pod this module reads, and nothing else: what the snapshot keeps
/// (name, UID, resource version, phase, readiness, restarts, address, deletion), the
/// labels the product, Service and owner checks match, the owners' kinds, and the
/// container ports a named `targetPort` resolves to. A `k8s_openapi` `Pod` would keep
/// every field of every pod (managed fields, the whole spec and status), several
/// kilobytes each, for the life of a discovery.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodView {
    metadata: PodMeta,
    spec: PodSpecView,
    status: PodStatusView,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodMeta {
    name: String,
    uid: String,
    resource_version: String,
    #[serde(deserialize_with = "nullable")]
    labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    owner_references: Vec<OwnerKind>,
    deletion_timestamp: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OwnerKind {
    kind: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodSpecView {
    #[serde(deserialize_with = "nullable")]
    containers: Vec<ContainerView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerView {
    #[serde(deserialize_with = "nullable")]
    ports: Vec<ContainerPortView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ContainerPortView {
    name: Option<String>,
    container_port: i32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodStatusView {
    phase: Option<String>,
    #[serde(deserialize_with = "nullable")]
    conditions: Vec<ConditionView>,
    #[serde(deserialize_with = "nullable")]
    container_statuses: Vec<ContainerStatusView>,
    #[serde(deserialize_with = "nullable")]
    init_container_statuses: Vec<ContainerStatusView>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs", deserialize_with = "nullable")]
    pod_ips: Vec<PodIpView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConditionView {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ContainerStatusView {
    name: String,
    restart_count: i32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodIpView {
    ip: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice as the EndpointSlice controller writes it, from JSON.
    fn slice(port: u16, pods: &[(&str, &str, &str)]) -> EndpointSlice {
        let endpoints: Vec<serde_json::Value> = pods
            .iter()
            .map(|(name, uid, ip)| {
                serde_json::json!({
                    "addresses": [ip],
                    "targetRef": {"kind": "Pod", "name": name, "uid": uid},
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("svc-{port}")},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "metrics", "port": 9080}, {"name": "scalardb", "port": port}],
        }))
        .unwrap()
    }

    #[test]
    fn each_pod_takes_the_admin_port_of_its_own_slice() {
        // Mid-rollout: the old pods' slice maps the port name to 60051, the new one's
        // to 60052.
        let slices = [
            slice(60051, &[("db-old", "u1", "10.0.0.1")]),
            slice(60052, &[("db-new", "u2", "10.0.0.2")]),
        ];
        let endpoints = Endpoints::from_slices(&slices, "scalardb");
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(
            endpoints.of("db-old", "u1", &[ip("10.0.0.1")]),
            Some((ip("10.0.0.1"), Some(60051)))
        );
        assert_eq!(
            endpoints.of("db-new", "u2", &[ip("10.0.0.2")]),
            Some((ip("10.0.0.2"), Some(60052)))
        );
        // A stale UID does not count.
        assert_eq!(endpoints.of("db-new", "u1", &[ip("10.0.0.2")]), None);
    }

    /// An API server on loopback that answers each request (one per connection) with
    /// the next of `responses` and sends each request line on the channel.
    fn scripted_api_server(
        responses: Vec<(u16, String)>,
    ) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for (code, body) in responses {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let _ = tx.send(head.lines().next().unwrap_or_default().to_owned());
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    if code == 200 { "OK" } else { "Gone" },
                    body.len()
                );
            }
        });
        (url, rx)
    }

    fn page(name: &str, token: &str) -> (u16, String) {
        let body = serde_json::json!({
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"continue": token},
            "items": [{"metadata": {"name": name}}],
        });
        (200, body.to_string())
    }

    fn expired() -> (u16, String) {
        let body = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
            "code": 410, "message": "The provided continue parameter is too old",
        });
        (410, body.to_string())
    }

    async fn list_from(url: &str) -> Result<Vec<String>, kube::Error> {
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let listed = tokio::time::timeout(
            Duration::from_secs(10),
            list_all::<Pod, PodView>(&client, "ns", ListParams::default()),
        )
        .await
        .expect("the list ends");
        listed.map(|pods| pods.into_iter().map(|p| p.metadata.name).collect())
    }

    #[tokio::test]
    async fn a_list_is_read_in_pages_and_starts_again_when_its_place_expired() {
        let (url, requests) = scripted_api_server(vec![
            page("a", "t1"),
            expired(),
            page("a", "t2"),
            page("b", ""),
        ]);
        assert_eq!(list_from(&url).await.unwrap(), ["a", "b"]);
        let lines: Vec<String> = requests.try_iter().collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines.iter().all(|l| l.contains("limit=100")), "{lines:?}");
        let continues: Vec<bool> = lines.iter().map(|l| l.contains("continue=")).collect();
        assert_eq!(continues, [false, true, false, true], "{lines:?}");
        assert!(lines[1].contains("continue=t1") && lines[3].contains("continue=t2"));
    }

    #[tokio::test]
    async fn a_list_whose_place_keeps_expiring_fails_with_the_api_servers_answer() {
        let (url, requests) = scripted_api_server(vec![
            page("a", "t1"),
            expired(),
            page("a", "t1"),
            expired(),
            page("a", "t1"),
            expired(),
        ]);
        match list_from(&url).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 410),
            other => panic!("{other:?}"),
        }
        assert_eq!(requests.try_iter().count(), 2 * (RESTARTS + 1));
    }

    fn pod(name: &str, uid: &str, rv: &str, restarts: i32, ready: bool) -> PodRecord {
        PodRecord {
            name: name.to_owned(),
            uid: uid.to_owned(),
            resource_version: rv.to_owned(),
            phase: "Running".to_owned(),
            ready,
            restarts: BTreeMap::from([("app".to_owned(), restarts)]),
            ip: None,
            terminating: false,
        }
    }

    #[test]
    fn changes_name_the_pod_and_what_changed() {
        let before = Snapshot {
            pods: vec![
                pod("a", "1", "10", 0, true),
                pod("b", "2", "20", 0, true),
                pod("c", "3", "30", 0, true),
            ],
            owners: vec![OwnerRecord {
                kind: "Deployment",
                name: "d".into(),
                generation: 3,
            }],
        };
        assert!(before.changes(&before).is_empty());
        let after = Snapshot {
            pods: vec![
                pod("a", "1", "11", 1, true),
                pod("b", "9", "21", 0, true),
                pod("c", "3", "31", 0, false),
                pod("e", "5", "50", 0, true),
            ],
            owners: vec![OwnerRecord {
                kind: "Deployment",
                name: "d".into(),
                generation: 4,
            }],
        };
        let said: Vec<String> = before
            .changes(&after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            said,
            [
                "a: restarts 0 -> 1",
                "a: resource version 10 -> 11",
                "b: replaced (uid 2 -> 9)",
                "c: now Running, not ready",
                "c: resource version 30 -> 31",
                "e: added",
                "Deployment/d: generation 3 -> 4",
            ]
        );
        let gone = Snapshot {
            pods: vec![pod("a", "1", "10", 0, true)],
            owners: vec![],
        };
        let said: Vec<String> = before
            .changes(&gone)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(said, ["b: removed", "c: removed", "Deployment/d: removed"]);
    }

    #[test]
    fn deployment_selectors_in_label_selector_syntax() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_owned(), "x".to_owned())])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(selector_string(&selector), "app=x,tier in (a,b),!canary");
    }
}
