//! TLS on the API port, for kubectl: client-go never sends a bearer token over plain `http://`
//! (kubernetes/kubectl#744). The same port serves both: a connection whose first byte is a TLS
//! handshake record is TLS, anything else plain HTTP. A throw-away CA and server certificate
//! (SANs `127.0.0.1`, `localhost`) are made at every start; private keys stay in memory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::sim::SimShared;

/// The first byte of a TLS ClientHello (record type "handshake").
pub const HANDSHAKE: u8 = 0x16;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("tls config: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS acceptor and the PEM of the CA that signed its certificate.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub ca_pem: String,
}

pub fn make() -> Result<Tls, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "cutover-sim-server-ca");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params.distinguished_name.push(DnType::CommonName, "k3s");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), ca_pem: ca.pem() })
}

/// Writes a kubeconfig that reaches the API over `https://` (what kubectl needs), with the CA
/// next to it as `ca.crt`; contexts `sim` (admin) and `sim-viewer`, like the plain one.
/// Fails when the server's TLS is not up (`shared.api_ca_pem` unset).
pub fn write_kubeconfig(path: &std::path::Path, addr: SocketAddr, shared: &SimShared) -> std::io::Result<()> {
    let Some(ca) = shared.api_ca_pem.get() else {
        return Err(std::io::Error::other("the API server's TLS is not available"));
    };
    let ca_path = path.with_file_name("ca.crt");
    std::fs::write(&ca_path, ca)?;
    crate::sim::write_kubeconfig_with_ca(path, &format!("https://{addr}"), Some(&ca_path), &shared.tokens)
}
