//! The service's storage sites (`docs/requirements/placement.md`): each is a local directory
//! (`file:///path`, the embedded default) or a bucket of any S3-compatible store
//! (`s3://bucket?endpoint=http://host:3900&region=garage`), reached through `object_store`.
//!
//! A [`Site`] refuses to be written until it has proved it is the configured site (its marker,
//! [`kura_placement::marker`]); seals every copy under its current key
//! ([`kura_placement::envelope`]); and checks every copy it writes by reading it back, and
//! every copy it reads by opening it, retrying a bounded number of times before it gives up.

use std::sync::Arc;

use bytes::Bytes;
use kura_core::conditions::{CopyCondition, CopyStatus};
use kura_core::crypto::Key;
use kura_placement::envelope::{self, Keyring};
use kura_placement::marker::{self, MARKER_NAME};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

/// How often a copy is written or read again after a checksum mismatch.
pub const RETRIES: u32 = 3;
/// How long connecting to an S3 site may take: a site that is down must not hold a backup up.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long one request to an S3 site may take (a copy is at most a few tens of MiB).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Transport retries: a few quick ones, then the site counts as down and placement moves on.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: std::time::Duration::from_secs(15),
    }
}

/// A site as the operator declares it in the service configuration.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The site's id (names its keys and appears in the storage conditions).
    pub id: String,
    /// Its region.
    pub region: String,
    /// `file:///absolute/path` or `s3://bucket?endpoint=URL&region=REGION`.
    pub url: String,
    /// S3 access key id.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// The secret the site's marker is made with.
    pub secret: String,
    /// Risk score for placement until a risk feed covers the site's region.
    #[serde(default)]
    pub risk: f64,
}

/// Without the secrets, so a configuration printed in a log or an error gives none away.
impl std::fmt::Debug for SiteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteConfig")
            .field("id", &self.id)
            .field("region", &self.region)
            .field("url", &self.url)
            .field("access_key_id", &self.access_key_id)
            .field("risk", &self.risk)
            .finish_non_exhaustive()
    }
}

/// A site failure.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The configuration cannot be used.
    #[error("site {site}: {message}")]
    Config {
        /// Which site.
        site: String,
        /// What is wrong.
        message: String,
    },
    /// The site did not prove it is the configured one; it is not written to.
    #[error("site {site} failed authentication: {reason}")]
    Authentication {
        /// Which site.
        site: String,
        /// Why.
        reason: String,
    },
    /// A copy did not check out after every retry.
    #[error("site {site}: {name}: {reason}")]
    Damaged {
        /// Which site.
        site: String,
        /// Which object.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// The object is not at the site.
    #[error("site {site}: {name} not found")]
    NotFound {
        /// Which site.
        site: String,
        /// Which object.
        name: String,
    },
    /// The store failed.
    #[error("site {site}: {source}")]
    Store {
        /// Which site.
        site: String,
        /// The cause.
        source: object_store::Error,
    },
}

/// Bytes of an object sealed at a time, on the blocking pool.
const BLOCK: usize = 4 * envelope::SEGMENT as usize;
/// Bytes of a copy sent in one request. A longer copy goes as a multipart upload in parts
/// this large (S3 wants at least 5 MiB in every part but the last), one part in flight, so
/// storing an object holds a few parts whatever its size.
pub const PART: usize = 6 << 20;

/// An object to be stored, read a part at a time: held in memory, or received into a file.
pub trait Source: Send + Sync {
    /// Bytes of the object.
    fn size(&self) -> u64;
    /// Fills `buf` with the object's bytes from `offset` on.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl Source for Bytes {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        read_slice(self, buf, offset)
    }
}

impl Source for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        read_slice(self, buf, offset)
    }
}

fn read_slice(object: &[u8], buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    let part = usize::try_from(offset)
        .ok()
        .and_then(|at| object.get(at..at.checked_add(buf.len())?))
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
    buf.copy_from_slice(part);
    Ok(())
}

/// The BLAKE3 digest of a copy as written or read back.
type Digest = [u8; 32];

/// The digest of `file`, read from its start.
fn file_digest(mut file: std::fs::File) -> std::io::Result<Digest> {
    use std::io::Seek;
    file.rewind()?;
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(*hasher.finalize().as_bytes())
}

/// One storage site.
pub struct Site {
    config: SiteConfig,
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Site({} in {})", self.config.id, self.config.region)
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

impl Site {
    /// Connects to a site (nothing is read or written yet).
    pub fn open(config: SiteConfig) -> Result<Site, SiteError> {
        let bad = |message: String| SiteError::Config {
            site: config.id.clone(),
            message,
        };
        let store: Arc<dyn ObjectStore> = if let Some(path) = config.url.strip_prefix("file://") {
            std::fs::create_dir_all(path).map_err(|e| bad(format!("{path}: {e}")))?;
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| bad(e.to_string()))?,
            )
        } else if let Some(rest) = config.url.strip_prefix("s3://") {
            let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
            // Client options first: setting them replaces any set before (allow_http too).
            let mut b = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_retry(retry())
                .with_client_options(
                    object_store::ClientOptions::default()
                        .with_connect_timeout(CONNECT_TIMEOUT)
                        .with_timeout(REQUEST_TIMEOUT),
                );
            if let Some(endpoint) = query_param(query, "endpoint") {
                b = b
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(region) = query_param(query, "region") {
                b = b.with_region(region);
            }
            if let Some(k) = &config.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(k) = &config.secret_access_key {
                b = b.with_secret_access_key(k);
            }
            Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
        } else {
            return Err(bad(format!(
                "url {:?}: expected file:///path or s3://bucket?endpoint=...&region=...",
                config.url
            )));
        };
        Ok(Site { config, store })
    }

    /// The site's id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The site's region.
    pub fn region(&self) -> &str {
        &self.config.region
    }

    fn store_error(&self, source: object_store::Error) -> SiteError {
        match source {
            object_store::Error::NotFound { .. } => SiteError::NotFound {
                site: self.config.id.clone(),
                name: String::new(),
            },
            source => SiteError::Store {
                site: self.config.id.clone(),
                source,
            },
        }
    }

    /// Writes the site's marker if it has none (a new site), then authenticates it.
    pub async fn initialize(&self) -> Result<(), SiteError> {
        let path = Path::from(MARKER_NAME);
        match self.store.get(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                let m = marker::make(self.config.secret.as_bytes(), &self.config.id);
                self.store
                    .put(&path, PutPayload::from(m))
                    .await
                    .map_err(|e| self.store_error(e))?;
            }
            Err(e) => return Err(self.store_error(e)),
        }
        self.authenticate().await
    }

    /// Checks that the site holds the marker only the configured site can have.
    pub async fn authenticate(&self) -> Result<(), SiteError> {
        let fail = |reason: String| SiteError::Authentication {
            site: self.config.id.clone(),
            reason,
        };
        let marker = match self.store.get(&Path::from(MARKER_NAME)).await {
            Ok(r) => r.bytes().await.map_err(|e| self.store_error(e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(fail("it has no marker".into()));
            }
            Err(e) => return Err(self.store_error(e)),
        };
        marker::verify(self.config.secret.as_bytes(), &self.config.id, &marker)
            .map_err(|e| fail(e.to_string()))
    }

    /// Stores `object` as `name`, sealed under version `version` of the site's key, and reads
    /// it back to check it; returns what the storage conditions say of the copy. The object is
    /// read, sealed and sent a block at a time, and the copy read back is compared by digest,
    /// so neither the object nor its copy is ever held whole.
    pub async fn put(
        &self,
        (version, key): (u32, &Key),
        name: &str,
        object: Arc<dyn Source>,
    ) -> Result<CopyCondition, SiteError> {
        let sealer = Arc::new(envelope::Sealer::new(
            key,
            version,
            &self.config.id,
            name,
            object.size(),
        ));
        let path = Path::from(name);
        let mut last = String::new();
        for _ in 0..RETRIES {
            let written = self.write(&sealer, &path, &object).await?;
            let back = self
                .store
                .get(&path)
                .await
                .map_err(|e| self.store_error(e))?;
            if self.digest(back).await? == written {
                // A site whose identity changed while the copy was written (its marker is
                // gone or forged now) must not be trusted with it: the caller places it
                // elsewhere.
                self.authenticate().await?;
                return Ok(CopyCondition {
                    site: self.config.id.clone(),
                    region: self.config.region.clone(),
                    status: CopyStatus::Ok,
                    algorithm: envelope::ALGORITHM.into(),
                    key_ref: envelope::key_ref(&self.config.id, version),
                    detail: None,
                });
            }
            last = "the copy read back does not match what was written".into();
        }
        Err(SiteError::Damaged {
            site: self.config.id.clone(),
            name: name.into(),
            reason: last,
        })
    }

    /// Writes one copy of `object` as `path`; returns the digest of what was written. A copy
    /// cut short is never visible: a short one is one request, a long one a multipart
    /// upload that is aborted on failure.
    async fn write(
        &self,
        sealer: &Arc<envelope::Sealer>,
        path: &Path,
        object: &Arc<dyn Source>,
    ) -> Result<Digest, SiteError> {
        let mut out = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            path.clone(),
            PART,
        )
        .with_max_concurrency(1);
        match self.write_blocks(sealer, object, &mut out).await {
            Ok(digest) => {
                // A multipart upload that fails to finish is aborted by the writer itself.
                let mut out = std::pin::Pin::new(&mut out);
                std::future::poll_fn(|cx| tokio::io::AsyncWrite::poll_shutdown(out.as_mut(), cx))
                    .await
                    .map(|()| digest)
                    .map_err(|e| self.io_error(e))
            }
            Err(e) => {
                // What is left of a failed upload is the store's to clear if this fails too:
                // the copy is not visible either way, and the failure that matters is `e`.
                let _ = out.abort().await;
                Err(e)
            }
        }
    }

    async fn write_blocks(
        &self,
        sealer: &Arc<envelope::Sealer>,
        object: &Arc<dyn Source>,
        out: &mut object_store::buffered::BufWriter,
    ) -> Result<Digest, SiteError> {
        let len = object.size();
        let header = sealer.header();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&header);
        out.put(Bytes::copy_from_slice(&header))
            .await
            .map_err(|e| self.store_error(e))?;
        let mut at = 0u64;
        loop {
            let n = (len - at).min(BLOCK as u64) as usize;
            let (sealer, object) = (sealer.clone(), object.clone());
            let sealed = tokio::task::spawn_blocking(move || {
                let mut plain = vec![0u8; n];
                object.read_at(&mut plain, at)?;
                let segments = n.div_ceil(envelope::SEGMENT as usize).max(1);
                let mut sealed = Vec::with_capacity(n + segments * kura_core::crypto::OVERHEAD);
                sealer.seal(at / u64::from(envelope::SEGMENT), &plain, &mut sealed);
                hasher.update(&sealed);
                Ok::<_, std::io::Error>((sealed, hasher))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| self.io_error(e))?;
            hasher = sealed.1;
            out.put(Bytes::from(sealed.0))
                .await
                .map_err(|e| self.store_error(e))?;
            at += n as u64;
            if at >= len {
                return Ok(*hasher.finalize().as_bytes());
            }
        }
    }

    fn io_error(&self, e: std::io::Error) -> SiteError {
        self.store_error(object_store::Error::Generic {
            store: "site",
            source: Box::new(e),
        })
    }

    /// The digest of a copy as it is read back.
    async fn digest(&self, back: object_store::GetResult) -> Result<Digest, SiteError> {
        use futures_util::StreamExt;
        // A directory site's copy is read in one blocking pass: its stream would hand the
        // file over in 8 KiB chunks, each a trip through the blocking pool.
        if let object_store::GetResultPayload::File(file, _) = back.payload {
            return tokio::task::spawn_blocking(move || file_digest(file))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|e| self.io_error(e));
        }
        let mut stream = back.into_stream();
        let mut hasher = blake3::Hasher::new();
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.map_err(|e| self.store_error(e))?);
        }
        Ok(*hasher.finalize().as_bytes())
    }

    /// Reads `name` back and opens it; a copy that does not open (changed, truncated, moved)
    /// is read again, then reported damaged. This is also the site's check of its own media
    /// when an integrity check found a copy wanting.
    pub async fn get(&self, keyring: &Keyring, name: &str) -> Result<Vec<u8>, SiteError> {
        let mut last = None;
        for _ in 0..RETRIES {
            let copy = self.fetch(name).await?;
            match self.unseal(keyring, name, &copy) {
                Ok(plain) => return Ok(plain),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| SiteError::Damaged {
            site: self.config.id.clone(),
            name: name.into(),
            reason: "not read".into(),
        }))
    }

    /// The copy `name` as stored, sealed.
    pub async fn fetch(&self, name: &str) -> Result<bytes::Bytes, SiteError> {
        match self.store.get(&Path::from(name)).await {
            Ok(r) => r.bytes().await.map_err(|e| self.store_error(e)),
            Err(object_store::Error::NotFound { .. }) => Err(SiteError::NotFound {
                site: self.config.id.clone(),
                name: name.into(),
            }),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// Opens a copy of `name` fetched from this site.
    pub fn unseal(&self, keyring: &Keyring, name: &str, copy: &[u8]) -> Result<Vec<u8>, SiteError> {
        envelope::open(keyring, &self.config.id, name, copy).map_err(|e| SiteError::Damaged {
            site: self.config.id.clone(),
            name: name.into(),
            reason: e.to_string(),
        })
    }

    /// Reads bytes `start..end` of the object `name` of `len` bytes: fetches the copy's header
    /// and only the segments that hold them, and opens those. A part that does not open is
    /// read again, then reported damaged.
    pub async fn get_range(
        &self,
        keyring: &Keyring,
        name: &str,
        len: u64,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, SiteError> {
        let path = Path::from(name);
        let damaged = |reason: String| SiteError::Damaged {
            site: self.config.id.clone(),
            name: name.into(),
            reason,
        };
        if start >= end || end > len {
            return Err(damaged(format!(
                "no bytes {start}..{end} in an object of {len}"
            )));
        }
        // Where the part lies: the catalog knows the length, and copies are written with this
        // build's segment size; a copy written with another is read again where its header
        // says. The header read back gives the key version, and every segment's AAD checks it
        // all.
        let mut segment = envelope::SEGMENT;
        let header = 0..envelope::HEADER as u64;
        let mut last = String::new();
        let mut tries = 0;
        while tries < RETRIES {
            tries += 1;
            let expected = envelope::Layout {
                version: 0,
                segment,
                len,
            };
            let (at, span, first) = expected.span(start, end);
            let parts = match self
                .store
                .get_ranges(&path, &[header.clone(), at..at + span])
                .await
            {
                Ok(p) => p,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(SiteError::NotFound {
                        site: self.config.id.clone(),
                        name: name.into(),
                    });
                }
                // A copy shorter than its length is refused as a range out of bounds, which
                // stores do not tell apart from other failures: the whole copy says which.
                Err(_) => {
                    let whole = self.get(keyring, name).await?;
                    return match whole.get(start as usize..end as usize) {
                        Some(part) if whole.len() as u64 == len => {
                            Ok(bytes::Bytes::copy_from_slice(part))
                        }
                        _ => Err(damaged(format!(
                            "it holds {} bytes, not {len}",
                            whole.len()
                        ))),
                    };
                }
            };
            if let Ok(layout) = envelope::Layout::parse(&parts[0])
                && layout.segment != segment
                && segment == envelope::SEGMENT
            {
                segment = layout.segment;
                tries -= 1;
                continue;
            }
            let opened = envelope::Layout::parse(&parts[0]).and_then(|layout| {
                let plain = envelope::open_segments(
                    keyring,
                    &self.config.id,
                    name,
                    &layout,
                    first,
                    &parts[1],
                )?;
                // The part, without copying it out of the opened segments.
                let skip = (start - first * u64::from(layout.segment)) as usize;
                let want = skip..skip + (end - start) as usize;
                if want.end > plain.len() {
                    return Err(kura_core::FormatError::Truncated("site copy"));
                }
                Ok(bytes::Bytes::from(plain).slice(want))
            });
            match opened {
                Ok(part) => return Ok(part),
                Err(e) => last = e.to_string(),
            }
        }
        Err(damaged(last))
    }

    /// Removes `name`; removing what is not there is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), SiteError> {
        match self.store.delete(&Path::from(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_config_shows_no_secret() {
        let c = SiteConfig {
            id: "tokyo-1".into(),
            region: "kanto".into(),
            url: "s3://b?endpoint=http://127.0.0.1:3900".into(),
            access_key_id: Some("GK123".into()),
            secret_access_key: Some("very secret key".into()),
            secret: "marker secret".into(),
            risk: 0.1,
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("tokyo-1") && shown.contains("GK123"),
            "{shown}"
        );
        assert!(!shown.contains("very secret") && !shown.contains("marker secret"));
    }

    #[tokio::test]
    async fn objects_of_every_size_are_stored_a_block_at_a_time_and_read_back_whole() {
        let dir = std::env::temp_dir().join(format!("kura-sites-put-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let site = Site::open(SiteConfig {
            id: "here".into(),
            region: "kanto".into(),
            url: format!("file://{}", dir.display()),
            access_key_id: None,
            secret_access_key: None,
            secret: "marker secret".into(),
            risk: 0.0,
        })
        .unwrap();
        site.initialize().await.unwrap();
        let mut ring = Keyring::default();
        let key = ring.current("here");
        // Empty, one block, a block and a byte, and more than two parts (a multipart upload).
        for len in [0, BLOCK, BLOCK + 1, 2 * PART + 12_345] {
            let object = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            let name = format!("data/{len}");
            let copy = site
                .put((key.0, &key.1), &name, Arc::new(object.clone()))
                .await
                .unwrap();
            assert_eq!(copy.status, CopyStatus::Ok);
            assert_eq!(site.get(&ring, &name).await.unwrap(), object, "{len} bytes");
            // The digest compared is the copy's, byte for byte.
            let stored = std::fs::File::open(dir.join(&name)).unwrap();
            let sealed = site.fetch(&name).await.unwrap();
            assert_eq!(
                file_digest(stored).unwrap(),
                *blake3::hash(&sealed).as_bytes()
            );
        }
        // No staging file is left beside the copies.
        let left: Vec<_> = std::fs::read_dir(dir.join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains('#'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
