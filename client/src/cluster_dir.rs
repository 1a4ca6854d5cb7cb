//! The files of a cluster directory, as `hive init` writes them.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hive_wire::net::pki::DEFAULT_CERT_VALIDITY;
use hive_wire::net::rustls_pki_types::CertificateDer;
use hive_wire::net::rustls_pki_types::pem::PemObject;
use hive_wire::net::tls::Revocations;
use hive_wire::net::{
    Client, ClusterCa, Credentials, Fingerprint, Identity, Role, TokenKey, Validity,
};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const TOKEN_KEY: &str = "token.key";
const ADMIN_CERT: &str = "admin.pem";
const ADMIN_KEY: &str = "admin.key";
const REVOKED: &str = "revoked";

/// A cluster directory.
pub struct ClusterDir {
    dir: PathBuf,
}

/// What `init` made.
pub struct Initialised {
    /// The CA certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// The first admin identity.
    pub admin: Identity,
}

/// Writes `contents` to a new file (never over an existing one) with `mode`.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    hive_wire::files::write_new(path, contents, mode)
        .with_context(|| format!("writing {}", path.display()))
}

impl ClusterDir {
    /// Creates the CA, the token key, the first admin identity and the revocation list.
    pub fn init(dir: &Path, name: &str) -> Result<Initialised> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if dir.join(CA_KEY).exists() {
            bail!(
                "{} already holds a cluster CA ({CA_KEY}); refusing to overwrite it",
                dir.display()
            );
        }
        let ca = ClusterCa::create(name)?;
        let admin = Identity {
            role: Role::Admin,
            id: 1,
        };
        let (cert, key) =
            ca.issue_with_key(admin, Validity::starting_now(DEFAULT_CERT_VALIDITY))?;
        write_new(&dir.join(CA_KEY), ca.key_pem().as_bytes(), 0o600)?;
        write_new(
            &dir.join(TOKEN_KEY),
            TokenKey::generate().to_hex().as_bytes(),
            0o600,
        )?;
        write_new(&dir.join(ADMIN_KEY), key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&dir.join(CA_CERT), ca.cert_pem().as_bytes(), 0o644)?;
        write_new(
            &dir.join(ADMIN_CERT),
            pem("CERTIFICATE", cert.as_ref()).as_bytes(),
            0o644,
        )?;
        write_new(
            &dir.join(REVOKED),
            Revocations::default().to_text().as_bytes(),
            0o644,
        )?;
        Ok(Initialised {
            fingerprint: ca.fingerprint(),
            admin,
        })
    }

    /// A directory `init` made.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join(CA_CERT).exists() {
            bail!(
                "{} is not a cluster directory (no {CA_CERT}); create one with 'hive init --dir {}'",
                dir.display(),
                dir.display()
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn read(&self, name: &str) -> Result<String> {
        let path = self.dir.join(name);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// The CA, with its key.
    pub fn ca(&self) -> Result<ClusterCa> {
        Ok(ClusterCa::from_pem(
            &self.read(CA_CERT)?,
            &self.read(CA_KEY)?,
        )?)
    }

    /// A client endpoint that trusts the CA and proves itself with the certificate and
    /// key in files `cert` and `key` (relative to the directory).
    pub fn client(&self, cert: &Path, key: &Path) -> Result<Client> {
        let ca = CertificateDer::from_pem_slice(self.read(CA_CERT)?.as_bytes())
            .context("the CA certificate")?;
        let name = cert.display().to_string();
        let cert = CertificateDer::from_pem_slice(self.read(&name)?.as_bytes())
            .with_context(|| format!("the certificate {name}"))?;
        let key = rcgen::KeyPair::from_pem(&self.read(&key.display().to_string())?)
            .with_context(|| format!("the key {}", key.display()))?;
        Ok(Client::new(&ca, Some(&Credentials::new(cert, &key)))?)
    }

    /// A client endpoint with the admin identity `init` made.
    pub fn admin_client(&self) -> Result<Client> {
        self.client(Path::new(ADMIN_CERT), Path::new(ADMIN_KEY))
    }

    /// The CA certificate's fingerprint.
    pub fn fingerprint(&self) -> Result<Fingerprint> {
        Ok(self.ca()?.fingerprint())
    }

    /// The key that MACs join tokens.
    pub fn token_key(&self) -> Result<TokenKey> {
        Ok(TokenKey::from_hex(&self.read(TOKEN_KEY)?)?)
    }

    /// Adds `identity` to the revocation list (written to a new file, then renamed over
    /// the old one, so a reader never sees half a list).
    pub fn revoke(&self, identity: Identity) -> Result<()> {
        let list = Revocations::parse(&self.read(REVOKED)?)?;
        list.revoke(identity);
        let path = self.dir.join(REVOKED);
        hive_wire::files::replace(&path, list.to_text().as_bytes())
            .with_context(|| format!("replacing {}", path.display()))
    }
}

/// PEM armour for DER bytes.
pub fn pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}
