//! Site authentication (`docs/requirements/placement.md` requirement 5): each site holds a marker
//! object that only someone with the site's secret could have made. Before writing, the service
//! reads it back and checks it; a site that answers with another site's marker, a forged one or
//! none at all is not written to, and the failure is counted against it.

use serde::{Deserialize, Serialize};

/// The marker's object name at every site.
pub const MARKER_NAME: &str = "kura-site-marker";

#[derive(Serialize, Deserialize)]
struct Marker {
    site: String,
    mac: String,
}

fn mac(secret: &[u8], site: &str) -> String {
    let key = blake3::derive_key("kura site marker v1", secret);
    blake3::keyed_hash(&key, site.as_bytes())
        .to_hex()
        .to_string()
}

/// The marker for `site` under its secret.
pub fn make(secret: &[u8], site: &str) -> Vec<u8> {
    serde_json::to_vec(&Marker {
        site: site.to_string(),
        mac: mac(secret, site),
    })
    .unwrap_or_default()
}

/// Why a site failed authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// The marker is not one.
    #[error("the site's marker is unreadable")]
    Unreadable,
    /// The marker names another site.
    #[error("the site says it is {0:?}")]
    OtherSite(String),
    /// The marker was not made with the configured secret.
    #[error("the site's marker was not made with its secret")]
    Forged,
}

/// Checks what `site` returned as its marker.
pub fn verify(secret: &[u8], site: &str, marker: &[u8]) -> Result<(), MarkerError> {
    let m: Marker = serde_json::from_slice(marker).map_err(|_| MarkerError::Unreadable)?;
    if m.site != site {
        return Err(MarkerError::OtherSite(m.site.chars().take(64).collect()));
    }
    let expected = mac(secret, site);
    // Both are hex of a fixed length; compare without an early exit.
    let same = expected.len() == m.mac.len()
        && expected
            .bytes()
            .zip(m.mac.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(MarkerError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_site_passes() {
        let m = make(b"secret of a", "site-a");
        assert_eq!(verify(b"secret of a", "site-a", &m), Ok(()));
        assert_eq!(
            verify(b"another secret", "site-a", &m),
            Err(MarkerError::Forged)
        );
        assert_eq!(
            verify(b"secret of a", "site-b", &m),
            Err(MarkerError::OtherSite("site-a".into()))
        );
        assert_eq!(
            verify(b"secret of a", "site-a", b"junk"),
            Err(MarkerError::Unreadable)
        );
    }
}
