//! The cluster CA and the identities it vouches for.
//!
//! Every certificate names its holder in a URI subject-alternative name,
//! `hive://<role>/<id as 16 hex digits>`, and in a DNS name, `<role>-<id>.hive`, which
//! TLS server-name checks use.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;

/// Default validity of an identity certificate.
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Validity of the cluster CA certificate.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What went wrong with a certificate or key.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating or signing failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate could not be parsed.
    #[error("unreadable certificate: {0}")]
    Parse(String),
    /// A certificate without a HiveFS identity.
    #[error("certificate names no HiveFS identity (expected a hive://<role>/<id> name)")]
    NoIdentity,
    /// A malformed identity string.
    #[error("{0:?} is not an identity like node/000000000000002a")]
    BadIdentity(String),
}

/// What a peer is to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A storage node.
    Node,
    /// A host that mounts volumes.
    Client,
    /// An operator.
    Admin,
}

impl Role {
    /// The role's number, as tokens and messages carry it.
    pub fn number(self) -> u8 {
        match self {
            Role::Node => 1,
            Role::Client => 2,
            Role::Admin => 3,
        }
    }

    /// The role numbered `n`, if any.
    pub fn from_number(n: u8) -> Option<Role> {
        match n {
            1 => Some(Role::Node),
            2 => Some(Role::Client),
            3 => Some(Role::Admin),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Client => "client",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        match s {
            "node" => Ok(Role::Node),
            "client" => Ok(Role::Client),
            "admin" => Ok(Role::Admin),
            _ => Err(PkiError::BadIdentity(s.to_string())),
        }
    }
}

/// Who a certificate speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// Its role.
    pub role: Role,
    /// Its id, unique within the role (for nodes, the `NodeId`).
    pub id: u64,
}

impl Identity {
    /// A node's identity.
    pub fn node(id: crate::NodeId) -> Self {
        Self {
            role: Role::Node,
            id: id.get(),
        }
    }

    /// The URI name certificates carry.
    pub fn uri(&self) -> String {
        format!("hive://{}/{:016x}", self.role, self.id)
    }

    /// The DNS name certificates carry, used as the TLS server name.
    pub fn dns_name(&self) -> String {
        format!("{}-{:016x}.hive", self.role, self.id)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:016x}", self.role, self.id)
    }
}

impl FromStr for Identity {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        let bad = || PkiError::BadIdentity(s.to_string());
        let (role, id) = s.split_once('/').ok_or_else(bad)?;
        if id.len() != 16 {
            return Err(bad());
        }
        Ok(Self {
            role: role.parse().map_err(|_| bad())?,
            id: u64::from_str_radix(id, 16).map_err(|_| bad())?,
        })
    }
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Not valid before.
    pub not_before: SystemTime,
    /// Not valid after.
    pub not_after: SystemTime,
}

impl Validity {
    /// From now (less a minute, for clock skew) for `lifetime`.
    pub fn starting_now(lifetime: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now - Duration::from_secs(60),
            not_after: now + lifetime,
        }
    }
}

/// SHA-256 of a certificate's DER bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `cert`.
    pub fn of(cert: &CertificateDer<'_>) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::encode_hex(&self.0, f)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The cluster's certificate authority: its certificate and signing key.
pub struct ClusterCa {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key: KeyPair,
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("invariant: the operating system's random source works");
    bytes[0] &= 0x7f; // a positive integer
    SerialNumber::from_slice(&bytes)
}

impl ClusterCa {
    /// A new CA named `cluster`, with a fresh ECDSA P-256 key.
    pub fn create(cluster: &str) -> Result<Self, PkiError> {
        Self::create_with_validity(cluster, Validity::starting_now(CA_VALIDITY))
    }

    /// A new CA valid for `validity` (tests make expired ones).
    pub fn create_with_validity(cluster: &str, validity: Validity) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("HiveFS cluster CA {cluster}"));
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            key,
        })
    }

    /// Loads a CA saved with [`ClusterCa::cert_pem`] and [`ClusterCa::key_pem`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::Parse(e.to_string()))?;
        Ok(Self {
            cert,
            cert_pem: cert_pem.to_string(),
            key,
        })
    }

    /// The CA certificate, DER.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM. A secret: write it 0600 and never log it.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// SHA-256 of the CA certificate, which join tokens carry to pin the CA.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert)
    }

    /// Signs a certificate for `identity` over `public_key`, granting no volume.
    pub fn issue(
        &self,
        identity: Identity,
        public_key: &impl PublicKeyData,
        validity: Validity,
    ) -> Result<CertificateDer<'static>, PkiError> {
        self.issue_with_volumes(identity, &[], public_key, validity)
    }

    /// Signs a certificate for `identity` that also grants `volumes` (each one a
    /// `hive-volume://<name>` name; [`ALL_VOLUMES`] grants every volume).
    pub fn issue_with_volumes(
        &self,
        identity: Identity,
        volumes: &[String],
        public_key: &impl PublicKeyData,
        validity: Validity,
    ) -> Result<CertificateDer<'static>, PkiError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, identity.to_string());
        params.distinguished_name = name;
        params.subject_alt_names = vec![
            SanType::URI(identity.uri().try_into()?),
            SanType::DnsName(identity.dns_name().try_into()?),
        ];
        for volume in volumes {
            params
                .subject_alt_names
                .push(SanType::URI(format!("{VOLUME_SCHEME}{volume}").try_into()?));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(&self.cert, &self.key)?;
        Ok(params.signed_by(public_key, &issuer)?.der().clone())
    }

    /// A fresh key and a certificate for it: for `hive init` and tests. Joiners make
    /// their own key and send only its public half (enrollment).
    pub fn issue_with_key(
        &self,
        identity: Identity,
        validity: Validity,
    ) -> Result<(CertificateDer<'static>, KeyPair), PkiError> {
        let key = KeyPair::generate()?;
        let cert = self.issue(identity, &key, validity)?;
        Ok((cert, key))
    }
}

/// The URI scheme of a volume grant in a certificate.
pub const VOLUME_SCHEME: &str = "hive-volume://";
/// The grant that covers every volume.
pub const ALL_VOLUMES: &str = "*";

/// The URI names of a certificate.
fn uris(cert: &CertificateDer<'_>) -> Result<Vec<String>, PkiError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| PkiError::Parse(e.to_string()))?;
    let Some(san) = parsed
        .subject_alternative_name()
        .map_err(|e| PkiError::Parse(e.to_string()))?
    else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_string()),
            _ => None,
        })
        .collect())
}

/// The identity a certificate names.
pub fn identity_of(cert: &CertificateDer<'_>) -> Result<Identity, PkiError> {
    uris(cert)?
        .iter()
        .find_map(|uri| uri.strip_prefix("hive://"))
        .ok_or(PkiError::NoIdentity)?
        .parse()
}

/// The volumes a certificate grants.
pub fn volumes_of(cert: &CertificateDer<'_>) -> Result<Vec<String>, PkiError> {
    Ok(uris(cert)?
        .iter()
        .filter_map(|uri| uri.strip_prefix(VOLUME_SCHEME))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_certificates() {
        let ca = ClusterCa::create("test").expect("ca");
        let who = Identity {
            role: Role::Client,
            id: 0x2a,
        };
        let (cert, _key) = ca
            .issue_with_key(who, Validity::starting_now(DEFAULT_CERT_VALIDITY))
            .expect("issue");
        assert_eq!(identity_of(&cert).expect("identity"), who);
        assert_eq!(who.to_string().parse::<Identity>().expect("parse"), who);
        assert!("node/12".parse::<Identity>().is_err());
        let again = ClusterCa::from_pem(ca.cert_pem(), &ca.key_pem()).expect("load");
        assert_eq!(again.fingerprint(), ca.fingerprint());
    }
}
