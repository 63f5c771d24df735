//! TLS with certificates made in the test: verification is always on.

use std::time::Duration;

use scalar_admin::{ClientConfig, Error, Fleet, PauseOptions, Target, Tls};
use scalar_admin_rig::{Ca, Fault, HostilePod, Pod};

use crate::util::bounded;

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
            // fine enough that it is never 0.
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
            assert!(nanos <= 5_000_000_000 && nanos > 1_000_000_000, "{timeout}");
        }
    })
    .await
}
