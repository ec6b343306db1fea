//! The certificates and configurations the engine target pairs, made once per process: the
//! server with `--strict-sni` on or off and client authentication off, optional or required;
//! the client sending a name the server has, one it has not, or none, with a certificate from
//! the server's client CA, one from another CA, or none.

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tls_echo::tls::{self, Identity, TlsMaterial, TlsSettings};
use tls_echo::tools::certs::{Ca, Pair, Validity};

/// The only name the server's certificate covers.
const SERVED_NAME: &str = "localhost";

#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct ServerSetup {
    pub strict_sni: bool,
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum ClientAuth {
    Off,
    /// Not a mode the server ships (`--client-ca` requires a certificate): rustls's, for the
    /// handshake in which a certificate request is answered with none and accepted.
    Optional,
    Required,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct ClientSetup {
    pub sni: Sni,
    pub cert: ClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Sni {
    Served,
    Unknown,
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum ClientCert {
    Absent,
    Trusted,
    Untrusted,
}

/// The reason `engine::accept` must give for refusing this pairing, `None` if it must accept.
pub fn refusal(server: ServerSetup, client: ClientSetup) -> Option<&'static str> {
    if server.strict_sni && client.sni != Sni::Served {
        return Some("sni-unrecognized");
    }
    match (server.client_auth, client.cert) {
        // Off sends no certificate request: the client keeps its certificate to itself.
        (ClientAuth::Off, _) | (_, ClientCert::Trusted) => None,
        (ClientAuth::Optional, ClientCert::Absent) => None,
        (ClientAuth::Required, ClientCert::Absent) => Some("client-cert-missing"),
        (_, ClientCert::Untrusted) => Some("client-cert-unknown-ca"),
    }
}

pub fn material(setup: ServerSetup) -> &'static TlsMaterial {
    let auth = setup.client_auth as usize;
    &pki().servers[usize::from(setup.strict_sni) * 3 + auth]
}

pub fn client_config(setup: ClientSetup) -> Arc<ClientConfig> {
    Arc::clone(&pki().clients[setup.cert as usize])
}

/// What the client connects to: rustls sends no SNI for an address.
pub fn server_name(setup: ClientSetup) -> ServerName<'static> {
    match setup.sni {
        Sni::Served => ServerName::try_from(SERVED_NAME).expect("name"),
        Sni::Unknown => ServerName::try_from("unknown.test").expect("name"),
        Sni::Absent => ServerName::from(std::net::Ipv4Addr::LOCALHOST),
    }
}

struct Pki {
    /// Indexed by strict SNI (0, 1) * 3 + client auth (off, optional, required).
    servers: Vec<TlsMaterial>,
    /// Indexed by client certificate (none, trusted, untrusted).
    clients: Vec<Arc<ClientConfig>>,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tls-echo-fuzz-engine-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            tls_echo::tools::certs::write_new(&path, text, 0o600, true).expect("write");
            path
        };
        let days = || Validity::days(30);
        let ca = Ca::new("fuzz CA", days()).expect("ca");
        let stranger = Ca::new("fuzz stranger CA", days()).expect("ca");
        let leaf = ca.server(&[SERVED_NAME.into()], &[], days()).expect("leaf");
        let ca_path = write("ca.pem", &ca.pair.cert_pem);
        let roots = Arc::new(roots(&ca.pair.cert_pem));
        let identity = Identity {
            cert: write("server.pem", &leaf.cert_pem),
            key: write("server.key", &leaf.key_pem),
        };
        let mut servers = Vec::new();
        for strict_sni in [false, true] {
            let load = |client_ca| {
                tls::load(&TlsSettings {
                    identities: vec![identity.clone()],
                    strict_sni,
                    alpn: Vec::new(),
                    client_crls: Vec::new(),
                    ocsp_responses: Vec::new(),
                    ticket_keys: None,
                    client_ca,
                    allow_client: Vec::new(),
                    tls13_only: false,
                })
                .expect("material")
            };
            let required = load(Some(ca_path.clone()));
            servers.push(load(None));
            servers.push(optional(&required, &roots));
            servers.push(required);
        }
        let _ = std::fs::remove_dir_all(&dir);
        let clients = [
            None,
            Some(ca.client("fuzz client", days()).expect("client")),
            Some(stranger.client("fuzz client", days()).expect("client")),
        ]
        .iter()
        .map(|cert| client(&roots, cert.as_ref()))
        .collect();
        Pki { servers, clients }
    })
}

/// `required` with a verifier that also admits a client without a certificate.
fn optional(required: &TlsMaterial, roots: &Arc<RootCertStore>) -> TlsMaterial {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), tls::provider())
        .allow_unauthenticated()
        .build()
        .expect("verifier");
    let base = &required.config;
    let mut config = ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::clone(&base.cert_resolver));
    config.send_tls13_tickets = base.send_tls13_tickets;
    // Its own ticket keys, as every loaded material has: rustls resumes a session without
    // asking for the certificate again, so a ticket from a session without one would let the
    // client into `required` if the two shared keys.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer");
    let mut material = required.clone();
    material.config = Arc::new(config);
    material
}

fn roots(ca_pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca")).expect("root");
    }
    roots
}

fn client(roots: &Arc<RootCertStore>, cert: Option<&Pair>) -> Arc<ClientConfig> {
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::clone(roots), tls::provider())
        .build()
        .expect("verifier");
    let builder = ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServedName(verifier)));
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("chain");
            let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        }
    };
    // No ticket from an earlier execution: the handshake would depend on what ran before, and
    // an input that fails would not fail again when replayed alone.
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// Verifies the server's chain and signatures as webpki does, for the served name whatever
/// name the client sent: so the client can send another name, or none, and still complete a
/// handshake that the server accepts.
#[derive(Debug)]
struct ServedName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ServedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sent: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let served = ServerName::try_from(SERVED_NAME).expect("name");
        self.0
            .verify_server_cert(end_entity, intermediates, &served, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
