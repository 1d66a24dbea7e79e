//! The service's TLS identity: a configured certificate, or a self-signed one made on first
//! start. Clients pin the SHA-256 fingerprint of the certificate (written to
//! `DATA/tls/fingerprint`) or trust a CA-signed certificate normally.
//!
//! Clients may also present a certificate of their own (mutual TLS) instead of a password: the
//! handshake proves they hold its key, the certificate must be self-signed and within its
//! validity period, and the operator maps its fingerprint to a user (`kura admin user cert`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::write_private;

/// Where a certificate and its key are.
#[derive(Debug, Clone)]
pub struct Identity {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Lower-case hex SHA-256 of the leaf certificate (DER).
    pub fingerprint: String,
}

/// The SHA-256 fingerprint of a DER certificate, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    kura_repo::transfer::sha256_hex(der)
}

/// Uses `cert`/`key` if given, else the self-signed pair under `dir` (made if missing, for
/// `localhost`, `127.0.0.1` and `::1`). Writes the fingerprint to `dir/fingerprint`.
pub fn identity(dir: &Path, configured: Option<(PathBuf, PathBuf)>) -> io::Result<Identity> {
    fs::create_dir_all(dir)?;
    let (cert, key) = match configured {
        Some(pair) => pair,
        None => {
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !cert.exists() || !key.exists() {
                let names = vec![
                    "localhost".to_string(),
                    "127.0.0.1".to_string(),
                    "::1".to_string(),
                ];
                let made = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
                write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
                fs::write(&cert, made.cert.pem())?;
            }
            (cert, key)
        }
    };
    let pem = fs::read(&cert)?;
    let der = first_certificate(&pem).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no certificate in {}", cert.display()),
        )
    })?;
    let fingerprint = fingerprint(&der);
    fs::write(dir.join("fingerprint"), format!("{fingerprint}\n"))?;
    Ok(Identity {
        cert,
        key,
        fingerprint,
    })
}

/// Accepts a client certificate that is self-signed, within its validity period and allowed
/// for client authentication; which user it stands for is the application's question.
#[derive(Debug)]
struct SelfSignedClients {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for SelfSignedClients {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let to_rustls = |e: webpki::Error| match e {
            webpki::Error::CertExpired { .. } => {
                rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
            }
            webpki::Error::CertNotValidYet { .. } => {
                rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet)
            }
            other => rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                rustls::OtherError(Arc::new(other)),
            )),
        };
        // The certificate is its own trust anchor: this checks its self-signature, dates and
        // key usage.
        let anchor = webpki::anchor_from_trusted_cert(end_entity).map_err(to_rustls)?;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(to_rustls)?;
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &[anchor],
            &[],
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(to_rustls)?;
        Ok(ClientCertVerified::assertion())
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

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The server's TLS configuration: its identity, and client certificates asked for but not
/// required (a client without one logs in with a password).
pub fn server_config(identity: &Identity) -> io::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&identity.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("{}: {e}", identity.cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&identity.key)
        .map_err(|e| invalid(format!("{}: {e}", identity.key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_client_cert_verifier(Arc::new(SelfSignedClients { provider }))
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("{}: {e}", identity.cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client certificate and key made by [`client_certificate`].
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key (mode 0600).
    pub key: PathBuf,
    /// Its fingerprint, for the operator to register.
    pub fingerprint: String,
}

/// Makes a self-signed client certificate for `name`, valid for `days`, as `dir/client.crt`
/// and `dir/client.key`; refuses to overwrite an existing key.
pub fn client_certificate(dir: &Path, name: &str, days: i64) -> io::Result<ClientIdentity> {
    fs::create_dir_all(dir)?;
    let (cert_path, key_path) = (dir.join("client.crt"), dir.join("client.key"));
    if key_path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists; remove it first to make a new one",
                key_path.display()
            ),
        ));
    }
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(io::Error::other)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(days.max(1) as u64 * 86_400)).into();
    let key = rcgen::KeyPair::generate().map_err(io::Error::other)?;
    let cert = params.self_signed(&key).map_err(io::Error::other)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    fs::write(&cert_path, cert.pem())?;
    Ok(ClientIdentity {
        cert: cert_path,
        key: key_path,
        fingerprint: fingerprint(cert.der()),
    })
}

/// The fingerprint of the first certificate in a PEM file.
pub fn certificate_fingerprint(path: &Path) -> io::Result<String> {
    let der = first_certificate(&fs::read(path)?)
        .ok_or_else(|| invalid(format!("no certificate in {}", path.display())))?;
    Ok(fingerprint(&der))
}

/// The DER bytes of the first certificate in a PEM file.
fn first_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> SelfSignedClients {
        SelfSignedClients {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    fn cert_valid(from_days: i64, to_days: i64, eku: rcgen::ExtendedKeyUsagePurpose) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(86_400);
        let at = |d: i64| {
            if d >= 0 {
                now + day * d as u32
            } else {
                now - day * (-d) as u32
            }
        };
        p.not_before = at(from_days).into();
        p.not_after = at(to_days).into();
        p.extended_key_usages = vec![eku];
        p.self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    fn check(der: Vec<u8>) -> Result<ClientCertVerified, rustls::Error> {
        verifier().verify_client_cert(&CertificateDer::from(der), &[], UnixTime::now())
    }

    #[test]
    fn client_certificates_must_be_current_self_signed_and_for_clients() {
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        assert!(check(cert_valid(-1, 30, ClientAuth)).is_ok());
        assert_eq!(
            check(cert_valid(-30, -1, ClientAuth)).unwrap_err(),
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
        );
        assert_eq!(
            check(cert_valid(1, 30, ClientAuth)).unwrap_err(),
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet)
        );
        assert!(
            check(cert_valid(-1, 30, ServerAuth)).is_err(),
            "a server certificate"
        );
        // Issued by someone else: not its own anchor.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.extended_key_usages = vec![ClientAuth];
        let issued = leaf
            .signed_by(&rcgen::KeyPair::generate().unwrap(), &ca)
            .unwrap();
        assert!(check(issued.der().to_vec()).is_err());
        assert!(check(b"not a certificate".to_vec()).is_err());
    }

    #[test]
    fn client_certificate_files_are_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = client_certificate(dir.path(), "laptop", 30).unwrap();
        assert_eq!(certificate_fingerprint(&id.cert).unwrap(), id.fingerprint);
        let der = first_certificate(&fs::read(&id.cert).unwrap()).unwrap();
        assert!(check(der).is_ok());
        assert!(
            client_certificate(dir.path(), "laptop", 30).is_err(),
            "no overwrite"
        );
    }

    #[test]
    fn self_signed_identity_is_made_once_and_fingerprinted() {
        let dir = tempfile::tempdir().unwrap();
        let a = identity(dir.path(), None).unwrap();
        let b = identity(dir.path(), None).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        assert_eq!(
            fs::read_to_string(dir.path().join("fingerprint"))
                .unwrap()
                .trim(),
            a.fingerprint
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&a.key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
