//! Certificates made in the test: a CA and server certificates it signs.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its private key, PEM-encoded.
pub struct ServerCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key.
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// The CA certificate, PEM-encoded.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for these DNS names or IP addresses.
    pub fn server_cert(&self, names: &[&str]) -> ServerCert {
        self.server_cert_with(names, |_| {})
    }

    /// A server certificate that expired on 1 January 2026.
    pub fn expired_server_cert(&self, names: &[&str]) -> ServerCert {
        self.server_cert_with(names, |p| {
            let now = rcgen::date_time_ymd(2026, 1, 1);
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = now;
        })
    }

    fn server_cert_with(
        &self,
        names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> ServerCert {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}
