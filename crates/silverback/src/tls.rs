//! TLS with rustls: `wss://` clients and TLS servers (feature `tls`).
//!
//! Client side, [`TlsConfig`] picks the trust roots (the webpki roots
//! compiled in, the system's, and/or your own CA), an optional client
//! certificate, and — only when asked — no verification at all. A failed
//! verification is an error ([`ErrorKind::Tls`]), never a silent downgrade.
//!
//! Server side, [`server_config_from_pem`] builds a rustls server
//! configuration; accept TLS with [`TlsAcceptor`], then upgrade the TLS
//! stream as any other.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use silverback::tls::{server_config_from_pem_files, TlsAcceptor};
//! let acceptor = TlsAcceptor::from(server_config_from_pem_files("cert.pem", "key.pem")?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let (tcp, _) = listener.accept().await?;
//! let tls = acceptor.accept(tcp).await?;
//! let mut ws = silverback::Upgrader::new().upgrade(tls).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{Error, ErrorKind};

/// Client TLS settings for `wss://`. The default trusts the webpki roots
/// (Mozilla's list, compiled in).
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) client: Arc<ClientConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig::builder()
            .build()
            .expect("the default TLS configuration is valid")
    }
}

impl TlsConfig {
    /// A builder, starting from the webpki roots.
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder {
            webpki_roots: true,
            native_roots: false,
            extra_roots: Vec::new(),
            client_auth: None,
            insecure: false,
        }
    }

    /// Uses a rustls configuration as it is (ALPN is left untouched).
    pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
        Self { client: config }
    }
}

/// Builds a [`TlsConfig`].
///
/// ```
/// # fn f(ca_pem: &[u8]) -> Result<(), silverback::Error> {
/// let tls = silverback::tls::TlsConfig::builder()
///     .webpki_roots(false)
///     .add_root_pem(ca_pem)?   // trust only our own CA
///     .build()?;
/// # Ok(()) }
/// ```
pub struct TlsConfigBuilder {
    webpki_roots: bool,
    native_roots: bool,
    extra_roots: Vec<CertificateDer<'static>>,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    insecure: bool,
}

impl fmt::Debug for TlsConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfigBuilder")
            .field("webpki_roots", &self.webpki_roots)
            .field("native_roots", &self.native_roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("client_auth", &self.client_auth.is_some())
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl TlsConfigBuilder {
    /// Trust the webpki roots compiled in (default: yes).
    pub fn webpki_roots(mut self, on: bool) -> Self {
        self.webpki_roots = on;
        self
    }

    /// Trust the system's roots (default: no).
    pub fn native_roots(mut self, on: bool) -> Self {
        self.native_roots = on;
        self
    }

    /// Also trusts the CA certificates in `pem`.
    pub fn add_root_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        let certs = certs_from_pem(pem)?;
        if certs.is_empty() {
            return Err(tls_error("no certificate in CA PEM"));
        }
        self.extra_roots.extend(certs);
        Ok(self)
    }

    /// Also trusts the CA certificates in the PEM file at `path`.
    pub fn add_root_pem_file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let pem = std::fs::read(path)?;
        self.add_root_pem(&pem)
    }

    /// Presents a client certificate (chain and key in PEM).
    pub fn client_cert_pem(mut self, chain: &[u8], key: &[u8]) -> Result<Self, Error> {
        let chain = certs_from_pem(chain)?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| tls_error(&format!("client key: {e}")))?;
        self.client_auth = Some((chain, key));
        Ok(self)
    }

    /// Accepts any server certificate: **no protection against
    /// impersonation**. For testing against self-signed servers only.
    pub fn danger_accept_invalid_certs(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Builds the configuration.
    pub fn build(self) -> Result<TlsConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            if self.webpki_roots {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            if self.native_roots {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
            for cert in self.extra_roots {
                roots
                    .add(cert)
                    .map_err(|e| tls_error(&format!("CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots)
        };
        let mut config = match self.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error(&format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig {
            client: Arc::new(config),
        })
    }
}

fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&format!("PEM certificates: {e}")))
}

fn tls_error(msg: &str) -> Error {
    Error::new(ErrorKind::Tls(io::Error::new(
        io::ErrorKind::InvalidInput,
        msg.to_owned(),
    )))
}

/// A rustls server configuration from a PEM certificate chain and key
/// (ALPN `http/1.1`).
pub fn server_config_from_pem(chain: &[u8], key: &[u8]) -> Result<Arc<ServerConfig>, Error> {
    let chain = certs_from_pem(chain)?;
    if chain.is_empty() {
        return Err(tls_error("no certificate in PEM"));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| tls_error(&format!("private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls_error(&format!("certificate/key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Like [`server_config_from_pem`], reading the two files.
pub fn server_config_from_pem_files(
    chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>, Error> {
    let chain = std::fs::read(chain)?;
    let key = std::fs::read(key)?;
    server_config_from_pem(&chain, &key)
}

/// TLS handshake as a client over `tcp`, for `host` (SNI and verification).
pub(crate) async fn connect(
    config: &TlsConfig,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    connect_with(config.client.clone(), host, tcp).await
}

/// `config` offering ALPN `h2` then `http/1.1` (HTTP/2 WebSockets).
#[cfg(feature = "http2")]
pub(crate) fn with_h2_alpn(config: &TlsConfig) -> Arc<ClientConfig> {
    let mut client = (*config.client).clone();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(client)
}

/// The default configuration, built once (its identity keys HTTP/2
/// connection pools).
#[cfg(feature = "http2")]
pub(crate) fn shared_default() -> &'static TlsConfig {
    static DEFAULT: std::sync::OnceLock<TlsConfig> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(TlsConfig::default)
}

/// TLS handshake as a client with a rustls configuration.
pub(crate) async fn connect_with(
    client: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| tls_error(&format!("invalid server name {host:?}")))?;
    TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::new(ErrorKind::Tls(e)))
}

/// Accepts every certificate (`danger_accept_invalid_certs`); signatures
/// are still checked so the handshake itself is sound.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
