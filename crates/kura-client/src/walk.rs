//! Walking: the local filesystem into an in-memory tree for backup, and stored snapshot trees
//! for `ls`, `diff` and restore.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use kura_core::Id;
use kura_core::tree::{Node, NodeKind, Tree};
use kura_repo::{MasterIndex, Repository};

use crate::pattern::Patterns;
use crate::state::Fingerprint;
use crate::{ClientError, Result, io_err};

/// Metadata kept for every entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta {
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Hard-link identity, 0 for a file with one link.
    pub hardlink: u64,
}

impl Meta {
    fn of(m: &fs::Metadata) -> Meta {
        let hardlink = if m.is_file() && m.nlink() > 1 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&m.dev().to_le_bytes());
            b[8..].copy_from_slice(&m.ino().to_le_bytes());
            let h = Id::of_bytes(&b);
            u64::from_le_bytes(h.0[..8].try_into().unwrap_or([1; 8])) | 1
        } else {
            0
        };
        Meta {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime_ns: nanos(m.mtime(), m.mtime_nsec()),
            hardlink,
        }
    }
}

/// Seconds and nanoseconds as nanoseconds since the epoch, saturating past the year 2262.
fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// The fingerprint of a file's metadata.
pub fn fingerprint(m: &fs::Metadata) -> Fingerprint {
    Fingerprint {
        size: m.len(),
        mtime_ns: nanos(m.mtime(), m.mtime_nsec()),
        ctime_ns: nanos(m.ctime(), m.ctime_nsec()),
        inode: m.ino(),
    }
}

/// An entry of the scanned filesystem.
#[derive(Debug)]
pub enum FsEntry {
    /// A directory.
    Dir(FsDir),
    /// A regular file; `job` indexes the scan's file list.
    File {
        /// Metadata.
        meta: Meta,
        /// Size.
        size: u64,
        /// Index into [`Scan::files`].
        job: usize,
    },
    /// A symbolic link.
    Symlink {
        /// Metadata.
        meta: Meta,
        /// Where it points.
        target: Vec<u8>,
    },
}

/// A scanned directory.
#[derive(Debug, Default)]
pub struct FsDir {
    /// Metadata.
    pub meta: Meta,
    /// Entries by name.
    pub children: BTreeMap<Vec<u8>, FsEntry>,
}

/// A regular file to back up.
#[derive(Debug)]
pub struct FileJob {
    /// Absolute path.
    pub path: PathBuf,
    /// Metadata at scan time.
    pub fp: Fingerprint,
    /// Whether the backup type's markers selected it as changed (always, for full and copy).
    pub carried: bool,
}

/// The result of scanning the roots.
#[derive(Debug, Default)]
pub struct Scan {
    /// The synthetic root directory mirroring the absolute roots.
    pub root: FsDir,
    /// Every regular file.
    pub files: Vec<FileJob>,
    /// Directories seen.
    pub dirs: u64,
    /// Total size of the files.
    pub bytes: u64,
    /// Entries that could not be read, with the reason.
    pub errors: Vec<String>,
}

/// Turns a user-given path into a clean absolute path (symlinks are not resolved).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).map_err(io_err(path))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Scans `roots`; `select(path, fingerprint)` decides which regular files the backup carries.
pub fn scan(
    roots: &[PathBuf],
    excludes: &Patterns,
    select: &dyn Fn(&[u8], &Fingerprint) -> bool,
) -> Result<Scan> {
    let mut scan = Scan::default();
    for root in roots {
        let meta = fs::symlink_metadata(root).map_err(io_err(root))?;
        let entry = entry_for(root, &meta, excludes, select, &mut scan, true);
        let names: Vec<Vec<u8>> = root
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        let Some((last, ancestors)) = names.split_last() else {
            // The root is `/` itself.
            if let Some(FsEntry::Dir(d)) = entry {
                scan.root = d;
            }
            continue;
        };
        // Mirror the root's ancestors as directories with their real metadata.
        let mut dir = &mut scan.root;
        let mut at = PathBuf::from("/");
        for name in ancestors {
            at.push(std::ffi::OsStr::from_bytes(name));
            // An ancestor that is a symlink (`/home` -> `var/home`) is recorded as the
            // directory it leads to, never with a symlink's 0777 mode.
            let m = fs::metadata(&at).map(|m| Meta::of(&m)).unwrap_or(Meta {
                mode: 0o755,
                ..Meta::default()
            });
            let child = dir.children.entry(name.clone()).or_insert_with(|| {
                FsEntry::Dir(FsDir {
                    meta: m,
                    children: BTreeMap::new(),
                })
            });
            dir = match child {
                FsEntry::Dir(d) => d,
                _ => {
                    return Err(ClientError::Usage(format!(
                        "{} is not a directory",
                        at.display()
                    )));
                }
            };
        }
        if let Some(e) = entry {
            dir.children.insert(last.clone(), e);
        }
    }
    Ok(scan)
}

fn entry_for(
    path: &Path,
    meta: &fs::Metadata,
    excludes: &Patterns,
    select: &dyn Fn(&[u8], &Fingerprint) -> bool,
    scan: &mut Scan,
    is_root: bool,
) -> Option<FsEntry> {
    if !is_root && excludes.matches(path) {
        return None;
    }
    let ft = meta.file_type();
    if ft.is_dir() {
        let mut dir = FsDir {
            meta: Meta::of(meta),
            children: BTreeMap::new(),
        };
        walk_dir(path, &mut dir, excludes, select, scan);
        scan.dirs += 1;
        Some(FsEntry::Dir(dir))
    } else if ft.is_file() {
        let fp = fingerprint(meta);
        scan.bytes += fp.size;
        scan.files.push(FileJob {
            path: path.to_path_buf(),
            fp,
            carried: select(path.as_os_str().as_bytes(), &fp),
        });
        Some(FsEntry::File {
            meta: Meta::of(meta),
            size: fp.size,
            job: scan.files.len() - 1,
        })
    } else if ft.is_symlink() {
        match fs::read_link(path) {
            Ok(t) => Some(FsEntry::Symlink {
                meta: Meta::of(meta),
                target: t.as_os_str().as_bytes().to_vec(),
            }),
            Err(e) => {
                scan.errors.push(format!("{}: {e}", path.display()));
                None
            }
        }
    } else {
        // Sockets, FIFOs and device nodes are not backed up.
        None
    }
}

fn walk_dir(
    path: &Path,
    dir: &mut FsDir,
    excludes: &Patterns,
    select: &dyn Fn(&[u8], &Fingerprint) -> bool,
    scan: &mut Scan,
) {
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            scan.errors.push(format!("{}: {e}", path.display()));
            return;
        }
    };
    let mut names: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => names.push((e.file_name().as_bytes().to_vec(), e.path())),
            Err(e) => scan.errors.push(format!("{}: {e}", path.display())),
        }
    }
    names.sort();
    for (name, child) in names {
        match fs::symlink_metadata(&child) {
            Ok(m) => {
                if let Some(e) = entry_for(&child, &m, excludes, select, scan, false) {
                    dir.children.insert(name, e);
                }
            }
            Err(e) => scan.errors.push(format!("{}: {e}", child.display())),
        }
    }
}

/// Visits every node of a stored tree depth-first, parents before children; `path` is the
/// node's absolute path in the snapshot. A visitor returning `false` skips a directory's contents.
pub fn visit_tree(
    repo: &Repository,
    index: &MasterIndex,
    tree: &Id,
    path: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
) -> Result<()> {
    let t = repo.load_tree(index, tree)?;
    for node in &t.nodes {
        let child = path.join(std::ffi::OsStr::from_bytes(&node.name));
        let descend = visit(&child, node)?;
        if descend && let (NodeKind::Dir, Some(sub)) = (node.kind, &node.subtree) {
            visit_tree(repo, index, sub, &child, visit)?;
        }
    }
    Ok(())
}

/// Finds the node at absolute `path` in a snapshot's root tree; `None` for the root itself.
pub fn find_node(
    repo: &Repository,
    index: &MasterIndex,
    root: &Id,
    path: &Path,
) -> Result<Option<Node>> {
    let mut tree: Tree = repo.load_tree(index, root)?;
    let mut found = None;
    let comps: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for (i, name) in comps.iter().enumerate() {
        let node = tree.find(name.as_bytes()).cloned().ok_or_else(|| {
            ClientError::Usage(format!("{} is not in the snapshot", path.display()))
        })?;
        if i + 1 < comps.len() {
            let sub = node.subtree.ok_or_else(|| {
                ClientError::Usage(format!("{} is not in the snapshot", path.display()))
            })?;
            tree = repo.load_tree(index, &sub)?;
        }
        found = Some(node);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_cleans_paths() {
        assert_eq!(
            absolute(Path::new("/a/./b/../c/")).unwrap(),
            PathBuf::from("/a/c")
        );
        assert!(absolute(Path::new("rel")).unwrap().is_absolute());
    }

    #[test]
    fn scan_mirrors_roots_and_skips_excluded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a.txt"), b"a").unwrap();
        fs::write(root.join("b.tmp"), b"b").unwrap();
        fs::write(root.join("sub/c"), b"cc").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        let ex = Patterns::new(&["*.tmp".into()]).unwrap();
        let s = scan(&[absolute(&root).unwrap()], &ex, &|_, _| true).unwrap();
        assert_eq!(s.files.len(), 2);
        assert_eq!(s.bytes, 3);
        let mut d = &s.root;
        for c in root.components().skip(1) {
            d = match &d.children[c.as_os_str().as_bytes()] {
                FsEntry::Dir(d) => d,
                other => panic!("{other:?}"),
            };
        }
        let names: Vec<&[u8]> = d.children.keys().map(|k| k.as_slice()).collect();
        assert_eq!(names, vec![&b"a.txt"[..], b"link", b"sub"]);
        let s = scan(&[absolute(&root).unwrap()], &ex, &|p, _| p.ends_with(b"/c")).unwrap();
        let carried: Vec<bool> = s.files.iter().map(|f| f.carried).collect();
        assert_eq!(
            carried,
            vec![false, true],
            "every file is scanned, one carried"
        );
    }
}
