//! The service's TLS identity: a configured certificate, or a self-signed one made on first
//! start. Clients pin the SHA-256 fingerprint of the certificate (written to
//! `DATA/tls/fingerprint`) or trust a CA-signed certificate normally.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
    kura_core::id::hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
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

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
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
