//! TLS set-up: the roots a pod's certificate is verified against, and the name it must
//! carry. Verification is always on: with TLS there is never a plaintext fallback.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio_rustls::client::TlsStream;

use crate::dial::PodSocket;
use crate::error::{CallError, ConnectFailure, InvalidInput};
use crate::target::{Host, Target};

/// TLS settings: the CA certificates to trust and, optionally, the name to expect.
///
/// ```
/// # fn ca() -> String { rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap().cert.pem() }
/// use scalar_admin::Tls;
///
/// let tls = Tls::with_ca_pem(ca())?.authority("ledger.scalar.example")?;
/// # Ok::<(), scalar_admin::InvalidInput>(())
/// ```
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    authority: Option<Authority>,
}

/// An overridden authority: the `:authority` header, and the name the certificate must
/// carry (the host part).
#[derive(Debug, Clone)]
struct Authority {
    header: String,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    // Never print certificates: they clutter logs and are not ours to publish.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("authority", &self.authority.as_ref().map(|a| &a.header))
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS verified against the system's root certificates.
    pub fn system_roots() -> Result<Self, InvalidInput> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(InvalidInput::new(
                "system root certificates",
                "",
                "none found; give the CA with --ca-root-cert-path or --ca-root-cert-pem",
            ));
        }
        Self::with_roots(roots)
    }

    /// TLS verified against the CA certificates in `pem`.
    ///
    /// Fails unless `pem` holds at least one well-formed `CERTIFICATE` block, so a bad
    /// certificate is caught before any pod is contacted. The error never repeats the
    /// PEM text.
    pub fn with_ca_pem(pem: impl AsRef<[u8]>) -> Result<Self, InvalidInput> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |reason: String| InvalidInput::new("CA certificate", "<pem>", reason);
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem.as_ref()) {
            let cert = cert.map_err(|e| bad(format!("malformed PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("no CERTIFICATE block found".into()));
        }
        Self::with_roots(roots)
    }

    /// TLS verified against the CA certificates in the PEM file at `path`.
    pub fn with_ca_file(path: impl AsRef<std::path::Path>) -> Result<Self, InvalidInput> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let pem = std::fs::read(path)
            .map_err(|e| InvalidInput::new("CA certificate file", &shown, e.to_string()))?;
        Self::with_ca_pem(pem)
            .map_err(|e| InvalidInput::new("CA certificate file", &shown, e.reason()))
    }

    fn with_roots(roots: rustls::RootCertStore) -> Result<Self, InvalidInput> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| InvalidInput::new("TLS configuration", "", e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            authority: None,
        })
    }

    /// Uses `name` instead of the pod's [TLS name](Target::tls_name), as grpc-java's
    /// `overrideAuthority` does: it is sent as the `:authority` of every request, and its
    /// host part is the name expected in the server certificate. For pods whose
    /// certificates name the service rather than the pod. Unset by default.
    pub fn authority(mut self, name: &str) -> Result<Self, InvalidInput> {
        let bad = |reason: String| InvalidInput::new("authority", name, reason);
        let parsed: http::uri::Authority = name.parse().map_err(|e| bad(format!("{e}")))?;
        if parsed.as_str().contains('@') {
            return Err(bad("user information is not allowed".into()));
        }
        if let Some((_, port)) = parsed.as_str().rsplit_once(':')
            && !parsed.as_str().ends_with(']')
            && port.parse::<u16>().is_err()
        {
            return Err(bad("the port is not a number".into()));
        }
        let host = parsed.host().trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_owned()).map_err(|e| bad(e.to_string()))?;
        self.authority = Some(Authority {
            header: parsed.as_str().to_owned(),
            server_name,
        });
        Ok(self)
    }

    /// The `:authority` to send, when overridden.
    pub(crate) fn authority_header(&self) -> Option<&str> {
        self.authority.as_ref().map(|a| a.header.as_str())
    }

    /// The name the pod's certificate must carry: the overridden authority's host, else
    /// the target's [TLS name](Target::tls_name) (with SRV discovery the target host
    /// name, not the address connected to, as grpc-java checks it).
    fn server_name(&self, target: &Target) -> Result<ServerName<'static>, CallError> {
        if let Some(authority) = &self.authority {
            return Ok(authority.server_name.clone());
        }
        match target.tls_name() {
            Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
            Host::Name(name) => ServerName::try_from(name.clone())
                .map_err(|e| CallError::connect(ConnectFailure::ServerName).with_source(e)),
        }
    }

    /// The TLS handshake over `tcp`, verifying the pod's certificate.
    pub(crate) async fn connect(
        &self,
        target: &Target,
        tcp: PodSocket,
    ) -> Result<TlsStream<PodSocket>, CallError> {
        let name = self.server_name(target)?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| CallError::connect(ConnectFailure::Tls).with_source(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_bytes_as_a_ca_fail_cleanly(bytes in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..2000)) {
            let _ = Tls::with_ca_pem(&bytes);
        }

        #[test]
        fn pem_shaped_garbage_fails_cleanly(body in "[A-Za-z0-9+/=\\n]{0,400}") {
            let pem = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
            if let Err(e) = Tls::with_ca_pem(&pem) {
                let message = e.to_string();
                proptest::prop_assert!(message.starts_with("CA certificate"));
                proptest::prop_assert!(body.len() < 16 || !message.contains(&body), "PEM text echoed");
            }
        }

        #[test]
        fn any_authority_is_accepted_or_rejected_cleanly(name in "\\PC{0,100}") {
            if let Ok(tls) = TLS.clone().authority(&name) {
                proptest::prop_assert!(http::HeaderValue::from_str(tls.authority_header().unwrap()).is_ok());
            }
        }
    }

    static TLS: std::sync::LazyLock<Tls> =
        std::sync::LazyLock::new(|| Tls::with_ca_pem(ca_pem()).unwrap());

    fn ca_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()])
            .unwrap()
            .cert
            .pem()
    }

    #[test]
    fn authorities() {
        let tls = TLS.clone().authority("scalardb.ns.svc").unwrap();
        assert_eq!(tls.authority_header(), Some("scalardb.ns.svc"));
        let tls = TLS.clone().authority("ledger.example:50051").unwrap();
        assert_eq!(tls.authority_header(), Some("ledger.example:50051"));
        for bad in ["not a name!", "", "user@host", "host:port"] {
            assert!(TLS.clone().authority(bad).is_err(), "{bad:?}");
        }
    }
}
