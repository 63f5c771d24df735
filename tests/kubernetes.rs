//! The Kubernetes way against a real kube-apiserver and etcd (`tests/rig/src/kube.rs`):
//! pods found by release, selector and Deployment; a window that names every pod that
//! restarted, was replaced, added or removed; readiness and RBAC refusals before any
//! Pause; 1000 pods from EndpointSlices; the Scalar Admin for Kubernetes command line.
//!
//! Skipped, with one line on stderr, without the binaries (`tests/k8s/build.sh`) or
//! outside `tests/k8s/netns.sh`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use scalar_admin::kubernetes::{KubeConfig, KubeGroup, Selector};
use scalar_admin::window::{Group, Window, WindowReport};
use scalar_admin_rig::k8s_openapi::api::core::v1::ConfigMap;
use scalar_admin_rig::kube::{JOURNAL_RULES, Release, SCALAR_ADMIN_RULES, User};
use scalar_admin_rig::kube_rs::api::ListParams;
use scalar_admin_rig::{Call, KubeCluster, Pod, TestNamespace};
use serde_json::Value;

use crate::util::{Run, bounded, run_program_env, scalar_admin};

async fn setup(prefix: &str) -> Option<(&'static KubeCluster, TestNamespace)> {
    let cluster = KubeCluster::shared().await?;
    let ns = cluster.namespace(prefix).await;
    Some((cluster, ns))
}

fn group(ns: &TestNamespace, selector: Selector) -> KubeGroup {
    KubeGroup::new(
        KubeConfig::default().kubeconfig(ns.kubeconfig(User::Admin)),
        selector,
    )
}

fn addrs(pods: &[Pod]) -> BTreeSet<SocketAddr> {
    pods.iter().map(Pod::addr).collect()
}

fn paused(pods: &[Pod]) -> usize {
    pods.iter().filter(|p| p.gate().is_paused()).count()
}

/// `scalar-admin` with the namespace's admin kubeconfig and these arguments.
async fn cli(ns: &TestNamespace, user: User, args: &[&str]) -> Run {
    let kubeconfig = ns.kubeconfig(user);
    let mut all = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
    all.extend_from_slice(args);
    scalar_admin(&all).await
}

#[tokio::test]
async fn pods_are_found_by_release_selector_and_deployment() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-find").await else {
            return;
        };
        let pods = cluster.admin_pods(3).await;
        let release = ns.release("db", "scalardb-cluster").create(&pods).await;
        for selector in [
            Selector::Release("db".into()),
            Selector::Labels(release.selector()),
            Selector::Deployment(release.workload_name().into()),
        ] {
            let found = group(&ns, selector.clone()).resolve().await.unwrap();
            let got: BTreeSet<SocketAddr> = found
                .targets()
                .iter()
                .map(|t| t.socket_addr().unwrap())
                .collect();
            assert_eq!(got, addrs(&pods), "{selector}: the Envoy pod is skipped");
            let names: BTreeSet<String> = found
                .snapshot()
                .pods()
                .iter()
                .map(|p| p.name().to_owned())
                .collect();
            assert_eq!(names, release.pod_names().into_iter().collect());
            for target in found.targets() {
                let pod = release.pod_at(target.socket_addr().unwrap());
                assert_eq!(target.name(), format!("{pod}:{}", release.admin_port()));
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_named_target_port_of_a_statefulset_is_resolved() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-named").await else {
            return;
        };
        let pods = cluster.admin_pods(2).await;
        let _release = ns
            .release("ledger", "ledger")
            .statefulset()
            .named_target_port("admin")
            .create(&pods)
            .await;
        let found = group(&ns, Selector::Release("ledger".into()))
            .resolve()
            .await
            .unwrap();
        let got: BTreeSet<SocketAddr> = found
            .targets()
            .iter()
            .map(|t| t.socket_addr().unwrap())
            .collect();
        assert_eq!(got, addrs(&pods));
    })
    .await
}

#[tokio::test]
async fn a_pod_not_ready_refuses_before_any_pause() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-ready").await else {
            return;
        };
        let mut pods = cluster.admin_pods(3).await;
        let mut release = ns.release("db", "scalardb-cluster").create(&pods).await;
        let unready = release.pod_names()[1].clone();
        release.set_ready(&unready, false).await;
        let run = cli(&ns, User::Admin, &["-c", "pause", "-r", "db"]).await;
        run.assert_status(1);
        let line = format!("1 pod(s) not Running and ready: {unready} (Running, not ready)");
        assert!(run.stderr.contains(&line), "{}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        for pod in &mut pods {
            assert!(pod.take_calls().is_empty(), "a pod was contacted");
        }
    })
    .await
}

/// Runs a window over `release` with a hold long enough for `change`, made once every
/// pod received its Pause; returns the window.
async fn window_with_change<F, Fut>(
    ns: &TestNamespace,
    release_name: &str,
    pods: &mut [Pod],
    change: F,
) -> WindowReport
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let window = Window::new([Group::Kubernetes(group(
        ns,
        Selector::Release(release_name.into()),
    ))])
    .hold(Duration::from_secs(2));
    let run = tokio::spawn(async move { window.run(std::future::pending::<()>()).await });
    for pod in pods.iter_mut() {
        pod.next_pause().await;
    }
    change().await;
    let windows = run.await.unwrap().unwrap();
    assert!(pods.iter().all(|p| !p.gate().is_paused()));
    windows.into_iter().last().unwrap()
}

fn reasons(window: &WindowReport) -> Vec<String> {
    window
        .verdict()
        .findings()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[tokio::test]
async fn a_window_names_each_pod_that_changed() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-window").await else {
            return;
        };
        // A restart.
        let mut pods = cluster.admin_pods(2).await;
        let release = ns.release("r1", "scalardb-cluster").create(&pods).await;
        let pod = release.pod_names()[0].clone();
        let release = tokio::sync::Mutex::new(release);
        let window = window_with_change(&ns, "r1", &mut pods, || async {
            release.lock().await.bump_restarts(&pod).await;
        })
        .await;
        assert!(!window.verdict().is_valid());
        let said = reasons(&window);
        assert!(
            said.contains(&format!("{pod}: restarts 0 -> 1")),
            "{said:?}"
        );

        // A pod replaced under the same name.
        let mut pods = cluster.admin_pods(2).await;
        let release = ns.release("r2", "scalardb-cluster").create(&pods).await;
        let pod = release.pod_names()[1].clone();
        let old_uid = release.pod(&pod).uid.clone();
        let release = tokio::sync::Mutex::new(release);
        let window = window_with_change(&ns, "r2", &mut pods, || async {
            release.lock().await.replace_pod(&pod).await;
        })
        .await;
        let said = reasons(&window);
        let new_uid = release.lock().await.pod(&pod).uid.clone();
        assert!(
            said.contains(&format!("{pod}: replaced (uid {old_uid} -> {new_uid})")),
            "{said:?}"
        );

        // A pod added (running unpaused), and one removed.
        let mut pods = cluster.admin_pods(2).await;
        let extra = cluster.admin_pods(1).await;
        let release = ns.release("r3", "scalardb-cluster").create(&pods).await;
        let gone = release.pod_names()[0].clone();
        let release = tokio::sync::Mutex::new(release);
        let window = window_with_change(&ns, "r3", &mut pods, || async {
            let mut release = release.lock().await;
            release.add_pod(extra[0].addr()).await;
            release.remove_pod(&gone).await;
        })
        .await;
        let said = reasons(&window);
        let added = release.lock().await.pod_at(extra[0].addr()).to_owned();
        assert!(said.contains(&format!("{added}: added")), "{said:?}");
        assert!(said.contains(&format!("{gone}: removed")), "{said:?}");
        assert!(!extra[0].gate().is_paused());

        // Nothing changed: VALID, with the snapshot before the pause.
        let mut pods = cluster.admin_pods(2).await;
        let _release = ns.release("r4", "scalardb-cluster").create(&pods).await;
        let window = window_with_change(&ns, "r4", &mut pods, || async {}).await;
        assert!(window.verdict().is_valid(), "{:?}", reasons(&window));
        assert_eq!(window.groups()[0].snapshot().unwrap().pods().len(), 2);
    })
    .await
}

#[tokio::test]
async fn a_thousand_pods_from_endpoint_slices_in_one_fan_out() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-1000").await else {
            return;
        };
        let pods = cluster.admin_pods(1000).await;
        let release: Release = ns.release("big", "scalardb-cluster").create(&pods).await;
        assert_eq!(release.endpoint_slices().await.len(), 10);
        cli(&ns, User::Admin, &["-c", "pause", "-r", "big"])
            .await
            .success();
        assert_eq!(paused(&pods), 1000, "every pod, beyond the DNS limit");
        let run = cli(&ns, User::Admin, &["-c", "check_paused", "-r", "big"])
            .await
            .success();
        let check: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(check.as_object().unwrap().len(), 1000);
        cli(&ns, User::Admin, &["-c", "unpause", "-r", "big"])
            .await
            .success();
        assert_eq!(paused(&pods), 0);

        // A window over them, kept in the cluster: its object holds a count and a
        // digest, not a thousand names.
        let journal = format!("k8s:{}", ns.name());
        let args = [
            "-c",
            "window",
            "-r",
            "big",
            "--duration",
            "100ms",
            "--journal",
            &journal,
        ];
        cli(&ns, User::Admin, &args).await.success();
        let objects = window_objects(&ns).await;
        assert_eq!(label(&objects[0], "scalar-admin/verdict"), "VALID");
        assert_eq!(entry(&objects[0], "open")["pod_count"], 1000);
        let size = serde_json::to_vec(&objects[0]).unwrap().len();
        eprintln!("a VALID window's object over 1000 pods: {size} bytes as JSON");
        assert!(size < 2048, "{size} bytes");
    })
    .await
}

#[tokio::test]
async fn the_role_allows_it_and_a_missing_permission_is_named_before_any_pause() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-rbac").await else {
            return;
        };
        let mut pods = cluster.admin_pods(2).await;
        ns.release("db", "scalardb-cluster").create(&pods).await;

        // The tester may do all the Role of deploy/rbac.yaml allows, except list
        // EndpointSlices.
        let without_slices: Vec<(&[&str], &str)> = SCALAR_ADMIN_RULES
            .iter()
            .copied()
            .filter(|(_, resource)| !resource.starts_with("endpointslices"))
            .collect();
        ns.grant_tester("no-slices", &without_slices).await;
        let run = cli(&ns, User::Tester, &["-c", "pause", "-r", "db"]).await;
        run.assert_status(1);
        let line = format!(
            "forbidden to list endpointslices.discovery.k8s.io in namespace {}",
            ns.name()
        );
        assert!(run.stderr.contains(&line), "{}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        for pod in &mut pods {
            assert!(pod.take_calls().is_empty(), "a pod was contacted");
        }

        // The service account of deploy/rbac.yaml may do all it needs.
        let kubeconfig = ns.service_account_kubeconfig("scalar-admin").await;
        ns.grant_service_account("scalar-admin", "scalar-admin", SCALAR_ADMIN_RULES)
            .await;
        let kubeconfig = kubeconfig.to_str().unwrap();
        for command in ["pause", "unpause"] {
            scalar_admin(&["-c", command, "-r", "db", "--kubeconfig", kubeconfig])
                .await
                .success();
        }
        let calls: Vec<Call> = pods.iter_mut().flat_map(|p| p.take_calls()).collect();
        assert_eq!(calls.iter().filter(|c| **c == Call::Unpause).count(), 2);
        assert_eq!(paused(&pods), 0);
    })
    .await
}

#[tokio::test]
async fn unpause_reaches_pods_that_stopped_being_ready_and_pause_refuses_terminating_ones() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-unready").await else {
            return;
        };
        let pods = cluster.admin_pods(3).await;
        let mut release = ns.release("db", "scalardb-cluster").create(&pods).await;
        cli(&ns, User::Admin, &["-c", "pause", "-r", "db"])
            .await
            .success();
        assert_eq!(paused(&pods), 3);
        // A paused pod fails its readiness probe: it must still be unpaused.
        let unready = release.pod_names()[0].clone();
        release.set_ready(&unready, false).await;
        let run = cli(&ns, User::Admin, &["-c", "check_paused", "-r", "db"])
            .await
            .success();
        let check: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(check.as_object().unwrap().len(), 3, "{check}");
        cli(&ns, User::Admin, &["-c", "unpause", "-r", "db"])
            .await
            .success();
        assert_eq!(paused(&pods), 0, "a pod that is not ready was left paused");
        release.set_ready(&unready, true).await;

        // A pod in its grace period (no kubelet ends it here) may still serve: a pause
        // refuses it rather than leave it out.
        use scalar_admin_rig::k8s_openapi::api::core::v1::Pod as PodObject;
        use scalar_admin_rig::kube_rs::api::DeleteParams;
        let leaving = release.pod_names()[1].clone();
        let grace = DeleteParams {
            grace_period_seconds: Some(600),
            ..DeleteParams::default()
        };
        let _ = ns
            .api::<PodObject>()
            .delete(&leaving, &grace)
            .await
            .unwrap();
        let run = cli(&ns, User::Admin, &["-c", "pause", "-r", "db"]).await;
        run.assert_status(1);
        assert!(
            run.stderr.contains(&format!("{leaving} (terminating)")),
            "{}",
            run.stderr
        );
        assert_eq!(paused(&pods), 0);
    })
    .await
}

#[tokio::test]
async fn a_window_over_two_releases_shares_one_period() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-two").await else {
            return;
        };
        let ledgers = cluster.admin_pods(2).await;
        let auditors = cluster.admin_pods(2).await;
        ns.release("ledger", "ledger").create(&ledgers).await;
        ns.release("auditor", "auditor").create(&auditors).await;
        let run = cli(
            &ns,
            User::Admin,
            &[
                "-c",
                "window",
                "-r",
                "ledger",
                "-r",
                "auditor",
                "--duration",
                "100ms",
                "--output",
                "json",
            ],
        )
        .await
        .success();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        let window = &doc["windows"][0];
        assert_eq!(window["verdict"], "VALID", "{doc}");
        let groups = window["detail"]["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 2);
        for g in groups {
            assert_eq!(g["snapshot"]["pods"].as_array().unwrap().len(), 2, "{g}");
        }
        assert_eq!(
            window["detail"]["after_unpause"].as_array().unwrap().len(),
            2
        );
        assert_eq!(paused(&ledgers) + paused(&auditors), 0);
    })
    .await
}

/// The image's link: the same binary under the other tool's name, made once per test
/// process (a link already there is the same link).
fn drop_in() -> std::path::PathBuf {
    static LINK: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    LINK.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("scalar-admin-for-kubernetes");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_scalar-admin"), &link).unwrap();
        link
    })
    .clone()
}

/// The Role of Scalar's own chart for Scalar Admin for Kubernetes
/// (`scalar-labs/helm-charts`, `charts/scalar-admin-for-kubernetes/templates/
/// scalar-admin-k8s/role.yaml`): get and list on pods, services and deployments.
const SAK_CHART_RULES: &[(&[&str], &str)] = &[
    (&["get", "list"], "pods"),
    (&["get", "list"], "services"),
    (&["get", "list"], "deployments"),
];

#[tokio::test]
async fn the_scalar_admin_for_kubernetes_command_line_and_its_json() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-sak").await else {
            return;
        };
        let pods = cluster.admin_pods(2).await;
        // Its chart's ScalarDB Cluster: a Deployment, the Service's targetPort named.
        let release = ns
            .release("db", "scalardb-cluster")
            .named_target_port("admin")
            .create(&pods)
            .await;
        // Its chart's Role: get/list on pods, services and deployments, nothing else.
        ns.grant_tester("sak-chart", SAK_CHART_RULES).await;
        let link = drop_in();
        let kubeconfig = ns.kubeconfig(User::Tester);
        let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
        let args = ["-r", "db", "-n", ns.name(), "-d", "300", "-z", "Asia/Tokyo"];
        let run = run_program_env(link.to_str().unwrap(), &args, &env).await;
        run.assert_status(0);
        assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
        let line: Value = serde_json::from_str(&run.stdout).unwrap();
        // The keys in its Jackson's order: `timezone` second.
        let head = format!(
            r#"{{"namespace":"{}","timezone":"Asia/Tokyo","helm_release_name":"db","pause_start_timestamp_ms":"#,
            ns.name()
        );
        assert!(run.stdout.starts_with(&head), "{}", run.stdout);
        assert_eq!(line["namespace"], ns.name());
        assert_eq!(line["helm_release_name"], "db");
        assert_eq!(line["timezone"], "Asia/Tokyo");
        let start = line["pause_start_timestamp_ms"].as_i64().unwrap();
        let end = line["pause_end_timestamp_ms"].as_i64().unwrap();
        assert!(end - start >= 300, "{line}");
        for field in ["pause_start_date_time", "pause_end_date_time"] {
            let text = line[field].as_str().unwrap();
            assert!(
                text.len() >= 16 && &text[10..11] == "T" && !text.contains('+'),
                "{field}: {text}"
            );
        }
        assert_eq!(paused(&pods), 0);

        // Its deployment mode: the Deployment and the admin port given, a zone as
        // `ZoneId.of` takes it, printed normalised.
        let port = release.admin_port().to_string();
        let args = [
            "--pod-discovery-mode",
            "deployment",
            "--deployment-name",
            release.workload_name(),
            "--admin-port",
            &port,
            "-n",
            ns.name(),
            "-d",
            "300",
            "-z",
            "GMT+9",
        ];
        let run = run_program_env(link.to_str().unwrap(), &args, &env).await;
        run.assert_status(0);
        let line: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(line["timezone"], "GMT+09:00", "{line}");
        assert_eq!(line["deployment_name"], release.workload_name(), "{line}");
        assert!(line.get("helm_release_name").is_none(), "{line}");
        assert_eq!(paused(&pods), 0);

        // Its usage error (a zone `ZoneId.of` refuses: exit 2), and its checks after
        // parsing (deployment mode without --admin-port: exit 1), before any request.
        for (args, status) in [
            (&["-r", "db", "-n", ns.name(), "-z", "+09:3"][..], 2),
            (&["-r", "db", "-n", ns.name(), "-z", "asia/tokyo"], 2),
            (
                &["--pod-discovery-mode", "deployment", "--deployment-name", "x", "-n", ns.name()],
                1,
            ),
        ] {
            let run = run_program_env(link.to_str().unwrap(), args, &env).await;
            run.assert_status(status);
            assert!(run.stdout.is_empty(), "{}", run.stdout);
        }

        // Its failure: a release that does not exist, exit 1.
        let run = run_program_env(
            link.to_str().unwrap(),
            &["-r", "nope", "-n", ns.name()],
            &env,
        )
        .await;
        run.assert_status(1);
        assert!(run.stdout.is_empty());
        assert!(run.stderr.contains("nope"), "{}", run.stderr);
    })
    .await
}

/// A kubeconfig whose credential plugin hangs: the plugin runs off the runtime, so the
/// discovery's time limit still ends the command, and it runs non-interactive, its stdin
/// a pipe of its own rather than the tool's (a guardian's link, a script's input). No
/// API server is needed: the plugin runs while the client is built.
#[tokio::test]
async fn a_hanging_credential_plugin_meets_the_time_limit_and_never_gets_the_tools_stdin() {
    bounded(async {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = crate::exec::scratch("kube-plugin");
        let marker = dir.join("stdin");
        let plugin = dir.join("plugin.sh");
        std::fs::write(
            &plugin,
            format!(
                "#!/bin/sh\nif [ -p /dev/stdin ]; then echo pipe; else echo other; fi > {}\nexec sleep 20\n",
                marker.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:1'}}}}]\n\
                 users: [{{name: u, user: {{exec: {{apiVersion: client.authentication.k8s.io/v1, \
                 command: {}, interactiveMode: IfAvailable}}}}}}]\n\
                 contexts: [{{name: x, context: {{cluster: c, user: u, namespace: ns}}}}]\n\
                 current-context: x\n",
                plugin.display()
            ),
        )
        .unwrap();
        let kubeconfig = kubeconfig.to_str().unwrap();
        let run = scalar_admin(&["-c", "check_paused", "-r", "rel", "--kubeconfig", kubeconfig]).await;
        run.assert_status(1);
        assert!(
            run.stderr.contains("the Kubernetes API did not answer within 10s"),
            "{}",
            run.stderr
        );
        assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "pipe");
    })
    .await
}

/// Every request to the API server names this tool and its version.
#[tokio::test]
async fn requests_to_the_api_server_carry_a_user_agent_naming_the_tool() {
    bounded(async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = format!("http://{}", listener.local_addr().unwrap());
        let dir = crate::exec::scratch("kube-user-agent");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n\
                 users: [{{name: u, user: {{token: t}}}}]\n\
                 contexts: [{{name: x, context: {{cluster: c, user: u, namespace: ns}}}}]\n\
                 current-context: x\n"
            ),
        )
        .unwrap();
        let kubeconfig = kubeconfig.to_str().unwrap().to_owned();
        let run = tokio::spawn(async move {
            scalar_admin(&["-c", "check_paused", "-r", "rel", "--kubeconfig", &kubeconfig]).await
        });
        // The first request: read its head, answer 403 so that the run ends.
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            head.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}"#;
        let answer = format!(
            "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).await.unwrap();
        drop(stream);
        drop(listener);
        let run = run.await.unwrap();
        run.assert_status(1);
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let expected = format!("user-agent: scalar-admin/{}", env!("CARGO_PKG_VERSION"));
        assert!(head.contains(&expected), "{head}");
    })
    .await
}

/// One window over releases in two clusters (two control planes in this process): each
/// `-r` names its kubeconfig context, every pod is paused in one fan-out and shares one
/// period, and each group's snapshot comes from its own API server (the namespace of
/// either release exists only in its own cluster).
#[tokio::test]
async fn a_window_over_two_clusters_shares_one_period_with_each_snapshot_from_its_own_api_server() {
    bounded(async {
        let Some((cluster_a, ns_a)) = setup("k8s-multi-a").await else {
            return;
        };
        let Some(cluster_b) = KubeCluster::start().await else {
            return;
        };
        let ns_b = cluster_b.namespace("k8s-multi-b").await;
        let mut ledgers = cluster_a.admin_pods(2).await;
        let mut auditors = cluster_b.admin_pods(2).await;
        let ledger = ns_a.release("ledger", "ledger").create(&ledgers).await;
        let auditor = ns_b.release("auditor", "auditor").create(&auditors).await;
        ns_a.grant_tester("multi", SCALAR_ADMIN_RULES).await;
        ns_b.grant_tester("multi", SCALAR_ADMIN_RULES).await;
        // One kubeconfig, a context per cluster, as an operator's would be.
        let dir = crate::exec::scratch("k8s-multi");
        let kubeconfig = dir.join("kubeconfig");
        let cluster = |name: &str, c: &KubeCluster| {
            format!(
                "{{name: {name}, cluster: {{server: '{}', certificate-authority: '{}'}}}}",
                c.api_url(),
                c.ca_file().display()
            )
        };
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{}, {}]\n\
                 users: [{{name: ua, user: {{token: '{}'}}}}, {{name: ub, user: {{token: '{}'}}}}]\n\
                 contexts: [{{name: 'ops@a', context: {{cluster: a, user: ua}}}}, \
                 {{name: 'ops@b', context: {{cluster: b, user: ub}}}}]\n\
                 current-context: 'ops@a'\n",
                cluster("a", cluster_a),
                cluster("b", &cluster_b),
                cluster_a.tester_token(),
                cluster_b.tester_token(),
            ),
        )
        .unwrap();
        let in_a = format!("ops@a:{}/ledger", ns_a.name());
        let in_b = format!("ops@b:{}/auditor", ns_b.name());
        let run = scalar_admin(&[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "-c",
            "window",
            "-r",
            &in_a,
            "-r",
            &in_b,
            "--duration",
            "100ms",
            "--output",
            "json",
        ])
        .await
        .success();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(doc["windows"].as_array().unwrap().len(), 1, "one period: {doc}");
        let window = &doc["windows"][0];
        assert_eq!(window["verdict"], "VALID", "{doc}");
        let groups = window["detail"]["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 2);
        for (group, release) in groups.iter().zip([&ledger, &auditor]) {
            let names: BTreeSet<&str> = group["snapshot"]["pods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let expected = release.pod_names();
            assert_eq!(
                names,
                expected.iter().map(String::as_str).collect(),
                "{group}"
            );
        }
        for pod in ledgers.iter().chain(&auditors) {
            assert!(!pod.gate().is_paused());
        }
        // Every pod got exactly one Pause, the same window's.
        for pod in ledgers.iter_mut().chain(auditors.iter_mut()) {
            let pauses = pod
                .take_calls()
                .into_iter()
                .filter(|c| matches!(c, Call::Pause { .. }))
                .count();
            assert_eq!(pauses, 1);
        }
    })
    .await
}

/// The labels of the journal's window objects.
const WINDOWS: &str =
    "app.kubernetes.io/managed-by=scalar-admin,app.kubernetes.io/component=backup-window";

/// The journal's window objects in `ns`, oldest window first.
async fn window_objects(ns: &TestNamespace) -> Vec<ConfigMap> {
    let mut objects = ns
        .api::<ConfigMap>()
        .list(&ListParams::default().labels(WINDOWS))
        .await
        .expect("list configmaps")
        .items;
    objects.sort_by_key(|o| label(o, "scalar-admin/window-start"));
    objects
}

fn label(object: &ConfigMap, key: &str) -> String {
    object
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key).cloned())
        .unwrap_or_default()
}

/// Each object's verdict label, in order.
fn verdicts(objects: &[ConfigMap]) -> Vec<String> {
    objects
        .iter()
        .map(|o| label(o, "scalar-admin/verdict"))
        .collect()
}

fn entry(object: &ConfigMap, name: &str) -> Value {
    object
        .data
        .as_ref()
        .and_then(|d| d.get(name))
        .map_or(Value::Null, |text| serde_json::from_str(text).unwrap())
}

/// `--journal k8s:NS`: each window is one ConfigMap, created as it opens and closed with
/// its verdict and restore point as labels, small (a count and a digest, not the pods);
/// the retention deletes the oldest; HISTORY reads the VALID ones from the cluster.
#[tokio::test]
async fn windows_are_kept_as_configmaps_retained_and_read_back_by_history() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-journal").await else {
            return;
        };
        let pods = cluster.admin_pods(2).await;
        let list = crate::exec::list(&pods);
        let journal = format!("k8s:{}", ns.name());
        let window = |exec: &'static str| {
            let (list, journal) = (list.clone(), journal.clone());
            let ns = &ns;
            async move {
                cli(
                    ns,
                    User::Admin,
                    &[
                        "-c",
                        "window",
                        "-a",
                        &list,
                        "--duration",
                        "100ms",
                        "--exec",
                        exec,
                        "--journal",
                        &journal,
                        "--journal-retain",
                        "2",
                    ],
                )
                .await
            }
        };
        window("true").await.success();
        let first = window_objects(&ns).await;
        assert_eq!(first.len(), 1);
        window("exit 1").await.assert_status(1);
        window("true").await.success();

        // Three windows, two retained: the first is gone.
        let objects = window_objects(&ns).await;
        let names: Vec<_> = objects.iter().map(|o| o.metadata.name.clone()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(!names.contains(&first[0].metadata.name), "{names:?}");
        assert_eq!(verdicts(&objects), ["INVALID", "VALID"]);
        assert_eq!(
            label(&objects[0], "scalar-admin/restore-point"),
            "",
            "not one"
        );
        let valid = &objects[1];
        let (open, close) = (entry(valid, "open"), entry(valid, "close"));
        assert_eq!(open["pod_count"], 2, "{open}");
        assert!(
            open.get("pods").is_none(),
            "no pod list in the cluster: {open}"
        );
        assert_eq!(
            open["snapshot_digest"].as_str().unwrap().len(),
            64,
            "{open}"
        );
        assert_eq!(close["verdict"], "VALID");
        // What it holds does not grow with the pods: a count and a digest.
        let size = serde_json::to_vec(valid).unwrap().len();
        eprintln!("a VALID window's object: {size} bytes as JSON");
        assert!(size < 2048, "{size} bytes");
        assert_eq!(
            open["pause_completed_at_us"],
            close["pause_completed_at_us"]
        );
        assert!(
            entry(&objects[0], "close")["reasons"][0]
                .as_str()
                .unwrap()
                .contains("--exec exit 1")
        );
        // The restore point, as a label value: 20261204T030005.123456Z.
        let point = label(valid, "scalar-admin/restore-point");
        let micros = close["midpoint_us"].as_i64().unwrap();
        assert_eq!(
            point,
            format!(
                "{}.{:06}Z",
                jiff::Timestamp::from_microsecond(micros)
                    .unwrap()
                    .strftime("%Y%m%dT%H%M%S"),
                micros % 1_000_000
            )
        );

        // Another journal of the namespace (another product's CronJob) is apart: its
        // window is neither retained away nor listed.
        let other = format!("k8s:{}/other", ns.name());
        let args = [
            "-c",
            "window",
            "-a",
            &list,
            "--duration",
            "100ms",
            "--journal",
            &other,
        ];
        cli(&ns, User::Admin, &args).await.success();
        window("true").await.success();
        let objects = window_objects(&ns).await;
        let journals: Vec<String> = objects
            .iter()
            .map(|o| label(o, "scalar-admin/journal"))
            .collect();
        assert_eq!(journals, ["default", "other", "default"]);
        let (older, close) = (&objects[0], entry(&objects[2], "close"));
        assert_eq!(label(older, "scalar-admin/verdict"), "VALID");

        let run = cli(
            &ns,
            User::Admin,
            &["-c", "history", "--journal", &journal, "--output", "json"],
        )
        .await
        .success();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        let windows = doc["windows"].as_array().unwrap();
        assert_eq!(
            windows.len(),
            2,
            "only the VALID ones, of this journal: {doc}"
        );
        assert_eq!(windows[0]["midpoint_us"], close["midpoint_us"]);
        assert_eq!(windows[0]["pod_count"], 2);
        assert_eq!(doc["journal"], journal);
        assert!(run.stderr.is_empty(), "{}", run.stderr);
    })
    .await
}

/// Starts a WINDOW over `list` with the namespace's journal and `extra` flags, as its
/// admin, and waits (on a watch, not a poll) until its window's object is created.
async fn start_window_seen_open(
    ns: &TestNamespace,
    list: &str,
    extra: &[&str],
) -> (crate::util::Child, ConfigMap) {
    use futures::{StreamExt as _, TryStreamExt as _};
    use scalar_admin_rig::kube_rs::api::{WatchEvent, WatchParams};
    let mut events = ns
        .api::<ConfigMap>()
        .watch(&WatchParams::default().labels(WINDOWS), "0")
        .await
        .unwrap()
        .boxed();
    let (journal, kubeconfig) = (format!("k8s:{}", ns.name()), ns.kubeconfig(User::Admin));
    let mut args = vec!["--kubeconfig", kubeconfig.to_str().unwrap(), "-c", "window"];
    args.extend_from_slice(&["-a", list, "--journal", &journal]);
    args.extend_from_slice(extra);
    let child = crate::util::start_scalar_admin(&args);
    let opened = loop {
        if let Some(WatchEvent::Added(object)) = events.try_next().await.unwrap() {
            break object;
        }
    };
    (child, opened)
}

/// Two windows at once on one journal: each writes only its own object, and the second
/// one's retention (one window) does not delete the first while it may still hold it.
#[tokio::test]
async fn two_concurrent_windows_are_both_recorded_and_a_held_one_outlives_the_others_retention() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-journal-two").await else {
            return;
        };
        let pods = cluster.admin_pods(4).await;
        let (a, b) = (crate::exec::list(&pods[..2]), crate::exec::list(&pods[2..]));
        let journal = format!("k8s:{}", ns.name());
        // The first holds until told to stop.
        let (first, held) = start_window_seen_open(&ns, &a, &["--duration", "10m"]).await;
        let args = [
            "-c",
            "window",
            "-a",
            &b,
            "--duration",
            "100ms",
            "--journal",
            &journal,
            "--journal-retain",
            "1",
        ];
        cli(&ns, User::Admin, &args).await.success();
        let objects = window_objects(&ns).await;
        assert_eq!(verdicts(&objects), ["OPEN", "VALID"], "{objects:?}");
        assert_eq!(objects[0].metadata.name, held.metadata.name);

        first.signal("TERM");
        first.wait().await.assert_status(1);
        let objects = window_objects(&ns).await;
        assert_eq!(verdicts(&objects), ["FAILED", "VALID"], "{objects:?}");
        assert_eq!(paused(&pods), 0);
    })
    .await
}

/// A window whose tool and guardian are both SIGKILLed stays open in the cluster:
/// reported as still held until its bound (the lease) passes, then as never closed, by
/// HISTORY and by the next WINDOW.
#[tokio::test]
async fn a_window_left_open_by_a_killed_tool_and_guardian_is_reported_once_its_bound_passes() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-journal-open").await else {
            return;
        };
        let pods = cluster.admin_pods(2).await;
        let (list, next) = (crate::exec::list(&pods[..1]), crate::exec::list(&pods[1..]));
        let journal = format!("k8s:{}", ns.name());
        let extra = ["--duration", "6s", "--max-hold", "7s"];
        let (child, opened) = start_window_seen_open(&ns, &list, &extra).await;
        assert_eq!(label(&opened, "scalar-admin/verdict"), "OPEN");
        // Neither may act: the tool stopped first, then the guardian and the tool killed.
        let tool = child.pid();
        let guardians = crate::guardian::children(tool);
        crate::guardian::kill(tool, "STOP");
        for pid in guardians {
            crate::guardian::kill(pid, "KILL");
        }
        crate::guardian::kill(tool, "KILL");
        child.wait().await;

        let args = ["-c", "history", "--journal", &journal];
        let history = || cli(&ns, User::Admin, &args);
        let run = history().await.success();
        assert!(run.stderr.contains("is still open"), "{}", run.stderr);
        assert!(!run.stderr.contains("never closed"), "{}", run.stderr);

        let held_until: jiff::Timestamp =
            opened.metadata.annotations.as_ref().unwrap()["scalar-admin/held-until"]
                .parse()
                .unwrap();
        // The bound is a time, not an event: wait for it to pass.
        let left = held_until.duration_since(jiff::Timestamp::now());
        if let Ok(left) = Duration::try_from(left) {
            tokio::time::sleep(left + Duration::from_millis(10)).await;
        }
        let name = opened.metadata.name.as_deref().unwrap();
        let run = history().await.success();
        assert!(
            run.stderr.contains("was never closed") && run.stderr.contains(name),
            "{}",
            run.stderr
        );
        // The next window says so before it pauses anything, and goes on.
        let args = [
            "-c",
            "window",
            "-a",
            &next,
            "--duration",
            "100ms",
            "--journal",
            &journal,
        ];
        let run = cli(&ns, User::Admin, &args).await.success();
        assert!(
            run.stderr.contains("was never closed") && run.stderr.contains(name),
            "{}",
            run.stderr
        );
        // The operator's way out.
        scalar_admin(&["-c", "unpause", "-a", &list])
            .await
            .success();
    })
    .await
}

/// A Role without the journal's verbs on ConfigMaps stops a WINDOW with one line naming
/// the verb and the namespace, before any pod is contacted.
#[tokio::test]
async fn a_role_without_the_journal_verbs_is_refused_before_any_pause() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-journal-rbac").await else {
            return;
        };
        let mut pods = cluster.admin_pods(1).await;
        let list = crate::exec::list(&pods);
        ns.grant_tester("no-journal", SCALAR_ADMIN_RULES).await;
        let journal = format!("k8s:{}", ns.name());
        let run = cli(
            &ns,
            User::Tester,
            &[
                "-c",
                "window",
                "-a",
                &list,
                "--duration",
                "100ms",
                "--journal",
                &journal,
            ],
        )
        .await;
        run.assert_status(1);
        let line = format!("forbidden to create configmaps in namespace {}", ns.name());
        assert!(run.stderr.contains(&line), "{}", run.stderr);
        assert!(run.stderr.contains("nothing was paused"), "{}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(pods[0].take_calls().is_empty(), "a pod was contacted");

        // With them, the same window is recorded.
        let mut rules = SCALAR_ADMIN_RULES.to_vec();
        rules.extend_from_slice(JOURNAL_RULES);
        ns.grant_tester("no-journal", &rules).await;
        cli(
            &ns,
            User::Tester,
            &[
                "-c",
                "window",
                "-a",
                &list,
                "--duration",
                "100ms",
                "--journal",
                &journal,
            ],
        )
        .await
        .success();
        assert_eq!(window_objects(&ns).await.len(), 1);
    })
    .await
}

/// Under exactly the Role of Scalar's chart for Scalar Admin for Kubernetes, bound to
/// the Job's ServiceAccount, the drop-in pauses a Deployment's release and a
/// StatefulSet's without one request the Role forbids, as the API server's audit log
/// shows (no 403 among the requests its User-Agent names), asking only for what its
/// mode reads; and nothing it writes, on success or failure, is a Rust debug dump.
#[tokio::test]
async fn under_its_charts_role_the_drop_in_asks_nothing_the_role_forbids() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-sak-role").await else {
            return;
        };
        let deployment_pods = cluster.admin_pods(2).await;
        ns.release("dep", "scalardb-cluster")
            .named_target_port("admin")
            .create(&deployment_pods)
            .await;
        let set_pods = cluster.admin_pods(2).await;
        ns.release("sts", "scalardb-cluster")
            .statefulset()
            .create(&set_pods)
            .await;
        let kubeconfig = ns.service_account_kubeconfig("sak").await;
        ns.grant_service_account("sak-chart", "sak", SAK_CHART_RULES)
            .await;
        let env = [("KUBECONFIG", kubeconfig.to_str().unwrap())];
        let link = drop_in();
        let link = link.to_str().unwrap();
        let debug_dump = |text: &str| {
            ["KubeGroup", "Some(", "None", " { ", "\\\"", "Error {"]
                .iter()
                .any(|s| text.contains(s))
        };
        for (release, pods) in [("dep", &deployment_pods), ("sts", &set_pods)] {
            let run =
                run_program_env(link, &["-r", release, "-n", ns.name(), "-d", "100"], &env).await;
            run.assert_status(0);
            let lower = run.stderr.to_lowercase();
            assert!(
                !lower.contains("forbidden") && !lower.contains("403") && !lower.contains("warn"),
                "{release}: {}",
                run.stderr
            );
            assert!(!debug_dump(&run.stderr), "{release}: {}", run.stderr);
            let line: Value = serde_json::from_str(&run.stdout).unwrap();
            assert_eq!(line["helm_release_name"], release, "{line}");
            assert_eq!(paused(pods), 0, "{release}");
        }
        // A failure's message is words too.
        let run = run_program_env(link, &["-r", "nope", "-n", ns.name()], &env).await;
        run.assert_status(1);
        assert!(run.stderr.contains("nope"), "{}", run.stderr);
        assert!(!debug_dump(&run.stderr), "{}", run.stderr);

        let audited = ns.audited(&ns.service_account_user("sak")).await;
        let agent = format!("scalar-admin/{}", env!("CARGO_PKG_VERSION"));
        let tool: Vec<_> = audited
            .iter()
            .filter(|a| a.user_agent.starts_with(&agent))
            .collect();
        assert!(!tool.is_empty(), "no request of the tool in the audit log");
        let refused: Vec<String> = tool
            .iter()
            .filter(|a| a.code == 403)
            .map(ToString::to_string)
            .collect();
        assert!(
            refused.is_empty(),
            "refused by the chart's Role: {refused:#?}"
        );
        let asked: BTreeSet<String> = tool
            .iter()
            .map(|a| format!("{} {}", a.verb, a.resource))
            .collect();
        let allowed = ["list pods", "list services", "list apps/deployments"];
        assert!(
            asked.iter().all(|a| allowed.contains(&a.as_str())),
            "asked {asked:?}"
        );
    })
    .await
}

/// Mid-rollout, the new pods' template moved the admin port: the Service's `targetPort`
/// names it, and the EndpointSlice controller puts the old pods and the new ones in
/// slices of their own, each mapping the port's name to its own number. A window
/// reaches every pod at its own port: each gets its Pause and its Unpause.
#[tokio::test]
async fn a_window_reaches_each_pod_at_the_port_of_its_own_endpoint_slice() {
    bounded(async {
        let Some((cluster, ns)) = setup("k8s-two-ports").await else {
            return;
        };
        let (old_port, new_port) = (cluster.admin_port(), cluster.second_admin_port());
        let mut pods = cluster.admin_pods(2).await;
        pods.extend(cluster.admin_pods_at(2, new_port, |_, b| b).await);
        let release = ns
            .release("db", "scalardb-cluster")
            .named_target_port("admin")
            .create(&pods)
            .await;
        let slices = release.endpoint_slices().await;
        assert_eq!(slices.len(), 2);
        let ports: BTreeSet<i32> = slices
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter(|p| p.name.as_deref() == Some(release.port_name()))
            .filter_map(|p| p.port)
            .collect();
        assert_eq!(
            ports,
            BTreeSet::from([i32::from(old_port), i32::from(new_port)])
        );
        let run = cli(
            &ns,
            User::Admin,
            &[
                "-c",
                "window",
                "-r",
                "db",
                "--duration",
                "100ms",
                "--output",
                "json",
            ],
        )
        .await
        .success();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        let window = &doc["windows"][0];
        assert_eq!(window["verdict"], "VALID", "{doc}");
        // The paused time each pod saw, beside the hold asked for.
        assert_eq!(window["hold_us"], 100_000, "{window}");
        let per_pod = window["paused_per_pod"].as_array().unwrap();
        assert_eq!(per_pod.len(), 4, "{window}");
        for pod in per_pod {
            assert!(
                pod["at_least_us"].as_i64().unwrap() <= pod["at_most_us"].as_i64().unwrap(),
                "{pod}"
            );
        }
        for pod in &mut pods {
            let calls = pod.take_calls();
            assert!(
                calls.iter().any(|c| matches!(c, Call::Pause { .. }))
                    && calls.contains(&Call::Unpause),
                "{}: {calls:?}",
                pod.addr()
            );
        }
        assert_eq!(paused(&pods), 0);
    })
    .await
}
