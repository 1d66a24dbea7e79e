//! A key split into shares, any `threshold` of which rebuild it and fewer of which say nothing
//! about it (Shamir's scheme over GF(256), from the `vsss-rs` crate). Kura's use: one share at
//! the key manager, one inside each registered value at the vault, and optionally a printed
//! recovery share, so neither service alone can rebuild the key (value-vault.md requirement 6).

use kura_core::crypto::Key;

use crate::WalletError;

/// Splits `key` into `count` shares, any `threshold` of which rebuild it. Each share is its
/// number (1 to 255) followed by 32 bytes.
pub fn split(key: &Key, threshold: usize, count: usize) -> Result<Vec<Vec<u8>>, WalletError> {
    if !(2..=count).contains(&threshold) || count > 255 {
        return Err(WalletError::Shares(format!(
            "{threshold} of {count} shares: a threshold from 2 to the count, at most 255"
        )));
    }
    vsss_rs::Gf256::split_bytes(threshold, count, key.expose(), rand::rng())
        .map_err(|e| WalletError::Shares(format!("splitting: {e:?}")))
}

/// Rebuilds a key from shares. Too few, or a wrong share, rebuild a different key: the caller
/// finds out when the key does not open what it should.
pub fn combine(shares: &[Vec<u8>]) -> Result<Key, WalletError> {
    if shares.len() < 2 || shares.iter().any(|s| s.len() != 33) {
        return Err(WalletError::Shares(
            "shares are 33 bytes, and at least two are needed".into(),
        ));
    }
    let bytes = vsss_rs::Gf256::combine_bytes(shares)
        .map_err(|e| WalletError::Shares(format!("combining: {e:?}")))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| WalletError::Shares("the shares do not make a 32-byte key".into()))?;
    Ok(Key::from_bytes(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_two_of_three_rebuild_the_key_and_one_alone_does_not() {
        let key = Key::random();
        let s = split(&key, 2, 3).unwrap();
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let got = combine(&[s[pair[0]].clone(), s[pair[1]].clone()]).unwrap();
            assert_eq!(got, key);
        }
        assert!(combine(&s[..1]).is_err());
        let other = split(&Key::random(), 2, 3).unwrap();
        assert_ne!(combine(&[s[0].clone(), other[1].clone()]).ok(), Some(key));
        assert!(split(&Key::random(), 1, 3).is_err());
        assert!(split(&Key::random(), 4, 3).is_err());
    }
}
