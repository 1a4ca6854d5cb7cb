//! Enrollment: a joiner trades a join token and a certificate signing request for a
//! certificate of the cluster CA. Its private key never leaves it.
//!
//! 1. The joiner reads the token (without the cluster's key it can read, not forge, it)
//!    for the CA fingerprint and role, makes a key pair and a CSR.
//! 2. It connects without a certificate to an enrollment endpoint and trusts the server
//!    only if the server's chain holds the CA with that fingerprint (and the server's
//!    own certificate is a node's, signed by that CA).
//! 3. It sends `Join { token, csr }`. The server checks the token's MAC, CA and expiry
//!    and the CSR's signature (proof that the joiner holds the key), then consumes the
//!    token (a second use is refused; a malformed request uses nothing), picks the new
//!    id, and signs a certificate for the CSR's public key naming that identity. The
//!    CSR's own names are ignored. Where an [`Admit`] is given (the metadata group, on
//!    a node that has one), it consumes the token and picks the id, so both survive
//!    the loss of this endpoint's files.
//! 4. The joiner checks the certificate: it chains to the pinned CA, names the role the
//!    token granted, and carries the joiner's public key.
//!
//! Renewal: a holder of a valid certificate sends `Renew { csr }` over mutual TLS and
//! gets a new certificate for the same identity.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rcgen::{CertificateParams, CertificateSigningRequestParams, KeyPair};
use rkyv::{Archive, Deserialize, Serialize};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};

use super::message::{self, MessageSet, check_version};
use super::pki::{ClusterCa, Fingerprint, Identity, Role, Validity, identity_of};
use super::rpc::{Client, Handler, Peer, Refusal, Request, Response, RpcError, code};
use super::tls::verify_issued;
use super::token::{JoinToken, TokenError, TokenKey, TokenLedger};

/// The enrollment message set.
pub struct Enrollment;

impl MessageSet for Enrollment {
    const PROTOCOL: u16 = 1;
    const VERSION: u16 = 1;
    const NAME: &'static str = "enrollment";
}

/// Operation: join with a token.
pub const OP_JOIN: u16 = 1;
/// Operation: renew the caller's own certificate.
pub const OP_RENEW: u16 = 2;
/// How long an enrollment call may take.
pub const ENROLL_DEADLINE: Duration = Duration::from_secs(30);

/// `Join` request.
#[derive(Archive, Serialize, Deserialize, Debug)]
pub struct Join {
    /// The join token, as printed.
    pub token: String,
    /// DER of the joiner's certificate signing request.
    pub csr: Vec<u8>,
}

/// `Renew` request.
#[derive(Archive, Serialize, Deserialize, Debug)]
pub struct Renew {
    /// DER of a certificate signing request for the caller's (new or same) key.
    pub csr: Vec<u8>,
}

/// Answer to `Join` and `Renew`.
#[derive(Archive, Serialize, Deserialize, Debug)]
pub struct Joined {
    /// DER of the new certificate.
    pub cert: Vec<u8>,
    /// DER of the cluster CA certificate.
    pub ca: Vec<u8>,
}

/// Picks the id of a new member of a role, never one given before (so it must record
/// what it gave durably); an error says why it could not.
pub type IdAllocator = Arc<dyn Fn(Role) -> Result<u64, String> + Send + Sync>;

/// Admits a checked join token once and names the newcomer, somewhere that outlives
/// the endpoint's own files: the id, `None` when it cannot now and the endpoint's own
/// files do instead (a metadata group not yet formed), or why not (a token used
/// before is `FORBIDDEN`).
pub type Admit = Arc<
    dyn Fn(
            &JoinToken,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<Option<u64>, Refusal>> + Send>>
        + Send
        + Sync,
>;

/// The server side of enrollment.
pub struct Enroller {
    ca: ClusterCa,
    token_key: TokenKey,
    ledger: TokenLedger,
    ids: IdAllocator,
    admit: Option<Admit>,
    validity: Duration,
}

impl Enroller {
    /// Enrolls with `ca`'s key, accepting tokens MACed with `token_key`, naming new
    /// members with `ids`, issuing certificates valid for `validity`.
    pub fn new(ca: ClusterCa, token_key: TokenKey, ids: IdAllocator, validity: Duration) -> Self {
        Self {
            ca,
            token_key,
            ledger: TokenLedger::default(),
            ids,
            admit: None,
            validity,
        }
    }

    /// Uses `ledger` (a durable one, so tokens stay single-use across restarts) instead
    /// of an in-memory ledger.
    pub fn with_ledger(mut self, ledger: TokenLedger) -> Self {
        self.ledger = ledger;
        self
    }

    /// Admits tokens and names newcomers through `admit` where it can, `ids` where it
    /// cannot; the ledger is consulted after it either way (a token used before
    /// `admit` was set, or while it could not).
    pub fn with_admit(mut self, admit: Admit) -> Self {
        self.admit = Some(admit);
        self
    }

    /// The request handler to serve with [`super::Server::bind_enrollment`].
    pub fn handler(self: Arc<Self>) -> Handler {
        Arc::new(move |peer: Peer, request: Request| {
            let me = self.clone();
            Box::pin(async move { me.handle(peer, &request).await })
        })
    }

    async fn handle(&self, peer: Peer, request: &Request) -> Result<Response, Refusal> {
        check_version::<Enrollment>(request)?;
        let bad = |e: message::MessageError| Refusal::new(code::BAD_REQUEST, e.to_string());
        let (identity, volumes, csr) = match request.op {
            OP_JOIN => {
                let join: Join = message::decode("Join", &request.message).map_err(bad)?;
                let token = self.check_token(&join.token)?;
                // The request is whole before the token is used up.
                let csr = signing_request(join.csr)?;
                let id = self.admit(&token).await?;
                let identity = Identity {
                    role: token.role,
                    id,
                };
                // A client token names its volume, or grants every volume.
                let volumes = match (token.role, token.volume) {
                    (Role::Client, Some(volume)) => vec![volume],
                    (Role::Client, None) => vec![super::pki::ALL_VOLUMES.to_string()],
                    _ => Vec::new(),
                };
                (identity, volumes, csr)
            }
            OP_RENEW => {
                let identity = peer.identity.ok_or_else(|| {
                    Refusal::new(code::FORBIDDEN, "renewal needs the current certificate")
                })?;
                let renew: Renew = message::decode("Renew", &request.message).map_err(bad)?;
                (identity, peer.volumes.to_vec(), signing_request(renew.csr)?)
            }
            op => {
                return Err(Refusal::new(
                    code::BAD_REQUEST,
                    format!("unknown enrollment operation {op}"),
                ));
            }
        };
        let cert = self
            .ca
            .issue_with_volumes(
                identity,
                &volumes,
                &csr.public_key,
                Validity::starting_now(self.validity),
            )
            .map_err(|e| Refusal::new(code::INTERNAL, e.to_string()))?;
        Ok(Response {
            message: message::encode(&Joined {
                cert: cert.to_vec(),
                ca: self.ca.cert().to_vec(),
            }),
            body: Bytes::new(),
        })
    }

    /// Uses `token` up and names its newcomer: through the [`Admit`], then this
    /// endpoint's ledger; or the ledger and the id allocator.
    async fn admit(&self, token: &JoinToken) -> Result<u64, Refusal> {
        let refuse = |e: TokenError| Refusal::new(code::FORBIDDEN, e.to_string());
        let admitted = match &self.admit {
            Some(admit) => admit(token).await?,
            None => None,
        };
        self.ledger
            .consume(token, SystemTime::now())
            .map_err(refuse)?;
        match admitted {
            Some(id) => Ok(id),
            None => (self.ids)(token.role)
                .map_err(|e| Refusal::new(code::INTERNAL, format!("cannot allocate an id: {e}"))),
        }
    }

    /// The token, if its MAC, CA and expiry hold (it is not used up here).
    fn check_token(&self, token: &str) -> Result<JoinToken, Refusal> {
        JoinToken::verify(
            token,
            &self.token_key,
            self.ca.fingerprint(),
            SystemTime::now(),
        )
        .map_err(|e| Refusal::new(code::FORBIDDEN, e.to_string()))
    }
}

/// A certificate signing request, read and its signature checked.
fn signing_request(der: Vec<u8>) -> Result<CertificateSigningRequestParams, Refusal> {
    CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der)).map_err(
        |e| {
            Refusal::new(
                code::BAD_REQUEST,
                format!("certificate signing request refused: {e}"),
            )
        },
    )
}

/// What a joiner ends up with.
pub struct Enrolled {
    /// Its identity.
    pub identity: Identity,
    /// Its certificate.
    pub cert: CertificateDer<'static>,
    /// The cluster CA certificate (matching the token's fingerprint).
    pub ca: CertificateDer<'static>,
    /// When the certificate expires, Unix seconds.
    pub not_after: u64,
}

/// Why enrollment failed, from the joiner's side.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The token could not be read.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Talking to the enrollment endpoint failed, or it refused.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The answer was not acceptable.
    #[error("enrollment answer refused: {0}")]
    BadAnswer(String),
}

/// Joins the cluster through the enrollment endpoint at `addr` with `token`, using
/// `key` (made by the joiner; only its public half is sent).
pub async fn enroll(addr: SocketAddr, token: &str, key: &KeyPair) -> Result<Enrolled, EnrollError> {
    let (parsed, _, _) = JoinToken::parse(token)?;
    let csr = CertificateParams::default()
        .serialize_request(key)
        .map_err(|e| EnrollError::BadAnswer(format!("making the signing request: {e}")))?;
    let client = Client::pinned(parsed.ca)?;
    let connection = client.connect(addr, None).await?;
    let request = message::request::<Enrollment>(
        OP_JOIN,
        message::encode(&Join {
            token: token.trim().to_string(),
            csr: csr.der().to_vec(),
        }),
        Bytes::new(),
    );
    let response = connection.call(request, ENROLL_DEADLINE).await?;
    let joined: Joined = message::decode("Joined", &response.message)
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    accept(joined, parsed.ca, Some(parsed.role), key)
}

/// Checks an issued certificate against what was asked for.
fn accept(
    joined: Joined,
    pin: Fingerprint,
    role: Option<Role>,
    key: &KeyPair,
) -> Result<Enrolled, EnrollError> {
    let bad = |s: String| EnrollError::BadAnswer(s);
    let ca = CertificateDer::from(joined.ca);
    if Fingerprint::of(&ca) != pin {
        return Err(bad(
            "the CA certificate sent is not the one the token names".into(),
        ));
    }
    let cert = CertificateDer::from(joined.cert);
    verify_issued(&ca, &cert).map_err(|e| bad(format!("certificate does not verify: {e}")))?;
    let identity = identity_of(&cert).map_err(|e| bad(e.to_string()))?;
    if role.is_some_and(|r| r != identity.role) {
        return Err(bad(format!("asked to join as {:?}, got {identity}", role)));
    }
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| bad(e.to_string()))?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(bad("certificate is for another key".into()));
    }
    let not_after = u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0);
    Ok(Enrolled {
        identity,
        cert: cert.into_owned(),
        ca: ca.into_owned(),
        not_after,
    })
}

/// Renews the certificate of the holder of `connection`'s client certificate for `key`.
pub async fn renew(
    connection: &super::rpc::Connection,
    ca: &CertificateDer<'static>,
    key: &KeyPair,
) -> Result<Enrolled, EnrollError> {
    let csr = CertificateParams::default()
        .serialize_request(key)
        .map_err(|e| EnrollError::BadAnswer(format!("making the signing request: {e}")))?;
    let request = message::request::<Enrollment>(
        OP_RENEW,
        message::encode(&Renew {
            csr: csr.der().to_vec(),
        }),
        Bytes::new(),
    );
    let response = connection.call(request, ENROLL_DEADLINE).await?;
    let joined: Joined = message::decode("Joined", &response.message)
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    accept(joined, Fingerprint::of(ca), None, key)
}

/// Seconds since the Unix epoch, now: to compare with [`Enrolled::not_after`].
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When a certificate valid from `not_before` to `not_after` (Unix seconds) should be
/// renewed: two thirds of the way through its life, which leaves a third (ten days of
/// the default thirty) to retry through outages.
pub fn renew_at(not_before: u64, not_after: u64) -> u64 {
    not_before + not_after.saturating_sub(not_before) / 3 * 2
}

/// The validity window of a certificate, Unix seconds.
pub fn validity_of(cert: &CertificateDer<'_>) -> Result<(u64, u64), super::pki::PkiError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| super::pki::PkiError::Parse(e.to_string()))?;
    let v = parsed.validity();
    let secs = |t: i64| u64::try_from(t).unwrap_or(0);
    Ok((
        secs(v.not_before.timestamp()),
        secs(v.not_after.timestamp()),
    ))
}
