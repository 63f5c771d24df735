//! TLS with certificates made in the test: verification is always on.

use std::time::Duration;

use scalar_admin::{
    ClientConfig, DnsConfig, Error, Fleet, Host, PauseOptions, Target, Tls, resolve_srv,
};
use scalar_admin_rig::{Ca, DnsServer, Fault, HostilePod, Pod};

use crate::util::{bounded, scalar_admin};

fn config(tls: Tls) -> ClientConfig {
    ClientConfig::default()
        .tls(tls)
        .connect_timeout(Duration::from_secs(2))
        .call_timeout(Duration::from_secs(5))
}

async fn pause(pod: &Pod, config: ClientConfig) -> Result<(), Error> {
    let mut fleet = Fleet::connect(vec![pod.target()], config).await;
    fleet.pause(PauseOptions::default()).await?;
    fleet.unpause().await?;
    Ok(())
}

fn connect_error(err: Error) -> String {
    let Error::Pause { pause, rollback } = &err else {
        panic!("{err:?}")
    };
    assert!(
        rollback.is_none(),
        "nothing was sent, so nothing to roll back"
    );
    pause.failures().next().unwrap().error().unwrap().chain()
}

#[tokio::test]
async fn a_pod_certified_by_the_given_ca_is_paused() {
    bounded(async {
        let ca = Ca::new("test CA");
        let mut pod = Pod::start_tls(&ca.server_cert(&["127.0.0.1"])).await;
        pause(&pod, config(Tls::with_ca_pem(ca.cert_pem()).unwrap()))
            .await
            .unwrap();
        // The connection probe, Pause, Unpause.
        assert_eq!(pod.take_calls().len(), 3);
    })
    .await
}

#[tokio::test]
async fn a_wrong_ca_is_refused_and_nothing_is_paused() {
    bounded(async {
        let ca = Ca::new("test CA");
        let other = Ca::new("another CA");
        let mut pod = Pod::start_tls(&ca.server_cert(&["127.0.0.1"])).await;
        let err = pause(&pod, config(Tls::with_ca_pem(other.cert_pem()).unwrap()))
            .await
            .unwrap_err();
        let message = connect_error(err);
        assert!(
            message.contains("cannot connect") && message.to_lowercase().contains("certificate"),
            "{message}"
        );
        assert!(pod.take_calls().is_empty());
    })
    .await
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    bounded(async {
        let ca = Ca::new("test CA");
        let pod = Pod::start_tls(&ca.expired_server_cert(&["127.0.0.1"])).await;
        let err = pause(&pod, config(Tls::with_ca_pem(ca.cert_pem()).unwrap()))
            .await
            .unwrap_err();
        let message = connect_error(err);
        assert!(message.to_lowercase().contains("expired"), "{message}");
    })
    .await
}

#[tokio::test]
async fn override_authority_accepts_a_certificate_for_another_name() {
    bounded(async {
        let ca = Ca::new("test CA");
        let pod = Pod::start_tls(&ca.server_cert(&["scalardb.scalar.test"])).await;
        let tls = Tls::with_ca_pem(ca.cert_pem()).unwrap();

        let err = pause(&pod, config(tls.clone())).await.unwrap_err();
        let message = connect_error(err);
        assert!(
            message.to_lowercase().contains("not valid for"),
            "{message}"
        );

        let err = pause(
            &pod,
            config(tls.clone().authority("wrong.scalar.test").unwrap()),
        )
        .await
        .unwrap_err();
        assert!(connect_error(err).to_lowercase().contains("certificate"));

        pause(&pod, config(tls.authority("scalardb.scalar.test").unwrap()))
            .await
            .unwrap();
    })
    .await
}

#[tokio::test]
async fn no_plaintext_fallback_either_way() {
    bounded(async {
        let ca = Ca::new("test CA");
        let mut tls = Pod::start_tls(&ca.server_cert(&["127.0.0.1"])).await;
        let plain_config = ClientConfig::default()
            .connect_timeout(Duration::from_secs(2))
            .call_timeout(Duration::from_secs(2));
        pause(&tls, plain_config).await.unwrap_err();
        assert!(tls.take_calls().is_empty());

        let mut plain = Pod::start().await;
        pause(&plain, config(Tls::with_ca_pem(ca.cert_pem()).unwrap()))
            .await
            .unwrap_err();
        assert!(plain.take_calls().is_empty());
    })
    .await
}

#[test]
fn bad_pem_is_invalid_input_and_never_echoed() {
    let key_like = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n";
    for pem in [
        "",
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        key_like,
    ] {
        let err = Tls::with_ca_pem(pem).unwrap_err().to_string();
        assert!(!err.contains("MIIB"), "key material in the message: {err}");
        assert!(err.starts_with("CA certificate"), "{err}");
    }
    let err = Tls::with_ca_file("/nonexistent/ca.pem")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    let _ = Target::from_socket_addr("127.0.0.1:1".parse().unwrap());
}

#[tokio::test]
async fn requests_carry_the_overridden_authority_a_user_agent_and_the_time_left() {
    bounded(async {
        let ca = Ca::new("test CA");
        let pod =
            HostilePod::start_tls(Fault::None, &ca.server_cert(&["ledger.scalar.test"])).await;
        let tls = Tls::with_ca_pem(ca.cert_pem())
            .unwrap()
            .authority("ledger.scalar.test")
            .unwrap();
        let mut fleet = Fleet::connect(vec![pod.target()], config(tls)).await;
        fleet.pause(PauseOptions::default()).await.unwrap();
        let seen = pod.seen();
        assert_eq!(seen.len(), 2, "the probe, the Pause: {seen:?}");
        for request in &seen {
            assert_eq!(request.authority.as_deref(), Some("ledger.scalar.test"));
            let agent = request.user_agent.as_deref().unwrap();
            assert_eq!(agent, format!("scalar-admin/{}", env!("CARGO_PKG_VERSION")));
            // The call deadline is 5 s: what is sent is what is left of it, in a unit
            // fine enough that it is never 0. A Pause adds how long a rollback waits
            // for its answer past the deadline: the pods' 30 s wait limit plus 5 s.
            let extra: u64 = if request.path.ends_with("/Pause") {
                35_000_000_000
            } else {
                0
            };
            let timeout = request.grpc_timeout.as_deref().unwrap();
            let (value, unit) = timeout.split_at(timeout.len() - 1);
            let value: u64 = value.parse().unwrap();
            let nanos = value
                * match unit {
                    "n" => 1,
                    "u" => 1_000,
                    "m" => 1_000_000,
                    "S" => 1_000_000_000,
                    other => panic!("unit {other}"),
                };
            assert!(value > 0 && value < 100_000_000, "{timeout}");
            assert!(
                nanos <= 5_000_000_000 + extra && nanos > 1_000_000_000 + extra,
                "{}: {timeout}",
                request.path
            );
        }
    })
    .await
}

const HEADLESS: &str = "scalardb-headless.ns-scalar.svc.cluster.local";

/// A wildcard certificate for the headless service's pods, as a cluster issues it: no IP
/// address in it.
fn wildcard_cert(ca: &Ca) -> scalar_admin_rig::ServerCert {
    ca.server_cert(&[&format!("*.{HEADLESS}")])
}

/// Publishes one SRV record for a pod at `addr` under the name Kubernetes gives a pod
/// without a host name (`127-0-0-1.<service>`). Returns the SRV name and the target
/// host name.
fn publish(dns: &DnsServer, addr: std::net::SocketAddr) -> (String, String) {
    let host = format!("{}.{HEADLESS}", addr.ip().to_string().replace('.', "-"));
    dns.set_address(&host, addr.ip());
    let srv = format!("_scalardb._tcp.{HEADLESS}");
    dns.set_srv(&srv, vec![(format!("{host}."), addr.port())]);
    (srv, host)
}

fn dns_config(dns: &DnsServer) -> DnsConfig {
    DnsConfig::default()
        .name_server(dns.addr())
        .search(Vec::<String>::new())
        .ndots(1)
        .timeout(Duration::from_secs(2))
        .attempts(1)
}

#[tokio::test]
async fn with_srv_the_target_host_name_is_verified_and_sent() {
    bounded(async {
        let ca = Ca::new("test CA");
        let mut pod = Pod::start_tls(&wildcard_cert(&ca)).await;
        let dns = DnsServer::start().await;
        let (srv, host) = publish(&dns, pod.addr());
        let targets = resolve_srv(&srv, &dns_config(&dns)).await.unwrap();
        let [target] = &targets[..] else {
            panic!("{targets:?}")
        };
        assert_eq!(target.tls_name(), &Host::Name(host.clone()));
        assert_eq!(target.authority(), format!("{host}:{}", pod.addr().port()));
        // Reports still name the SRV target and the address connected to.
        assert_eq!(target.name(), format!("{host}:{}", pod.addr().port()));
        assert_eq!(target.address(), pod.addr().to_string());

        let tls = Tls::with_ca_pem(ca.cert_pem()).unwrap();
        let mut fleet = Fleet::connect(targets.clone(), config(tls)).await;
        assert_eq!(fleet.unreachable().count(), 0);
        fleet.pause(PauseOptions::default()).await.unwrap();
        assert!(pod.gate().is_paused());
        let check = fleet.check_paused().await.unwrap();
        assert_eq!(check.pods()[0].paused(), Some(true));
        fleet.unpause().await.unwrap();
        assert!(!pod.gate().is_paused());
        // The probe, Pause, CheckPaused, Unpause.
        assert_eq!(pod.take_calls().len(), 4);

        // The authority sent is the SRV target host name and the port.
        let hostile = HostilePod::start_tls(Fault::None, &wildcard_cert(&ca)).await;
        let (srv, host) = publish(&dns, hostile.addr());
        let targets = resolve_srv(&srv, &dns_config(&dns)).await.unwrap();
        let tls = Tls::with_ca_pem(ca.cert_pem()).unwrap();
        let mut fleet = Fleet::connect(targets, config(tls)).await;
        fleet.pause(PauseOptions::default()).await.unwrap();
        let seen = hostile.seen();
        assert_eq!(seen.len(), 2, "the probe, the Pause: {seen:?}");
        let expected = format!("{host}:{}", hostile.addr().port());
        for request in &seen {
            assert_eq!(request.authority.as_deref(), Some(expected.as_str()));
        }
    })
    .await
}

#[tokio::test]
async fn by_address_the_same_pod_is_checked_against_the_ip_and_refused() {
    bounded(async {
        let ca = Ca::new("test CA");
        let mut pod = Pod::start_tls(&wildcard_cert(&ca)).await;
        assert_eq!(
            pod.target().tls_name(),
            &Host::Ip(pod.addr().ip()),
            "-a with an IP: the IP is the name"
        );
        let err = pause(&pod, config(Tls::with_ca_pem(ca.cert_pem()).unwrap()))
            .await
            .unwrap_err();
        let message = connect_error(err);
        assert!(
            message.contains("cannot connect: TLS handshake failed")
                && message.to_lowercase().contains("not valid for"),
            "{message}"
        );
        assert!(pod.take_calls().is_empty());
        // A host name as given is the name checked.
        let named: Target = format!("Pod-0.{HEADLESS}:1").parse().unwrap();
        assert_eq!(named.tls_name(), &Host::Name(format!("pod-0.{HEADLESS}")));
        assert_eq!(named.authority(), format!("pod-0.{HEADLESS}:1"));
    })
    .await
}

#[tokio::test]
async fn override_authority_wins_over_the_srv_host_name() {
    bounded(async {
        let ca = Ca::new("test CA");
        let dns = DnsServer::start().await;
        let pod =
            HostilePod::start_tls(Fault::None, &ca.server_cert(&["ledger.scalar.test"])).await;
        let (srv, _) = publish(&dns, pod.addr());
        let targets = resolve_srv(&srv, &dns_config(&dns)).await.unwrap();
        let tls = Tls::with_ca_pem(ca.cert_pem()).unwrap();

        // The SRV host name is not on this certificate.
        let fleet = Fleet::connect(targets.clone(), config(tls.clone())).await;
        let (_, error) = fleet.unreachable().next().expect("refused");
        assert!(
            error.chain().to_lowercase().contains("not valid for"),
            "{}",
            error.chain()
        );
        assert!(pod.seen().is_empty());

        let tls = tls.authority("ledger.scalar.test").unwrap();
        let mut fleet = Fleet::connect(targets, config(tls)).await;
        fleet.pause(PauseOptions::default()).await.unwrap();
        let seen = pod.seen();
        assert_eq!(seen.len(), 2, "the probe, the Pause: {seen:?}");
        for request in &seen {
            assert_eq!(request.authority.as_deref(), Some("ledger.scalar.test"));
        }
    })
    .await
}

#[tokio::test]
async fn the_binary_verifies_srv_host_names_and_ips_as_the_java_tool_does() {
    bounded(async {
        let ca = Ca::new("test CA");
        let pod = Pod::start_tls(&wildcard_cert(&ca)).await;
        let dns = DnsServer::start().await;
        let (srv, host) = publish(&dns, pod.addr());
        let server = dns.addr().to_string();
        let pem = ca.cert_pem();
        let tls = ["--tls", "--ca-root-cert-pem", pem.as_str()];
        let srv_args = |command: &'static str| {
            let mut args = vec!["-c", command, "-s", srv.as_str(), "--dns-server"];
            args.push(server.as_str());
            args.extend(tls);
            args
        };

        scalar_admin(&srv_args("pause")).await.success();
        assert!(pod.gate().is_paused());
        let run = scalar_admin(&srv_args("check_paused")).await.success();
        let check: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
        let key = format!("{host}:{}", pod.addr().port());
        assert_eq!(check[&key], "true", "keyed by the SRV target: {}", run.stdout);
        scalar_admin(&srv_args("unpause")).await.success();
        assert!(!pod.gate().is_paused());

        // The same pod by its address: the IP is checked, and the certificate has none.
        let address = pod.addr().to_string();
        let mut args = vec!["-c", "pause", "-a", address.as_str()];
        args.extend(tls);
        let run = scalar_admin(&args).await;
        run.assert_status(1);
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with(&format!("{address}: cannot connect: TLS handshake failed"))),
            "{}",
            run.stderr
        );
        assert!(!pod.gate().is_paused());

        // --override-authority replaces the SRV host name.
        let mut args = srv_args("pause");
        args.extend(["--override-authority", "other.scalar.test"]);
        scalar_admin(&args).await.assert_status(1);
        assert!(!pod.gate().is_paused());
        let pod_name = format!("pod-9.{HEADLESS}");
        let mut args = srv_args("pause");
        args.extend(["--override-authority", pod_name.as_str()]);
        scalar_admin(&args).await.success();
        assert!(pod.gate().is_paused());
    })
    .await
}

/// The command a failed `--tls -s` run prints to unpause what it left paused works as
/// printed: the pods were found by SRV, so their certificates name them, not the
/// addresses connected to.
#[tokio::test]
async fn the_recovery_command_printed_for_tls_srv_pods_works_when_run() {
    bounded(async {
        let ca = Ca::new("test CA");
        let cert = wildcard_cert(&ca);
        let good = Pod::start_tls(&cert).await;
        let failing = Pod::builder()
            .tls(&cert.cert_pem, &cert.key_pem)
            .fail_pause(tonic::Code::Internal, "boom")
            .start()
            .await;
        let dns = DnsServer::start().await;
        let (srv, host) = publish(&dns, good.addr());
        dns.set_srv(
            &srv,
            vec![
                (format!("{host}."), good.addr().port()),
                (format!("{host}."), failing.addr().port()),
            ],
        );
        let dir = crate::exec::scratch("tls-recovery");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.cert_pem()).unwrap();
        let server = dns.addr().to_string();
        let ca_arg = ca_path.to_str().unwrap();
        let run = scalar_admin(&[
            "-c",
            "pause",
            "-s",
            &srv,
            "--dns-server",
            &server,
            "--tls",
            "--ca-root-cert-path",
            ca_arg,
            "--no-rollback",
        ])
        .await;
        run.assert_status(1);
        assert!(good.gate().is_paused(), "--no-rollback leaves it");
        let mut lines = run.stderr.lines();
        lines
            .find(|l| l.contains("to unpause them run:"))
            .unwrap_or_else(|| panic!("no recovery command\n{}", run.stderr));
        let printed = lines.next().unwrap().trim();
        assert!(
            printed.contains(&format!("--override-authority {host}")),
            "{printed}"
        );
        let runnable = printed.replace("scalar-admin ", &format!("{} ", crate::exec::BIN));
        let recovered = crate::util::run_program("sh", &["-c", &runnable]).await;
        recovered.assert_status(0);
        assert!(!good.gate().is_paused(), "{}", recovered.stderr);
    })
    .await
}

/// A CA given as a path that can be read once (`<(cat ca.pem)`) serves the whole window,
/// its guardian included: the guardian gets the certificates over its link.
#[tokio::test]
async fn a_ca_that_can_be_read_once_serves_a_window_and_its_guardian() {
    bounded(async {
        let ca = Ca::new("test CA");
        let pod = Pod::start_tls(&wildcard_cert(&ca)).await;
        let dns = DnsServer::start().await;
        let (srv, _) = publish(&dns, pod.addr());
        let dir = crate::exec::scratch("tls-once");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.cert_pem()).unwrap();
        let script = format!(
            "exec {} -c window -s {srv} --dns-server {} --duration 100ms --tls \
             --ca-root-cert-path <(cat {})",
            crate::exec::BIN,
            dns.addr(),
            ca_path.display()
        );
        let run = crate::util::run_program("bash", &["-c", &script]).await;
        run.assert_status(0);
        assert!(run.stdout.contains("Verdict: VALID"), "{}", run.stdout);
        assert!(!pod.gate().is_paused());
    })
    .await
}

/// A CA read once (`<(cat ca.pem)`) cannot be named again: the printed recovery command
/// says so with a placeholder, which the operator fills in, and then it works.
#[tokio::test]
async fn the_recovery_command_after_a_ca_read_once_names_a_placeholder_for_it() {
    bounded(async {
        let ca = Ca::new("test CA");
        let cert = ca.server_cert(&["pod.test"]);
        let good = Pod::start_tls(&cert).await;
        let failing = Pod::builder()
            .tls(&cert.cert_pem, &cert.key_pem)
            .fail_pause(tonic::Code::Internal, "boom")
            .start()
            .await;
        let dir = crate::exec::scratch("tls-recovery-once");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.cert_pem()).unwrap();
        let script = format!(
            "exec {} -c pause -a {},{} --tls --override-authority pod.test --no-rollback \
             --ca-root-cert-path <(cat {})",
            crate::exec::BIN,
            good.addr(),
            failing.addr(),
            ca_path.display()
        );
        let run = crate::util::run_program("bash", &["-c", &script]).await;
        run.assert_status(1);
        assert!(good.gate().is_paused(), "--no-rollback leaves it");
        let mut lines = run.stderr.lines();
        lines
            .find(|l| l.contains("to unpause them run:"))
            .unwrap_or_else(|| panic!("no recovery command\n{}", run.stderr));
        let printed = lines.next().unwrap().trim();
        assert!(
            printed.contains("--ca-root-cert-path '<the CA file>'"),
            "{printed}"
        );
        let runnable = printed
            .replace("scalar-admin ", &format!("{} ", crate::exec::BIN))
            .replace("'<the CA file>'", ca_path.to_str().unwrap());
        crate::util::run_program("sh", &["-c", &runnable])
            .await
            .assert_status(0);
        assert!(!good.gate().is_paused());
    })
    .await
}
