//! The Kubernetes rig on its own, before any client code uses it: a real kube-apiserver
//! serves the release objects the rig made (pods with kubelet-like status, a headless
//! Service, EndpointSlices as the controller writes them, the Deployment and its
//! ReplicaSet), RBAC denies the non-admin user until a Role grants it, and the pod IPs
//! in the API lead to real admin pods. If these fail, the rig is broken, not the client.
//!
//! Skipped, with one line on stderr, without the binaries (`tests/k8s/build.sh`) or
//! outside `tests/k8s/netns.sh`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use scalar_admin_rig::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use scalar_admin_rig::k8s_openapi::api::core::v1::{Container, Pod as PodObject, Service};
use scalar_admin_rig::k8s_openapi::api::discovery::v1::EndpointSlice;
use scalar_admin_rig::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use scalar_admin_rig::kube::{
    JOURNAL_RULES, MAX_ENDPOINTS_PER_SLICE, Release, SCALAR_ADMIN_RULES, User,
};
use scalar_admin_rig::kube_rs::Api;
use scalar_admin_rig::kube_rs::api::ListParams;
use scalar_admin_rig::{KubeCluster, TestNamespace};

use crate::backup_job::{BINARY_IN_JOB, RUN_AS};
use crate::util::bounded;

/// Pods as the API lists them, by name.
async fn listed_pods(ns: &TestNamespace, selector: &str) -> Vec<PodObject> {
    let mut pods = ns
        .api::<PodObject>()
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods
}

fn restarts(pod: &PodObject) -> i32 {
    let status = pod.status.as_ref().expect("status");
    status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .sum()
}

fn ready(pod: &PodObject) -> bool {
    let status = pod.status.as_ref().expect("status");
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn pod_ip(pod: &PodObject) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("podIP")
}

/// `(address, pod name, pod uid, ready)` of every endpoint of the release's slices,
/// checking each slice's labels, size and admin port on the way.
async fn endpoints(release: &Release) -> BTreeSet<(String, String, String, bool)> {
    let mut all = BTreeSet::new();
    for slice in release.endpoint_slices().await {
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["kubernetes.io/service-name"], release.service_name());
        assert_eq!(
            labels["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(slice.address_type, "IPv4");
        assert!(slice.endpoints.len() <= MAX_ENDPOINTS_PER_SLICE);
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(release.port_name()))
            .expect("the named admin port in the slice");
        assert_eq!(port.port, Some(i32::from(release.admin_port())));
        for endpoint in &slice.endpoints {
            let target = endpoint.target_ref.as_ref().expect("targetRef");
            assert_eq!(target.kind.as_deref(), Some("Pod"));
            all.insert((
                endpoint.addresses[0].clone(),
                target.name.clone().expect("name"),
                target.uid.clone().expect("uid"),
                endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .expect("ready"),
            ));
        }
    }
    all
}

/// What the slices should say, from the rig's own record of the pods.
fn expected_endpoints(release: &Release) -> BTreeSet<(String, String, String, bool)> {
    release
        .pods()
        .iter()
        .map(|p| {
            (
                p.addr.ip().to_string(),
                p.name.clone(),
                p.uid.clone(),
                p.ready,
            )
        })
        .collect()
}

async fn connect(addr: SocketAddr) {
    tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
}

#[tokio::test]
async fn release_served_by_a_real_api_server() {
    bounded(async {
        let Some(cluster) = KubeCluster::shared().await else {
            return;
        };
        let started = Instant::now();
        let ns = cluster.namespace("k8s-rig-release").await;
        let admin_pods = cluster.admin_pods(3).await;
        let mut release = ns
            .release("rel1", "scalardb-cluster")
            .create(&admin_pods)
            .await;

        // Pods of the release: the three product pods and the Envoy pod, all Running.
        let all = listed_pods(&ns, "app.kubernetes.io/instance=rel1").await;
        assert_eq!(all.len(), 4, "three pods and Envoy");
        let envoy = release.envoy_pod().expect("envoy pod").to_owned();
        assert!(
            all.iter()
                .any(|p| p.metadata.name.as_deref() == Some(&envoy))
        );
        let pods = listed_pods(&ns, &release.selector()).await;
        let mut names = release.pod_names();
        names.sort();
        assert_eq!(
            pods.iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect::<Vec<_>>(),
            names
        );
        let rs_api: Api<ReplicaSet> = ns.api();
        for pod in &pods {
            let status = pod.status.as_ref().unwrap();
            assert_eq!(status.phase.as_deref(), Some("Running"));
            assert!(ready(pod));
            assert_eq!(restarts(pod), 0);
            let mine = release.pod(pod.metadata.name.as_deref().unwrap());
            assert_eq!(pod_ip(pod), mine.addr.ip().to_string());
            assert_eq!(pod.metadata.uid.as_deref(), Some(mine.uid.as_str()));
            let ip: std::net::Ipv4Addr = pod_ip(pod).parse().unwrap();
            assert!(
                matches!(ip.octets(), [198, 18 | 19, ..]),
                "{ip} not in 198.18.0.0/15"
            );
            // Owned by a ReplicaSet, which the Deployment owns, as the controllers do.
            let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.controller),
                ("ReplicaSet", Some(true))
            );
            let rs = rs_api.get(&owner.name).await.unwrap();
            assert_eq!(rs.metadata.uid.as_deref(), Some(owner.uid.as_str()));
            let rs_owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (rs_owner.kind.as_str(), rs_owner.name.as_str()),
                ("Deployment", release.workload_name())
            );
            // The container port the Service's numeric targetPort names.
            let ports = pod.spec.as_ref().unwrap().containers[0]
                .ports
                .clone()
                .unwrap();
            assert!(
                ports
                    .iter()
                    .any(|p| p.container_port == i32::from(release.admin_port()))
            );
        }

        // The headless Service and its named admin port, numeric targetPort.
        let service = ns
            .api::<Service>()
            .get("rel1-headless")
            .await
            .expect("headless service");
        let spec = service.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        let port = spec
            .ports
            .unwrap()
            .into_iter()
            .find(|p| p.name.as_deref() == Some("scalardb-cluster"))
            .expect("port named scalardb-cluster");
        assert_eq!(
            port.target_port,
            Some(IntOrString::Int(i32::from(release.admin_port())))
        );

        // EndpointSlices say what the pods are.
        assert_eq!(endpoints(&release).await, expected_endpoints(&release));

        // The Deployment, generation 1, its status as the controller writes it.
        let deployment = ns
            .api::<Deployment>()
            .get(release.workload_name())
            .await
            .unwrap();
        assert_eq!(deployment.metadata.generation, Some(1));
        let status = deployment.status.unwrap();
        assert_eq!((status.replicas, status.ready_replicas), (Some(3), Some(3)));
        assert_eq!(status.observed_generation, Some(1));

        // RBAC: the tester may not list pods until a Role lets it.
        let tester: Api<PodObject> = Api::namespaced(ns.tester_client().await, ns.name());
        let denied = tester
            .list(&ListParams::default())
            .await
            .expect_err("tester must be denied");
        match &denied {
            scalar_admin_rig::kube_rs::Error::Api(status) => {
                assert_eq!(status.code, 403, "{denied}");
                assert_eq!(
                    status.message,
                    format!(
                        "pods is forbidden: User \"tester\" cannot list resource \"pods\" \
                         in API group \"\" in the namespace \"{}\"",
                        ns.name()
                    )
                );
            }
            other => panic!("want a 403, got {other}"),
        }
        let without_slices: Vec<_> = SCALAR_ADMIN_RULES
            .iter()
            .copied()
            .filter(|(_, r)| *r != "endpointslices")
            .collect();
        ns.grant_tester("scalar-admin", &without_slices).await;
        assert_eq!(
            tester
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            4
        );
        assert!(!ns.tester_can("list", "endpointslices").await);
        let tester_slices: Api<EndpointSlice> =
            Api::namespaced(ns.tester_client().await, ns.name());
        let denied = tester_slices
            .list(&ListParams::default())
            .await
            .expect_err("no list endpointslices");
        assert!(
            denied.to_string().contains(
                "cannot list resource \"endpointslices\" in API group \"discovery.k8s.io\""
            ),
            "{denied}"
        );
        ns.grant_tester("scalar-admin", SCALAR_ADMIN_RULES).await;
        assert_eq!(
            tester_slices
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        // A kubeconfig of the tester in this namespace, as a command under test gets it.
        let kubeconfig = ns.kubeconfig(User::Tester);
        let text = std::fs::read_to_string(&kubeconfig).unwrap();
        assert!(text.contains(ns.name()), "{text}");

        // Every pod IP in the API reaches a real admin pod.
        for pod in &pods {
            let ip: std::net::IpAddr = pod_ip(pod).parse().unwrap();
            connect(SocketAddr::new(ip, release.admin_port())).await;
        }

        // What the tests of the Kubernetes way will do to the release.
        let first = release.pod_names()[0].clone();
        let rv_before = ns
            .api::<PodObject>()
            .get(&first)
            .await
            .unwrap()
            .metadata
            .resource_version;
        assert_eq!(release.bump_restarts(&first).await, 1);
        let after = ns.api::<PodObject>().get(&first).await.unwrap();
        assert_eq!(restarts(&after), 1);
        assert_ne!(after.metadata.resource_version, rv_before);

        let old_uid = release.pod(&first).uid.clone();
        let new_uid = release.replace_pod(&first).await;
        assert_ne!(new_uid, old_uid);
        let replaced = ns.api::<PodObject>().get(&first).await.unwrap();
        assert_eq!(replaced.metadata.uid.as_deref(), Some(new_uid.as_str()));
        assert_eq!(restarts(&replaced), 0);
        assert_eq!(endpoints(&release).await, expected_endpoints(&release));

        let second = release.pod_names()[1].clone();
        release.set_ready(&second, false).await;
        assert!(!ready(&ns.api::<PodObject>().get(&second).await.unwrap()));
        assert!(endpoints(&release).await.contains(&(
            release.pod(&second).addr.ip().to_string(),
            second.clone(),
            release.pod(&second).uid.clone(),
            false
        )));

        let extra = cluster.admin_pods(1).await;
        let added = release.add_pod(extra[0].addr()).await;
        assert_eq!(listed_pods(&ns, &release.selector()).await.len(), 4);
        assert_eq!(release.generation(), 1, "a pod alone leaves the spec");
        assert_eq!(release.scale().await, 2, "a scale-up changes the spec");
        release.remove_pod(&added).await;
        assert_eq!(listed_pods(&ns, &release.selector()).await.len(), 3);
        assert_eq!(endpoints(&release).await, expected_endpoints(&release));
        let generation = release.bump_generation().await;
        assert_eq!(
            ns.api::<Deployment>()
                .get(release.workload_name())
                .await
                .unwrap()
                .metadata
                .generation,
            Some(generation)
        );

        eprintln!("k8s rig release test body: {:?}", started.elapsed());
    })
    .await;
}

/// 250 pods: three slices of at most 100 endpoints, a StatefulSet, a named
/// `targetPort` resolved against the pods' container port `admin`.
#[tokio::test]
async fn many_pods_in_several_slices_with_a_named_target_port() {
    bounded(async {
        let Some(cluster) = KubeCluster::shared().await else {
            return;
        };
        let started = Instant::now();
        let ns = cluster.namespace("k8s-rig-many").await;
        let admin_pods = cluster.admin_pods(250).await;
        let release = ns
            .release("ledger1", "ledger")
            .statefulset()
            .named_target_port("admin")
            .envoy(false)
            .create(&admin_pods)
            .await;
        let slices = release.endpoint_slices().await;
        let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [50, 100, 100]);
        assert_eq!(endpoints(&release).await, expected_endpoints(&release));

        let service = ns.api::<Service>().get("ledger1-headless").await.unwrap();
        let port = service
            .spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .find(|p| p.name.as_deref() == Some("scalardl-admin"))
            .unwrap();
        assert_eq!(port.target_port, Some(IntOrString::String("admin".into())));
        let pods = listed_pods(&ns, &release.selector()).await;
        assert_eq!(pods.len(), 250);
        let container = &pods[0].spec.as_ref().unwrap().containers[0];
        let admin = container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("admin"))
            .unwrap();
        assert_eq!(admin.container_port, i32::from(release.admin_port()));
        assert!(ns.api::<StatefulSet>().get("ledger1-ledger").await.is_ok());
        assert!(
            release
                .pod_names()
                .contains(&"ledger1-ledger-249".to_owned())
        );
        for pod in admin_pods.iter().step_by(50) {
            connect(pod.addr()).await;
        }
        eprintln!("k8s rig 250-pod test body: {:?}", started.elapsed());
    })
    .await;
}

/// `scalar-admin-cli/deploy/rbac.yaml`, created by the real API server from the YAML,
/// gives ServiceAccount `scalar-admin` exactly [`SCALAR_ADMIN_RULES`] (the rules the
/// tests grant the `tester`) and nothing that writes, watches or reads Secrets, and
/// `scalar-admin-backup` those and the journal's [`JOURNAL_RULES`]; the Jobs and CronJob
/// are accepted as they are, the Jobs run as the first (the backup Job is the one
/// `backup_job::*` runs the binary as), the CronJob as the second with its journal in
/// the cluster.
#[tokio::test]
async fn deploy_rbac_is_least_privilege() {
    bounded(async {
        let Some(cluster) = KubeCluster::shared().await else {
            return;
        };
        let ns = cluster.namespace("k8s-rig-rbac").await;
        let deploy =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scalar-admin-cli/deploy");
        let created = ns.apply_manifest(&deploy.join("rbac.yaml")).await;
        assert_eq!(
            created,
            [
                "ServiceAccount/scalar-admin",
                "Role/scalar-admin",
                "RoleBinding/scalar-admin",
                "ServiceAccount/scalar-admin-backup",
                "Role/scalar-admin-journal",
                "RoleBinding/scalar-admin-backup",
                "RoleBinding/scalar-admin-backup-journal",
            ]
        );
        // The CronJob's account may also keep the journal; the other jobs' may not.
        ns.wait_service_account_allowed("scalar-admin", SCALAR_ADMIN_RULES)
            .await;
        ns.wait_service_account_allowed("scalar-admin-backup", SCALAR_ADMIN_RULES)
            .await;
        ns.wait_service_account_allowed("scalar-admin-backup", JOURNAL_RULES)
            .await;
        for (verb, resource) in [("watch", "configmaps"), ("patch", "configmaps")] {
            assert!(
                !ns.service_account_can("scalar-admin-backup", verb, resource)
                    .await,
                "rbac.yaml must not allow the backup account to {verb} {resource}"
            );
        }
        for (verb, resource) in [
            ("create", "configmaps"),
            ("update", "configmaps"),
            ("delete", "configmaps"),
            ("watch", "pods"),
            ("delete", "pods"),
            ("create", "pods/exec"),
            ("patch", "deployments"),
            ("get", "secrets"),
            ("list", "endpoints"),
            ("list", "replicasets"),
        ] {
            assert!(
                !ns.service_account_can("scalar-admin", verb, resource).await,
                "rbac.yaml must not allow {verb} {resource}"
            );
        }
        // And not in another namespace.
        let other = cluster.namespace("k8s-rig-rbac-other").await;
        assert!(
            !other
                .service_account_can("scalar-admin", "list", "pods")
                .await
        );

        for manifest in [
            "pause-job.yaml",
            "backup-window-cronjob.yaml",
            "backup-job.yaml",
        ] {
            assert_eq!(ns.apply_manifest(&deploy.join(manifest)).await.len(), 1);
        }
        let jobs: Api<scalar_admin_rig::k8s_openapi::api::batch::v1::Job> = ns.api();
        let job = jobs.get("scalar-admin-pause").await.unwrap();
        let account = job
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .service_account_name;
        assert_eq!(account.as_deref(), Some("scalar-admin"));
        let cronjobs: Api<scalar_admin_rig::k8s_openapi::api::batch::v1::CronJob> = ns.api();
        let cronjob = cronjobs.get("scalar-backup-window").await.unwrap();
        let template = cronjob.spec.unwrap().job_template.spec.unwrap().template;
        let pod = template.spec.unwrap();
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("scalar-admin-backup")
        );
        let args = pod.containers[0].args.clone().unwrap_or_default();
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--journal" && w[1].starts_with("k8s:"))
        );

        backup_job_runs_the_copied_binary(&jobs.get("scalar-backup").await.unwrap());

        // A token of that account, as the tool has inside the Job's pod.
        let kubeconfig = ns.service_account_kubeconfig("scalar-admin").await;
        assert!(
            std::fs::read_to_string(kubeconfig)
                .unwrap()
                .contains("\"token\"")
        );
    })
    .await;
}

/// `backup-job.yaml` as the API server stored it is the Job `backup_job::*` runs the
/// binary as: the init container copies it into an emptyDir mounted where the backup
/// container runs it from ([`BINARY_IN_JOB`]), read-only there; `TMPDIR` is an emptyDir;
/// the root file systems stay read-only; the user is [`RUN_AS`]; the account is
/// rbac.yaml's.
fn backup_job_runs_the_copied_binary(job: &scalar_admin_rig::k8s_openapi::api::batch::v1::Job) {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("scalar-admin"));
    let security = pod.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_user, Some(RUN_AS));
    assert_eq!(security.run_as_group, Some(RUN_AS));
    assert_eq!(security.run_as_non_root, Some(true));
    let empty_dir = |name: &str| {
        pod.volumes
            .iter()
            .flatten()
            .any(|v| v.name == name && v.empty_dir.is_some())
    };
    let (dir, _) = BINARY_IN_JOB.rsplit_once('/').unwrap();
    let mount = |c: &Container, path: &str| {
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", c.name));
        assert!(empty_dir(&m.name), "{}: {path} is not an emptyDir", c.name);
        m.clone()
    };
    let read_only_root = |c: &Container| {
        c.security_context
            .as_ref()
            .and_then(|s| s.read_only_root_filesystem)
            == Some(true)
    };

    let init = &pod.init_containers.as_ref().unwrap()[0];
    let copy = init.command.as_ref().unwrap();
    assert!(copy[0].ends_with("/cp"), "{copy:?}");
    assert_eq!(
        copy.last().map(String::as_str),
        Some(BINARY_IN_JOB),
        "{copy:?}"
    );
    let into = mount(init, dir);
    assert_ne!(into.read_only, Some(true));
    assert!(read_only_root(init));

    let backup = &pod.containers[0];
    assert_eq!(
        backup.command.as_deref(),
        Some(&[BINARY_IN_JOB.to_owned()][..])
    );
    let from = mount(backup, dir);
    assert_eq!(from.name, into.name);
    assert_eq!(from.read_only, Some(true));
    let env = |name: &str| {
        backup
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    let tmpdir = env("TMPDIR").expect("TMPDIR");
    assert!(!mount(backup, &tmpdir).read_only.unwrap_or(false));
    assert!(read_only_root(backup));
    let args = backup.args.as_ref().unwrap();
    assert!(args.windows(2).any(|w| w == ["-c", "window"]), "{args:?}");
    assert!(args.iter().any(|a| a == "--exec"), "{args:?}");
}
