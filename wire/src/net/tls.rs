//! TLS for QUIC: TLS 1.3 only, the `ring` provider, and both sides proving who they are
//! with a certificate chained to the cluster CA.
//!
//! Servers check client certificates against the CA and a live revocation list. Clients
//! check the server's certificate against the CA and the node they meant to reach (or any
//! node, for enrollment). quinn completes a client's connect before the server has judged
//! the client's certificate, so a refusal shows up on the first request.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use super::pki::{Fingerprint, Identity, Role, identity_of};

/// The ALPN protocol name: a peer that does not speak it is refused in the handshake.
pub const ALPN: &[u8] = b"hive/1";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration (a bad key or certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The trust anchors could not be built from the CA certificate.
    #[error("cluster CA certificate: {0}")]
    Roots(String),
    /// quinn refused the TLS configuration.
    #[error("QUIC TLS configuration: {0}")]
    Quic(String),
}

/// Identities whose certificates are no longer honoured. Shared by every endpoint of a
/// process and updated live: new connections and new requests see a change at once.
#[derive(Clone, Default)]
pub struct Revocations(Arc<RwLock<HashSet<Identity>>>);

impl Revocations {
    /// Stops honouring `identity`'s certificates.
    pub fn revoke(&self, identity: Identity) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(identity);
    }

    /// The revoked identities, sorted.
    pub fn list(&self) -> Vec<Identity> {
        let mut all: Vec<Identity> = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        all.sort_unstable();
        all
    }

    /// Reads a revocation list file: one identity (`node/000000000000002a`) a line;
    /// blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, super::pki::PkiError> {
        let list = Self::default();
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                list.revoke(line.parse()?);
            }
        }
        Ok(list)
    }

    /// The file form of the list.
    pub fn to_text(&self) -> String {
        let mut out = String::from("# HiveFS revoked identities, one a line\n");
        for identity in self.list() {
            out.push_str(&identity.to_string());
            out.push('\n');
        }
        out
    }

    /// Whether `identity` is revoked.
    pub fn is_revoked(&self, identity: &Identity) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(identity)
    }
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Revocations")
    }
}

/// A certificate chain and its private key. The key never leaves the process.
pub struct Credentials {
    /// The holder's certificate (first) and any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 DER of the private key.
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Credentials {
    /// From an rcgen key pair and its certificate.
    pub fn new(cert: CertificateDer<'static>, key: &rcgen::KeyPair) -> Self {
        Self {
            chain: vec![cert],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| TlsError::Roots(e.to_string()))?;
    Ok(Arc::new(roots))
}

/// The server side of mutual TLS. With `mandatory: false` (enrollment only) a client
/// may connect without a certificate.
pub fn server_config(
    ca: &CertificateDer<'static>,
    me: &Credentials,
    revocations: Revocations,
    mandatory: bool,
) -> Result<quinn::ServerConfig, TlsError> {
    let inner = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
        .build()
        .map_err(|e| TlsError::Roots(e.to_string()))?;
    let verifier = Arc::new(ClusterClientVerifier {
        inner,
        revocations,
        mandatory,
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(me.chain.clone(), me.key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(super::rpc::transport());
    Ok(config)
}

/// The client side of mutual TLS. `me: None` connects without a certificate (every
/// server refuses that; it exists for tests and for diagnosing setups).
pub fn client_config(
    ca: &CertificateDer<'static>,
    me: Option<&Credentials>,
) -> Result<quinn::ClientConfig, TlsError> {
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider())
        .build()
        .map_err(|e| TlsError::Roots(e.to_string()))?;
    let verifier = Arc::new(ClusterServerVerifier { inner });
    quic_client(verifier, me)
}

/// TLS 1.3 with `verifier` for the server and `me` (if any) for us, made into a quinn
/// client configuration with HiveFS's ALPN and transport settings.
fn quic_client(
    verifier: Arc<dyn ServerCertVerifier>,
    me: Option<&Credentials>,
) -> Result<quinn::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut tls = match me {
        Some(me) => builder.with_client_auth_cert(me.chain.clone(), me.key())?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(super::rpc::transport());
    Ok(config)
}

/// The client side of enrollment: no certificate yet, and the server is trusted only if
/// its chain carries the CA certificate whose SHA-256 is `pin` (from the join token).
pub fn pinned_client_config(pin: Fingerprint) -> Result<quinn::ClientConfig, TlsError> {
    let verifier = Arc::new(PinnedCaVerifier {
        pin,
        provider: provider(),
    });
    quic_client(verifier, None)
}

/// Finds the pinned CA in the server's chain, then verifies like
/// [`ClusterServerVerifier`] with that CA as the only root.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| Fingerprint::of(c) == self.pin)
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots(&ca.clone().into_owned()).map_err(|e| rustls::Error::General(e.to_string()))?,
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        ClusterServerVerifier { inner }.verify_server_cert(
            end_entity,
            &[],
            server_name,
            ocsp_response,
            now,
        )
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Checks that `cert` chains to `ca` and is currently valid, as a server checks a client.
pub fn verify_issued(
    ca: &CertificateDer<'static>,
    cert: &CertificateDer<'_>,
) -> Result<(), TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
        .build()
        .map_err(|e| TlsError::Roots(e.to_string()))?;
    verifier.verify_client_cert(cert, &[], UnixTime::now())?;
    Ok(())
}

/// The TLS server name for reaching `node`; `None` accepts any node of the cluster.
pub fn server_name(node: Option<Identity>) -> String {
    node.map_or_else(|| ANY_NODE.to_string(), |n| n.dns_name())
}

/// The server name that accepts any node's certificate (enrollment, where the joiner
/// does not know the node's id; the CA is pinned by the token's fingerprint instead).
const ANY_NODE: &str = "any-node.hive";

/// The handshake-signature checks a verifier passes to the webpki verifier it wraps.
macro_rules! delegate_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// Chain to the cluster CA (webpki), then: the certificate must name an identity, and
/// the identity must not be revoked.
#[derive(Debug)]
struct ClusterClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Revocations,
    mandatory: bool,
}

impl ClientCertVerifier for ClusterClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let identity = identity_of(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })?;
        if self.revocations.is_revoked(&identity) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    delegate_signature_checks!();
}

/// Chain to the cluster CA with webpki, checked against the node the client meant to
/// reach; for [`ANY_NODE`], against whichever node the certificate names (which must be
/// a node).
#[derive(Debug)]
struct ClusterServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let identity = identity_of(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })?;
        if identity.role != Role::Node {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        let wanted = match server_name {
            ServerName::DnsName(name) if name.as_ref() == ANY_NODE => {
                ServerName::try_from(identity.dns_name()).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
                })?
            }
            other => other.to_owned(),
        };
        self.inner
            .verify_server_cert(end_entity, intermediates, &wanted, ocsp_response, now)
    }

    delegate_signature_checks!();
}
