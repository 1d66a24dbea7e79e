//! `kura dump`: one file of a snapshot to a writer, or a directory as a tar archive, read blob
//! by blob so nothing larger than a blob is held in memory.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use kura_core::Id;
use kura_core::tree::{Node, NodeKind};
use kura_repo::{MasterIndex, RepoError, Repository};

use crate::walk::{LostTree, visit_tree};
use crate::{ClientError, Result};

/// A file's content as a reader: its blobs read, decrypted and verified one at a time, and the
/// total checked against the size the tree records.
pub struct Content<'a> {
    repo: &'a Repository,
    index: &'a MasterIndex,
    path: &'a Path,
    blobs: std::slice::Iter<'a, Id>,
    size: u64,
    read: u64,
    buf: Vec<u8>,
    at: usize,
}

impl<'a> Content<'a> {
    /// The content of `node`, a file at `path`.
    pub fn new(
        repo: &'a Repository,
        index: &'a MasterIndex,
        path: &'a Path,
        node: &'a Node,
    ) -> Content<'a> {
        Content {
            repo,
            index,
            path,
            blobs: node.content.iter(),
            size: node.size,
            read: 0,
            buf: Vec::new(),
            at: 0,
        }
    }

    fn damaged(&self, why: String) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {why}", self.path.display()),
        )
    }
}

impl Read for Content<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            let Some(id) = self.blobs.next() else {
                if self.read != self.size {
                    return Err(self.damaged(format!(
                        "its blobs hold {} bytes, the snapshot says {}",
                        self.read, self.size
                    )));
                }
                return Ok(0);
            };
            self.buf = match self.repo.read_blob(self.index, id) {
                Ok(b) => b,
                Err(RepoError::MissingBlob(_)) if self.index.external(id).is_some() => {
                    return Err(self.damaged(
                        "its data is in a baseline, not in the repository (restore it with \
                         `kura restore --baseline`)"
                            .into(),
                    ));
                }
                Err(e) => return Err(self.damaged(e.to_string())),
            };
            self.at = 0;
            self.read += self.buf.len() as u64;
            if self.read > self.size {
                return Err(self.damaged(format!(
                    "its blobs hold more than the {} bytes the snapshot says",
                    self.size
                )));
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// What a tar dump wrote.
#[derive(Debug, Default)]
pub struct Archived {
    /// Entries written.
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Directories whose listing could not be read (their contents are missing).
    pub lost: Vec<LostTree>,
}

/// Writes the directory `node` at absolute `path` and everything under it to `out` as a tar
/// archive (paths relative to the root, as tar has them); `None` with the snapshot's root
/// tree dumps the whole snapshot.
pub fn tar(
    repo: &Repository,
    index: &MasterIndex,
    path: &Path,
    node: Option<&Node>,
    root: &Id,
    out: impl Write,
) -> Result<Archived> {
    let mut ar = tar::Builder::new(out);
    ar.mode(tar::HeaderMode::Complete);
    let mut done = Archived::default();
    let fail = |e: std::io::Error| ClientError::Io {
        path: "the archive".into(),
        source: e,
    };
    if let Some(n) = node {
        append(&mut ar, repo, index, path, n, &mut done).map_err(fail)?;
    }
    let tree = node.and_then(|n| n.subtree).unwrap_or(*root);
    let mut lost = Vec::new();
    let mut failed = None;
    let mut visit = |p: &Path, n: &Node| {
        if let Err(e) = append(&mut ar, repo, index, p, n, &mut done) {
            failed = Some(e);
            return Err(ClientError::Usage(String::new()));
        }
        Ok(true)
    };
    let walked = visit_tree(repo, index, &tree, path, &mut visit, &mut lost);
    if let Some(e) = failed {
        return Err(fail(e));
    }
    walked?;
    ar.finish().map_err(fail)?;
    done.lost = lost;
    Ok(done)
}

/// Appends one entry.
fn append<W: Write>(
    ar: &mut tar::Builder<W>,
    repo: &Repository,
    index: &MasterIndex,
    path: &Path,
    n: &Node,
    done: &mut Archived,
) -> std::io::Result<()> {
    let name = path.strip_prefix("/").unwrap_or(path);
    if name.as_os_str().is_empty() {
        return Ok(());
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(n.mode);
    h.set_uid(u64::from(n.uid));
    h.set_gid(u64::from(n.gid));
    h.set_mtime(u64::try_from(n.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0));
    h.set_size(0);
    let kind = match n.kind {
        NodeKind::File => tar::EntryType::Regular,
        NodeKind::Dir => tar::EntryType::Directory,
        NodeKind::Symlink => tar::EntryType::Symlink,
        NodeKind::Fifo => tar::EntryType::Fifo,
        NodeKind::CharDevice => tar::EntryType::Char,
        NodeKind::BlockDevice => tar::EntryType::Block,
    };
    h.set_entry_type(kind);
    done.entries += 1;
    match n.kind {
        NodeKind::File => {
            h.set_size(n.size);
            done.bytes += n.size;
            ar.append_data(&mut h, name, Content::new(repo, index, path, n))
        }
        NodeKind::Symlink => {
            let target = n.target.as_deref().unwrap_or_default();
            ar.append_link(&mut h, name, OsStr::from_bytes(target))
        }
        NodeKind::CharDevice | NodeKind::BlockDevice => {
            h.set_device_major(libc::major(n.rdev as libc::dev_t))?;
            h.set_device_minor(libc::minor(n.rdev as libc::dev_t))?;
            ar.append_data(&mut h, name, std::io::empty())
        }
        _ => ar.append_data(&mut h, name, std::io::empty()),
    }
}
