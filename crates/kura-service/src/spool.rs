//! Request bodies as the service holds them: the first [`SPILL`] bytes in memory, anything
//! longer in a file of the service's own, so what a request costs in memory does not grow with
//! its body. The file has no name (it is unlinked as soon as it is made), so a killed service
//! leaves nothing behind; the SHA-256 is taken as the body arrives.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::digest;

/// Bytes of a body held in memory before the rest goes to a file.
pub const SPILL: usize = 1 << 20;

/// Where the bytes are.
enum Held {
    Memory(Vec<u8>),
    File(File),
}

/// An object's bytes received (or assembled from pieces), with their length and SHA-256.
pub struct Spool {
    held: Held,
    len: u64,
    sha256: String,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spool({} bytes, sha256 {})", self.len, self.sha256)
    }
}

/// Where spilled bodies go under the data directory; emptied when the service starts.
pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("spool")
}

/// Makes the spool directory, private, and removes whatever a killed service left in it.
pub fn clear(data_dir: &Path) -> io::Result<()> {
    let dir = spool_dir(data_dir);
    kura_repo::backend::private_dir(&dir)?;
    for entry in fs::read_dir(&dir)? {
        fs::remove_file(entry?.path())?;
    }
    Ok(())
}

/// A body being received: bytes since the last write, and the file once there is one.
pub struct Receiver {
    dir: PathBuf,
    buf: Vec<u8>,
    file: Option<Arc<File>>,
    written: u64,
    sha: digest::Context,
}

impl Receiver {
    /// A body to be received, spilling to a file in `dir` (see [`spool_dir`]).
    pub fn new(dir: PathBuf) -> Receiver {
        Receiver {
            dir,
            buf: Vec::new(),
            file: None,
            written: 0,
            sha: digest::Context::new(&digest::SHA256),
        }
    }

    /// Takes the next part of the body.
    pub async fn push(&mut self, data: &[u8]) -> io::Result<()> {
        self.sha.update(data);
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SPILL {
            self.write().await?;
        }
        Ok(())
    }

    /// Writes what is buffered to the file, making it first.
    async fn write(&mut self) -> io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let (dir, file, at) = (self.dir.clone(), self.file.clone(), self.written);
        let (file, buf) = tokio::task::spawn_blocking(move || {
            let file = match file {
                Some(f) => f,
                None => Arc::new(unnamed_file(&dir)?),
            };
            file.write_all_at(&buf, at)?;
            Ok::<_, io::Error>((file, buf))
        })
        .await
        .map_err(io::Error::other)??;
        self.written += buf.len() as u64;
        self.file = Some(file);
        // The buffer is used again: its memory was already counted.
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }

    /// The whole body.
    pub async fn finish(mut self) -> io::Result<Spool> {
        let sha256 = kura_core::id::hex(self.sha.clone().finish().as_ref());
        if self.file.is_none() {
            let len = self.buf.len() as u64;
            return Ok(Spool {
                held: Held::Memory(self.buf),
                len,
                sha256,
            });
        }
        if !self.buf.is_empty() {
            self.write().await?;
        }
        let file = self
            .file
            .take()
            .and_then(Arc::into_inner)
            .ok_or_else(|| io::Error::other("the spool file is still shared"))?;
        Ok(Spool {
            held: Held::File(file),
            len: self.written,
            sha256,
        })
    }
}

/// A file only the service can read, with no name: made in `dir`, then unlinked.
fn unnamed_file(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let name: [u8; 12] = kura_core::crypto::random_bytes();
    let path = dir.join(kura_core::id::hex(&name));
    let open = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
    };
    let file = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            kura_repo::backend::private_dir(dir)?;
            open()?
        }
        opened => opened?,
    };
    fs::remove_file(&path)?;
    Ok(file)
}

impl Spool {
    /// An object already in `file` (a finished upload): its first `len` bytes, whose SHA-256
    /// the caller has checked is `sha256`.
    pub fn from_file(file: File, len: u64, sha256: String) -> Spool {
        Spool {
            held: Held::File(file),
            len,
            sha256,
        }
    }

    /// Bytes of the object.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its SHA-256, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// An object already in memory.
impl From<Vec<u8>> for Spool {
    fn from(data: Vec<u8>) -> Spool {
        Spool {
            len: data.len() as u64,
            sha256: kura_repo::transfer::sha256_hex(&data),
            held: Held::Memory(data),
        }
    }
}

impl kura_sites::Source for Spool {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        match &self.held {
            Held::Memory(m) => {
                buf.copy_from_slice(&m[offset as usize..end as usize]);
                Ok(())
            }
            Held::File(f) => f.read_exact_at(buf, offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_sites::Source;

    fn object(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8).collect()
    }

    #[tokio::test]
    async fn a_body_spills_to_a_file_with_no_name_and_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 10, SPILL - 1, SPILL, 3 * SPILL + 7] {
            let body = object(len);
            let mut r = Receiver::new(dir.path().to_path_buf());
            for part in body.chunks(100_000) {
                r.push(part).await.unwrap();
            }
            let spool = r.finish().await.unwrap();
            assert_eq!(spool.len(), len as u64);
            assert_eq!(spool.sha256(), kura_repo::transfer::sha256_hex(&body));
            assert_eq!(matches!(spool.held, Held::File(_)), len >= SPILL);
            let mut back = vec![0u8; len];
            spool.read_at(&mut back, 0).unwrap();
            assert_eq!(back, body);
            let mut past = [0u8; 1];
            assert!(spool.read_at(&mut past, len as u64).is_err());
            // Nothing in the directory: the file had no name.
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn clearing_removes_what_a_killed_service_left() {
        let data = tempfile::tempdir().unwrap();
        clear(data.path()).unwrap();
        fs::write(spool_dir(data.path()).join("left"), b"x").unwrap();
        clear(data.path()).unwrap();
        assert_eq!(fs::read_dir(spool_dir(data.path())).unwrap().count(), 0);
    }
}
