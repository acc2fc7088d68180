//! Certificates made at test time with rcgen (a CA and leaves signed by
//! it), and the TLS settings built from them for both sides.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use silverback::tls::{TlsAcceptor, TlsConfig};

/// A certificate authority.
pub struct Ca {
    /// Its certificate, PEM.
    pub pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate signed by a [`Ca`], with its key.
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Leaf {
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.der.clone()]
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.clone()).into()
    }
}

impl Ca {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn sign(&self, names: &[&str], cn: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        // IP addresses become IP SANs, the rest DNS names.
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A server certificate for `names` (DNS names and IP addresses).
    pub fn server_leaf(&self, names: &[&str]) -> Leaf {
        self.sign(names, names[0], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for `cn`.
    pub fn client_leaf(&self, cn: &str) -> Leaf {
        self.sign(&[], cn, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A root store holding this CA only.
    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        Arc::new(roots)
    }

    /// Client settings that trust this CA and nothing else.
    pub fn trusted_by_client(&self) -> TlsConfig {
        TlsConfig::builder()
            .webpki_roots(false)
            .add_root_pem(self.pem.as_bytes())
            .unwrap()
            .build()
            .unwrap()
    }
}

/// The names a loopback test server answers to.
pub const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// A CA and a server certificate it signed for [`LOOPBACK_NAMES`].
pub fn loopback_pki() -> (Ca, Leaf) {
    let ca = Ca::new("silverback test CA");
    let leaf = ca.server_leaf(LOOPBACK_NAMES);
    (ca, leaf)
}

/// A TLS acceptor serving `leaf`, built by the library's own
/// `server_config_from_pem` (what `silverback serve --tls-cert` uses).
pub fn acceptor(leaf: &Leaf) -> TlsAcceptor {
    TlsAcceptor::from(
        silverback::tls::server_config_from_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
            .unwrap(),
    )
}

/// A TLS acceptor serving `leaf` that requires a client certificate
/// signed by `client_ca`.
pub fn acceptor_requiring_client_cert(leaf: &Leaf, client_ca: &Ca) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(client_ca.roots(), provider.clone())
        .build()
        .unwrap();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(leaf.chain(), leaf.key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}
