//! Walking: the local filesystem into an in-memory tree for backup, and stored snapshot trees
//! for `ls`, `diff` and restore.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use kura_core::Id;
use kura_core::tree::{Node, NodeKind, Tree, Xattr};
use kura_repo::{MasterIndex, Repository};

use crate::pattern::Patterns;
use crate::state::Fingerprint;
use crate::{ClientError, Result, io_err};

/// Metadata kept for every entry.
#[derive(Debug, Clone, Default)]
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
    /// Device number, for a device node.
    pub rdev: u64,
    /// Extended attributes.
    pub xattrs: Vec<Xattr>,
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
            mtime_ns: mtime_ns(m),
            hardlink,
            rdev: 0,
            xattrs: Vec::new(),
        }
    }
}

/// Seconds and nanoseconds as nanoseconds since the epoch, saturating past the year 2262.
fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// A file's modification time in nanoseconds since the epoch, as snapshots record it.
pub(crate) fn mtime_ns(m: &fs::Metadata) -> i64 {
    nanos(m.mtime(), m.mtime_nsec())
}

/// The fingerprint of a file's metadata.
pub fn fingerprint(m: &fs::Metadata) -> Fingerprint {
    Fingerprint {
        size: m.len(),
        mtime_ns: mtime_ns(m),
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
    /// A FIFO or a device node.
    Special {
        /// Metadata (with the device number).
        meta: Meta,
        /// Which.
        kind: NodeKind,
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

/// The scan of one file (spooled from standard input) as a file `name` at the root, the way
/// `backup --stdin` records it.
pub fn single_file_at_root(root: FsDir, name: &str) -> Result<FsDir> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(ClientError::Usage(format!(
            "--stdin-filename {name:?}: a file name, without /"
        )));
    }
    let meta = root.meta.clone();
    let mut dir = root;
    loop {
        let Some((_, entry)) = dir.children.into_iter().next() else {
            return Err(ClientError::Usage("standard input was not read".into()));
        };
        match entry {
            FsEntry::Dir(d) => dir = d,
            file @ FsEntry::File { .. } => {
                return Ok(FsDir {
                    meta,
                    children: BTreeMap::from([(name.as_bytes().to_vec(), file)]),
                });
            }
            _ => return Err(ClientError::Usage("standard input was not read".into())),
        }
    }
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

/// What a scan leaves out, besides what the backup type does not carry.
#[derive(Debug, Default)]
pub struct ScanOptions {
    /// Entries matching these are left out.
    pub excludes: Patterns,
    /// Do not descend into directories on another filesystem than their root's (the mount
    /// point itself is kept, empty).
    pub one_file_system: bool,
    /// Leave out the contents of directories marked with a valid `CACHEDIR.TAG` (the tag file
    /// itself is kept).
    pub exclude_caches: bool,
}

/// The signature that starts a valid `CACHEDIR.TAG` (https://bford.info/cachedir/).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Scans `roots`; `select(path, fingerprint)` decides which regular files the backup carries.
pub fn scan(
    roots: &[PathBuf],
    opts: &ScanOptions,
    select: &dyn Fn(&[u8], &Fingerprint) -> bool,
) -> Result<Scan> {
    let mut scanner = Scanner {
        opts,
        select,
        scan: Scan::default(),
        root_dev: 0,
    };
    for root in roots {
        let meta = fs::symlink_metadata(root).map_err(io_err(root))?;
        scanner.root_dev = meta.dev();
        let entry = scanner.entry(root, &meta, true);
        let scan = &mut scanner.scan;
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
    Ok(scanner.scan)
}

/// One scan in progress.
struct Scanner<'a> {
    opts: &'a ScanOptions,
    select: &'a dyn Fn(&[u8], &Fingerprint) -> bool,
    scan: Scan,
    /// The filesystem of the root being scanned.
    root_dev: u64,
}

impl Scanner<'_> {
    fn entry(&mut self, path: &Path, meta: &fs::Metadata, is_root: bool) -> Option<FsEntry> {
        if !is_root && self.opts.excludes.matches(path) {
            return None;
        }
        let ft = meta.file_type();
        let mut m = Meta::of(meta);
        match crate::xattr::read(path) {
            Ok(x) => m.xattrs = x,
            Err(e) => self.scan.errors.push(format!(
                "{}: extended attributes: {e} (backed up without them)",
                path.display()
            )),
        }
        if ft.is_dir() {
            let mut dir = FsDir {
                meta: m,
                children: BTreeMap::new(),
            };
            let other_fs = self.opts.one_file_system && meta.dev() != self.root_dev;
            if !other_fs {
                self.walk_dir(path, &mut dir);
            }
            self.scan.dirs += 1;
            Some(FsEntry::Dir(dir))
        } else if ft.is_file() {
            let fp = fingerprint(meta);
            self.scan.bytes += fp.size;
            self.scan.files.push(FileJob {
                path: path.to_path_buf(),
                fp,
                carried: (self.select)(path.as_os_str().as_bytes(), &fp),
            });
            Some(FsEntry::File {
                meta: m,
                size: fp.size,
                job: self.scan.files.len() - 1,
            })
        } else if ft.is_symlink() {
            match fs::read_link(path) {
                Ok(t) => Some(FsEntry::Symlink {
                    meta: m,
                    target: t.as_os_str().as_bytes().to_vec(),
                }),
                Err(e) => {
                    self.scan.errors.push(format!("{}: {e}", path.display()));
                    None
                }
            }
        } else {
            let kind = if ft.is_fifo() {
                NodeKind::Fifo
            } else if ft.is_char_device() {
                NodeKind::CharDevice
            } else if ft.is_block_device() {
                NodeKind::BlockDevice
            } else {
                // A socket belongs to the process that listens on it: restic and tar leave
                // them out too.
                return None;
            };
            m.rdev = meta.rdev();
            Some(FsEntry::Special { meta: m, kind })
        }
    }

    fn walk_dir(&mut self, path: &Path, dir: &mut FsDir) {
        let entries = match fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                self.scan.errors.push(format!("{}: {e}", path.display()));
                return;
            }
        };
        let mut names: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => names.push((e.file_name().as_bytes().to_vec(), e.path())),
                Err(e) => self.scan.errors.push(format!("{}: {e}", path.display())),
            }
        }
        names.sort();
        if self.opts.exclude_caches && is_cache_dir(path) {
            names.retain(|(n, _)| n == b"CACHEDIR.TAG");
        }
        for (name, child) in names {
            match fs::symlink_metadata(&child) {
                Ok(m) => {
                    if let Some(e) = self.entry(&child, &m, false) {
                        dir.children.insert(name, e);
                    }
                }
                Err(e) => self.scan.errors.push(format!("{}: {e}", child.display())),
            }
        }
    }
}

/// Whether `dir` holds a `CACHEDIR.TAG` that starts with the standard signature.
fn is_cache_dir(dir: &Path) -> bool {
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    fs::File::open(dir.join("CACHEDIR.TAG"))
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| head == CACHEDIR_SIGNATURE)
}

/// A directory of a snapshot whose tree could not be read (damaged, or missing from the
/// repository): what was under it is lost to a walk, which goes on with the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostTree {
    /// The directory's absolute path in the snapshot.
    pub path: PathBuf,
    /// What is wrong with its tree.
    pub reason: String,
}

impl std::fmt::Display for LostTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: its listing is damaged, nothing under it can be read ({})",
            self.path.display(),
            self.reason
        )
    }
}

/// Loads the tree of the directory at `path`, or records it in `lost` and gives `None` when
/// the tree is damaged or missing. A failure to reach the repository is an error.
pub fn load_tree(
    repo: &Repository,
    index: &MasterIndex,
    id: &Id,
    path: &Path,
    lost: &mut Vec<LostTree>,
) -> Result<Option<Tree>> {
    match repo.load_tree(index, id) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_damage() => {
            lost.push(LostTree {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Visits every node of a stored tree depth-first, parents before children; `path` is the
/// node's absolute path in the snapshot. A visitor returning `false` skips a directory's
/// contents. A directory whose tree is damaged or missing is recorded in `lost` and the walk
/// goes on past it.
pub fn visit_tree(
    repo: &Repository,
    index: &MasterIndex,
    tree: &Id,
    path: &Path,
    visit: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
    lost: &mut Vec<LostTree>,
) -> Result<()> {
    let Some(t) = load_tree(repo, index, tree, path, lost)? else {
        return Ok(());
    };
    for node in &t.nodes {
        let child = path.join(std::ffi::OsStr::from_bytes(&node.name));
        let descend = visit(&child, node)?;
        if descend && let (NodeKind::Dir, Some(sub)) = (node.kind, &node.subtree) {
            visit_tree(repo, index, sub, &child, visit, lost)?;
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
    fn caches_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let root = absolute(&dir.path().join("r")).unwrap();
        fs::create_dir_all(root.join("cache")).unwrap();
        fs::write(root.join("cache/big"), b"cached").unwrap();
        let tag = [CACHEDIR_SIGNATURE, b"\n# made by a test\n"].concat();
        fs::write(root.join("cache/CACHEDIR.TAG"), tag).unwrap();
        fs::create_dir_all(root.join("fake")).unwrap();
        fs::write(root.join("fake/CACHEDIR.TAG"), b"not the signature").unwrap();
        fs::write(root.join("fake/kept"), b"k").unwrap();
        let fifo = std::ffi::CString::new(root.join("pipe").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let opts = ScanOptions {
            exclude_caches: true,
            ..ScanOptions::default()
        };
        let s = scan(std::slice::from_ref(&root), &opts, &|_, _| true).unwrap();
        let mut names: Vec<String> = s
            .files
            .iter()
            .map(|f| f.path.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["cache/CACHEDIR.TAG", "fake/CACHEDIR.TAG", "fake/kept"]
        );
        let mut d = &s.root;
        for c in root.components().skip(1) {
            d = match &d.children[c.as_os_str().as_bytes()] {
                FsEntry::Dir(d) => d,
                other => panic!("{other:?}"),
            };
        }
        assert!(matches!(
            d.children[&b"pipe"[..]],
            FsEntry::Special {
                kind: NodeKind::Fifo,
                ..
            }
        ));
    }

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
        let opts = ScanOptions {
            excludes: ex,
            ..ScanOptions::default()
        };
        let s = scan(&[absolute(&root).unwrap()], &opts, &|_, _| true).unwrap();
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
        let s = scan(&[absolute(&root).unwrap()], &opts, &|p, _| {
            p.ends_with(b"/c")
        })
        .unwrap();
        let carried: Vec<bool> = s.files.iter().map(|f| f.carried).collect();
        assert_eq!(
            carried,
            vec![false, true],
            "every file is scanned, one carried"
        );
    }
}
