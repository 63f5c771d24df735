//! SRV discovery against a real DNS server on loopback, shaped like cluster DNS.

use std::net::SocketAddr;
use std::time::Duration;

use scalar_admin::{ClientConfig, DnsConfig, Fleet, PauseOptions, resolve_srv};
use scalar_admin_rig::{DnsMode, DnsServer, Pod};

use crate::util::bounded;

const NS: &str = "ns-scalar";

/// A resolver aimed at the test server, with a pod's search list and `ndots:5`.
fn pod_dns(server: &DnsServer) -> DnsConfig {
    DnsConfig::default()
        .name_server(server.addr())
        .search([
            format!("{NS}.svc.cluster.local"),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ])
        .ndots(5)
        .timeout(Duration::from_millis(500))
        .attempts(1)
}

async fn service(n: usize) -> (DnsServer, Vec<Pod>, String) {
    let dns = DnsServer::start().await;
    let mut pods = Vec::new();
    for _ in 0..n {
        pods.push(Pod::start().await);
    }
    let addrs: Vec<SocketAddr> = pods.iter().map(Pod::addr).collect();
    let name = dns.headless_service("scalardb", "scalardb", NS, &addrs);
    (dns, pods, name)
}

#[tokio::test]
async fn full_name_resolves_every_pod_keyed_by_target() {
    bounded(async {
        let (dns, pods, name) = service(3).await;
        let targets = resolve_srv(&name, &pod_dns(&dns)).await.unwrap();
        let names: Vec<_> = targets.iter().map(|t| t.name().to_owned()).collect();
        let expected: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "scalardb-{i}.scalardb-headless.{NS}.svc.cluster.local:{}",
                    p.addr().port()
                )
            })
            .collect();
        assert_eq!(names, expected);
        let addrs: Vec<_> = targets.iter().map(|t| t.socket_addr().unwrap()).collect();
        assert_eq!(addrs, pods.iter().map(Pod::addr).collect::<Vec<_>>());
    })
    .await
}

#[tokio::test]
async fn short_name_resolves_through_the_search_list_and_pauses_every_pod() {
    bounded(async {
        let (dns, pods, _) = service(2).await;
        let targets = resolve_srv("_scalardb._tcp.scalardb-headless", &pod_dns(&dns))
            .await
            .unwrap();
        assert_eq!(targets.len(), 2);
        let mut fleet = Fleet::connect(targets, ClientConfig::default()).await;
        fleet.pause(PauseOptions::default()).await.unwrap();
        assert!(pods.iter().all(|p| p.gate().is_paused()));
        let check = fleet.check_paused().await.unwrap();
        assert!(check.pods().iter().all(|p| p.paused() == Some(true)));
        fleet.unpause().await.unwrap();
        assert!(pods.iter().all(|p| !p.gate().is_paused()));
    })
    .await
}

#[tokio::test]
async fn targets_are_looked_up_when_the_answer_has_no_additionals() {
    bounded(async {
        let (dns, pods, name) = service(2).await;
        dns.set_additionals(false);
        let before = dns.queries();
        let targets = resolve_srv(&name, &pod_dns(&dns)).await.unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[1].socket_addr(), Some(pods[1].addr()));
        assert!(
            dns.queries() >= before + 3,
            "one SRV query and one address query per target"
        );
    })
    .await
}

#[tokio::test]
async fn duplicate_records_give_one_endpoint() {
    bounded(async {
        let (dns, pods, name) = service(1).await;
        let target = format!("scalardb-0.scalardb-headless.{NS}.svc.cluster.local");
        let port = pods[0].addr().port();
        dns.set_srv(&name, vec![(target.clone(), port), (target, port)]);
        assert_eq!(resolve_srv(&name, &pod_dns(&dns)).await.unwrap().len(), 1);
    })
    .await
}

#[tokio::test]
async fn failures_name_the_name_and_the_cause() {
    bounded(async {
        let (dns, _pods, name) = service(1).await;
        let config = pod_dns(&dns);

        let nx = format!("_nope._tcp.scalardb-headless.{NS}.svc.cluster.local");
        let err = resolve_srv(&nx, &config).await.unwrap_err().to_string();
        assert!(err.contains(&nx) && err.contains("NXDOMAIN"), "{err}");

        let empty = format!("_empty._tcp.scalardb-headless.{NS}.svc.cluster.local");
        dns.set_srv(&empty, vec![]);
        let err = resolve_srv(&empty, &config).await.unwrap_err().to_string();
        assert!(
            err.contains(&empty) && err.contains("holds no SRV record"),
            "{err}"
        );

        let target = format!("scalardb-0.scalardb-headless.{NS}.svc.cluster.local");
        dns.remove_address(&target);
        dns.set_additionals(false);
        let err = resolve_srv(&name, &config).await.unwrap_err().to_string();
        assert!(err.contains(&target) && err.contains("no address"), "{err}");
    })
    .await
}

#[tokio::test]
async fn server_failure_silence_and_truncation_are_errors() {
    bounded(async {
        let (dns, _pods, name) = service(2).await;
        let config = pod_dns(&dns);

        dns.set_mode(DnsMode::ServFail);
        let err = resolve_srv(&name, &config).await.unwrap_err();
        assert!(matches!(err, scalar_admin::Error::Discovery(_)));
        assert!(err.to_string().contains(&name), "{err}");

        dns.set_mode(DnsMode::Truncated);
        let err = resolve_srv(&name, &config).await.unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");

        dns.set_mode(DnsMode::Silent);
        let err = resolve_srv(&name, &config).await.unwrap_err().to_string();
        assert!(
            err.contains(&name) && err.contains("did not answer"),
            "{err}"
        );
    })
    .await
}

#[tokio::test]
async fn a_malformed_answer_fails_at_once_naming_the_server() {
    bounded(async {
        let (dns, _pods, name) = service(2).await;
        // Long time-outs: were the broken answer taken for silence, this would take
        // 30 s per try and the error would say so.
        let config = pod_dns(&dns).timeout(Duration::from_secs(30)).attempts(2);
        dns.set_mode(DnsMode::Malformed);
        let err = resolve_srv(&name, &config).await.unwrap_err();
        let scalar_admin::Error::Discovery(e) = &err else {
            panic!("{err}")
        };
        assert_eq!(
            e.kind(),
            &scalar_admin::DiscoveryErrorKind::Malformed(dns.addr().to_string()),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("malformed answer from {}", dns.addr())),
            "{err}"
        );
    })
    .await
}

#[tokio::test]
async fn three_hundred_pods_resolve_and_nine_hundred_do_not_fit_one_message() {
    bounded(async {
        let dns = DnsServer::start().await;
        let config = pod_dns(&dns);
        // Over UDP both answers are truncated and asked again over TCP. 300 records
        // fit one TCP message with their addresses; 900 do not fit even without them
        // (CoreDNS drops the additional records first, then sets TC).
        let name = dns.many_pods("scalardb", "big", NS, 300, 60051);
        let targets = resolve_srv(&name, &config).await.unwrap();
        assert_eq!(targets.len(), 300);
        assert!(targets.iter().all(|t| {
            t.name()
                .ends_with(&format!(".big-headless.{NS}.svc.cluster.local:60051"))
        }));

        let name = dns.many_pods("scalardb", "huge", NS, 900, 60051);
        let err = resolve_srv(&name, &config).await.unwrap_err();
        let scalar_admin::Error::Discovery(e) = &err else {
            panic!("{err}")
        };
        assert_eq!(
            e.kind(),
            &scalar_admin::DiscoveryErrorKind::Truncated,
            "{err}"
        );
        assert!(err.to_string().contains("about 850"), "{err}");
    })
    .await
}

#[tokio::test]
async fn malformed_names_are_rejected_before_any_query() {
    bounded(async {
        let dns = DnsServer::start().await;
        for bad in [
            "",
            "_scalardb._tcp..svc",
            "has space.svc",
            "-x._tcp.svc",
            &"a".repeat(64),
        ] {
            let err = resolve_srv(bad, &pod_dns(&dns)).await.unwrap_err();
            assert!(err.is_invalid_input(), "{bad:?}: {err}");
        }
        assert_eq!(dns.queries(), 0);
    })
    .await
}

#[tokio::test]
async fn an_unbounded_query_time_is_no_panic() {
    bounded(async {
        let (dns, pods, name) = service(1).await;
        let config = pod_dns(&dns).timeout(Duration::MAX).attempts(usize::MAX);
        let targets = resolve_srv(&name, &config).await.unwrap();
        assert_eq!(targets[0].socket_addr(), Some(pods[0].addr()));
    })
    .await
}
