//! Restore: plan from the snapshot's trees, check free space, then write every file to a
//! temporary name in its directory and rename it into place only after every blob of it was
//! authenticated and matched its id. Names come from validated trees and directories are
//! checked to be real directories before anything is written into them, so a restore never
//! writes outside its target.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, FileTimes, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use globset::{Glob, GlobSet, GlobSetBuilder};
use kura_core::Id;
use kura_core::snapshot::Snapshot;
use kura_core::tree::{Node, NodeKind};
use kura_repo::{MasterIndex, RepoError, Repository};

use crate::progress::Progress;
use crate::walk;
use crate::{ClientError, Result, io_err};

/// What to restore, and where.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The directory to restore into (created if missing).
    pub target: PathBuf,
    /// Restore only this absolute path of the snapshot (its contents go directly into target).
    pub subpath: Option<PathBuf>,
    /// Restore only entries whose snapshot path, or an ancestor's, matches one of these globs.
    pub includes: Vec<String>,
    /// Where to take the contents of files that exist only in a baseline.
    pub baseline_source: Option<PathBuf>,
    /// Restore only the files the snapshot carried (for incremental and differential, what
    /// changed since its base), not the whole state.
    pub only_changes: bool,
    /// Worker threads (0: two per core).
    pub threads: usize,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreOutcome {
    /// Files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks restored.
    pub symlinks: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Entries that could not be restored, with the reason.
    pub errors: Vec<String>,
}

struct Item {
    /// Path in the snapshot.
    source: PathBuf,
    /// Path relative to the target.
    rel: PathBuf,
    node: Node,
}

/// Restores `snapshot` (or part of it) into `opts.target`.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let _lock = kura_repo::lock::RepoLock::acquire(repo.backend().clone(), false)?;
    let index = repo.load_index()?;
    let includes = globs(&opts.includes)?;
    let root = if opts.only_changes {
        snapshot.carried()
    } else {
        snapshot.tree
    };
    let (dirs, files, links) = plan(repo, &index, root, opts, includes.as_ref())?;

    fs::create_dir_all(&opts.target).map_err(io_err(&opts.target))?;
    let target = walk::absolute(&opts.target)?;
    let free = free_space(&target)?;
    // Every file takes whole blocks; a hard-linked file is stored once.
    let blocks = |size: u64| size.div_ceil(free.block.max(1)) * free.block.max(1);
    let linked: HashMap<u64, u64> = files
        .iter()
        .filter(|f| f.node.hardlink != 0)
        .map(|f| (f.node.hardlink, f.node.size))
        .collect();
    let unlinked = files.iter().filter(|f| f.node.hardlink == 0);
    let needed: u64 = unlinked.clone().map(|f| blocks(f.node.size)).sum::<u64>()
        + linked.values().map(|&s| blocks(s)).sum::<u64>();
    if needed > free.bytes {
        return Err(ClientError::NoSpace {
            target: target.display().to_string(),
            needed,
            available: free.bytes,
            unit: "bytes",
        });
    }
    let inodes = (unlinked.count() + linked.len() + dirs.len() + links.len()) as u64;
    if let Some(available) = free.inodes.filter(|&a| inodes > a) {
        return Err(ClientError::NoSpace {
            target: target.display().to_string(),
            needed: inodes,
            available,
            unit: "inodes",
        });
    }
    if files
        .iter()
        .any(|f| f.node.content.iter().any(|id| !index.contains(id)))
        && opts.baseline_source.is_none()
    {
        let missing: Vec<&Item> = files
            .iter()
            .filter(|f| {
                f.node
                    .content
                    .iter()
                    .any(|id| !index.contains(id) && index.external(id).is_some())
            })
            .collect();
        if !missing.is_empty() {
            return Err(ClientError::Usage(format!(
                "{} file(s) exist only in a baseline (e.g. {}): give the recovery source with --baseline-source DIR",
                missing.len(),
                missing[0].source.display()
            )));
        }
    }

    let mut out = RestoreOutcome::default();
    let mut verified = HashSet::new();
    for d in &dirs {
        ensure_dir(&target, &d.rel, &mut verified)?;
        out.dirs += 1;
    }
    for f in files.iter().chain(&links) {
        if let Some(parent) = f.rel.parent() {
            ensure_dir(&target, parent, &mut verified)?;
        }
    }
    progress.start(files.len() as u64, files.iter().map(|f| f.node.size).sum());

    // Regular files; the second and later names of a hard-linked file are linked afterwards.
    let mut first_of: HashMap<u64, usize> = HashMap::new();
    let mut later: Vec<usize> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if f.node.hardlink != 0 && first_of.contains_key(&f.node.hardlink) {
            later.push(i);
        } else {
            first_of.entry(f.node.hardlink).or_insert(i);
        }
    }
    let later_set: HashSet<usize> = later.iter().copied().collect();
    // The recovery source is laid out like the roots of the baseline snapshots.
    let baseline = match &opts.baseline_source {
        Some(dir) => {
            let mut roots: Vec<PathBuf> = repo
                .load_snapshots()?
                .iter()
                .filter(|(_, s)| s.kind == kura_core::snapshot::BackupType::Baseline)
                .flat_map(|(_, s)| s.paths.iter().map(PathBuf::from))
                .collect();
            if roots.is_empty() {
                roots = snapshot.paths.iter().map(PathBuf::from).collect();
            }
            Some(BaselineSource {
                dir: dir.clone(),
                roots,
            })
        }
        None => None,
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get() * 2)
            .unwrap_or(4)
    } else {
        opts.threads
    };
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let failed: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<ClientError>> = Mutex::new(None);
    let chunker = repo.chunker();
    let am_root = unsafe { libc::geteuid() } == 0;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !abort.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = files.get(i) else { break };
                    if later_set.contains(&i) {
                        continue;
                    }
                    let dest = target.join(&item.rel);
                    let r = write_file(
                        &dest,
                        &item.node,
                        |tmp: &mut File| {
                            let mut from_source = None;
                            for id in &item.node.content {
                                let data = blob(
                                    repo,
                                    &index,
                                    id,
                                    item,
                                    baseline.as_ref(),
                                    &chunker,
                                    &mut from_source,
                                )?;
                                tmp.write_all(&data)
                                    .map_err(|e| Failure::Io(io_err(&dest)(e)))?;
                                progress.bytes(data.len() as u64);
                            }
                            Ok(())
                        },
                        am_root,
                    );
                    progress.item();
                    match r {
                        Ok(()) => {}
                        Err(Failure::Io(e)) if is_no_space(&e) => {
                            abort.store(true, Ordering::Relaxed);
                            fatal
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                        }
                        Err(f) => {
                            let msg = format!("{}: {} (not restored)", item.source.display(), f);
                            progress.warn(&msg);
                            failed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((i, msg));
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
        apply_dir_metadata(&dirs, &target, am_root);
        return Err(e);
    }
    let mut failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    let failed_idx: HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
    for &i in &later {
        let item = &files[i];
        let first = first_of[&item.node.hardlink];
        let dest = target.join(&item.rel);
        let r = if failed_idx.contains(&first) {
            Err(io::Error::other(
                "the file it is a hard link of was not restored",
            ))
        } else {
            replace_with(&dest, |tmp| {
                fs::hard_link(target.join(&files[first].rel), tmp)
            })
        };
        if let Err(e) = r {
            failed.push((i, format!("{}: {e} (not restored)", item.source.display())));
        }
    }
    failed.sort();
    out.errors = failed.into_iter().map(|(_, m)| m).collect();
    out.files = (files.len() - out.errors.len()) as u64;
    out.bytes = files
        .iter()
        .enumerate()
        .filter(|(i, _)| !failed_idx.contains(i))
        .map(|(_, f)| f.node.size)
        .sum();

    for l in &links {
        let dest = target.join(&l.rel);
        let t = std::ffi::OsStr::from_bytes(l.node.target.as_deref().unwrap_or_default());
        match replace_with(&dest, |tmp| std::os::unix::fs::symlink(t, tmp)) {
            Ok(()) => {
                if am_root {
                    let _ = std::os::unix::fs::lchown(&dest, Some(l.node.uid), Some(l.node.gid));
                }
                out.symlinks += 1;
            }
            Err(e) => out
                .errors
                .push(format!("{}: {e} (not restored)", l.source.display())),
        }
    }
    out.errors
        .extend(apply_dir_metadata(&dirs, &target, am_root));
    Ok(out)
}

/// Directory metadata last, deepest first, so writing into them does not change it again.
/// Also run when a restore stops early, so no directory keeps its private creation mode.
fn apply_dir_metadata(dirs: &[Item], target: &Path, am_root: bool) -> Vec<String> {
    let mut errors = Vec::new();
    for d in dirs.iter().rev() {
        let dest = target.join(&d.rel);
        let r = File::open(&dest).and_then(|f| {
            if am_root {
                std::os::unix::fs::fchown(&f, Some(d.node.uid), Some(d.node.gid))?;
            }
            f.set_permissions(Permissions::from_mode(d.node.mode))?;
            f.set_times(FileTimes::new().set_modified(time_of(d.node.mtime_ns)))
        });
        if let Err(e) = r {
            errors.push(format!("{}: setting metadata: {e}", d.source.display()));
        }
    }
    errors
}

type Plan = (Vec<Item>, Vec<Item>, Vec<Item>);

fn plan(
    repo: &Repository,
    index: &MasterIndex,
    root: Id,
    opts: &RestoreOptions,
    includes: Option<&GlobSet>,
) -> Result<Plan> {
    let (mut dirs, mut files, mut links) = (Vec::new(), Vec::new(), Vec::new());
    // Where the walk starts, and the prefix stripped from snapshot paths to make target paths.
    let (start, strip): (Id, PathBuf) = match &opts.subpath {
        None => (root, PathBuf::from("/")),
        Some(p) => {
            let p = walk::absolute(p)?;
            match walk::find_node(repo, index, &root, &p)? {
                None => (root, PathBuf::from("/")),
                Some(node) if node.kind == NodeKind::Dir => (node.subtree.unwrap_or_default(), p),
                Some(node) => {
                    if includes.is_none_or(|g| g.is_match(&p)) {
                        let item = Item {
                            rel: PathBuf::from(std::ffi::OsStr::from_bytes(&node.name)),
                            source: p,
                            node,
                        };
                        match item.node.kind {
                            NodeKind::Symlink => links.push(item),
                            _ => files.push(item),
                        }
                    }
                    return Ok((dirs, files, links));
                }
            }
        }
    };
    // With includes, a directory is kept if it matches or holds something kept.
    let mut matched_depth: Option<usize> = None;
    let mut visit = |path: &Path, node: &Node| -> Result<bool> {
        let rel = path.strip_prefix(&strip).unwrap_or(path).to_path_buf();
        let depth = rel.components().count();
        if matched_depth.is_some_and(|d| depth <= d) {
            matched_depth = None;
        }
        let selected = match includes {
            None => true,
            Some(g) => {
                if matched_depth.is_none() && g.is_match(path) {
                    matched_depth = Some(depth);
                }
                matched_depth.is_some()
            }
        };
        let item = Item {
            source: path.to_path_buf(),
            rel,
            node: node.clone(),
        };
        match node.kind {
            NodeKind::Dir if selected => dirs.push(item),
            NodeKind::File if selected => files.push(item),
            NodeKind::Symlink if selected => links.push(item),
            _ => {}
        }
        Ok(true)
    };
    walk::visit_tree(repo, index, &start, &strip, &mut visit)?;
    Ok((dirs, files, links))
}

fn globs(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| ClientError::Usage(format!("bad pattern {p:?}: {e}")))?);
    }
    Ok(Some(
        b.build().map_err(|e| ClientError::Usage(e.to_string()))?,
    ))
}

enum Failure {
    Io(ClientError),
    Repo(RepoError),
    Baseline(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => e.fmt(f),
            Failure::Repo(e) => e.fmt(f),
            Failure::Baseline(e) => f.write_str(e),
        }
    }
}

fn is_no_space(e: &ClientError) -> bool {
    matches!(e, ClientError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
}

/// One blob of a file: from the repository, or for a baseline-only blob from the recovery
/// source, which is read and chunked once per file (`from_source` keeps what it held).
fn blob(
    repo: &Repository,
    index: &MasterIndex,
    id: &Id,
    item: &Item,
    baseline: Option<&BaselineSource>,
    chunker: &kura_core::chunker::Chunker,
    from_source: &mut Option<HashMap<Id, Vec<u8>>>,
) -> Result<Vec<u8>, Failure> {
    if index.contains(id) {
        return repo.read_blob(index, id).map_err(Failure::Repo);
    }
    match (index.external(id), baseline) {
        (Some(_), Some(b)) => {
            if from_source.is_none() {
                *from_source = Some(b.chunks(repo, chunker, &item.source, &item.node.content)?);
            }
            from_source
                .as_mut()
                .and_then(|m| m.get(id).cloned())
                .ok_or_else(|| {
                    Failure::Baseline(format!(
                        "the baseline source does not hold the recorded contents of {}",
                        item.source.display()
                    ))
                })
        }
        (Some(_), None) => Err(Failure::Baseline(
            "exists only in a baseline: give --baseline-source".into(),
        )),
        (None, _) => Err(Failure::Repo(RepoError::MissingBlob(*id))),
    }
}

/// A directory laid out like a baseline's root (recovery media), to take baseline-only chunks from.
struct BaselineSource {
    dir: PathBuf,
    roots: Vec<PathBuf>,
}

impl BaselineSource {
    /// Reads the source file that corresponds to snapshot path `path` and returns those of its
    /// chunks whose ids are in `wanted`; each id is the keyed hash of its chunk, so what comes
    /// back is verified.
    fn chunks(
        &self,
        repo: &Repository,
        chunker: &kura_core::chunker::Chunker,
        path: &Path,
        wanted: &[Id],
    ) -> Result<HashMap<Id, Vec<u8>>, Failure> {
        let root = self
            .roots
            .iter()
            .filter(|r| path.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())
            .ok_or_else(|| Failure::Baseline("not under any baseline root".into()))?;
        let rel = path.strip_prefix(root).unwrap_or(Path::new(""));
        let source = if rel.as_os_str().is_empty() {
            self.dir.join(path.file_name().unwrap_or_default())
        } else {
            self.dir.join(rel)
        };
        let data = fs::read(&source)
            .map_err(|e| Failure::Baseline(format!("baseline source {}: {e}", source.display())))?;
        let wanted: HashSet<&Id> = wanted.iter().collect();
        Ok(chunker
            .chunks(&data)
            .filter_map(|c| {
                let id = repo.blob_key().id(c);
                wanted.contains(&id).then(|| (id, c.to_vec()))
            })
            .collect())
    }
}

/// Creates `target/rel` as a real directory, replacing anything else of that name (including a
/// symlink, which is never followed). `verified` remembers directories already checked.
fn ensure_dir(target: &Path, rel: &Path, verified: &mut HashSet<PathBuf>) -> Result<()> {
    if verified.contains(rel) {
        return Ok(());
    }
    let mut at = target.to_path_buf();
    let mut so_far = PathBuf::new();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(ClientError::Usage(format!(
                "refusing unsafe path {}",
                rel.display()
            )));
        };
        at.push(name);
        so_far.push(name);
        if verified.contains(&so_far) {
            continue;
        }
        let is_dir = match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => true,
            Ok(_) => {
                fs::remove_file(&at).map_err(io_err(&at))?;
                false
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&at)(e)),
        };
        if !is_dir {
            // Private until its own mode is applied at the end of the restore.
            match fs::DirBuilder::new().mode(0o700).create(&at) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&at)(e)),
            }
        }
        verified.insert(so_far.clone());
    }
    Ok(())
}

/// Renames `tmp` over `dest`; a directory in the way (the snapshot has a file where the target
/// has a directory) is removed first.
fn rename_over(tmp: &Path, dest: &Path) -> io::Result<()> {
    match fs::rename(tmp, dest) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::IsADirectory | io::ErrorKind::DirectoryNotEmpty
            ) || fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) =>
        {
            fs::remove_dir_all(dest)?;
            fs::rename(tmp, dest)
        }
        r => r,
    }
}

fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let short: String = name.chars().take(100).collect();
    dest.with_file_name(format!(
        ".{short}.kura-{}",
        kura_core::id::hex(&kura_core::crypto::random_bytes::<6>())
    ))
}

/// Makes `dest` by creating a temporary name with `make` and renaming it over `dest`.
fn replace_with(dest: &Path, make: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let tmp = temp_name(dest);
    let r = make(&tmp).and_then(|()| rename_over(&tmp, dest));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Writes one file so that nothing appears at `dest` until its contents are complete and
/// verified: into an unnamed file (`O_TMPFILE`) that is linked into place at the end, or where
/// the filesystem lacks that, into a temporary name that is renamed over `dest`.
fn write_file(
    dest: &Path,
    node: &Node,
    fill: impl FnOnce(&mut File) -> Result<(), Failure>,
    am_root: bool,
) -> Result<(), Failure> {
    let fail = |e: io::Error| Failure::Io(io_err(dest)(e));
    let dir = dest.parent().unwrap_or(Path::new("."));
    let (mut f, named) = match File::options()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
    {
        Ok(f) => (f, None),
        Err(_) => {
            let tmp = temp_name(dest);
            let f = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(fail)?;
            (f, Some(tmp))
        }
    };
    let r = (|| {
        fill(&mut f)?;
        if am_root {
            std::os::unix::fs::fchown(&f, Some(node.uid), Some(node.gid)).map_err(fail)?;
        }
        f.set_permissions(Permissions::from_mode(node.mode))
            .map_err(fail)?;
        f.set_times(FileTimes::new().set_modified(time_of(node.mtime_ns)))
            .map_err(fail)?;
        match &named {
            Some(tmp) => rename_over(tmp, dest).map_err(fail),
            None => link_into_place(&f, dest).map_err(fail),
        }
    })();
    if r.is_err()
        && let Some(tmp) = &named
    {
        let _ = fs::remove_file(tmp);
    }
    r
}

/// Gives an unnamed (`O_TMPFILE`) file the name `dest`, replacing what is there.
fn link_into_place(f: &File, dest: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map_err(io::Error::other)?;
    let link = |to: &Path| -> io::Result<()> {
        let to = std::ffi::CString::new(to.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc_path.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    match link(dest) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let tmp = temp_name(dest);
            link(&tmp)?;
            rename_over(&tmp, dest).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })
        }
        r => r,
    }
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Free space on a filesystem, as this user may use it.
#[derive(Debug, Clone, Copy)]
pub struct FreeSpace {
    /// Bytes available.
    pub bytes: u64,
    /// Allocation unit: every file takes a whole number of these.
    pub block: u64,
    /// Inodes available, when the filesystem limits them.
    pub inodes: Option<u64>,
}

/// Free space on the filesystem holding `path`.
pub fn free_space(path: &Path) -> Result<FreeSpace> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ClientError::Usage(format!("path {} contains NUL", path.display())))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io_err(path)(io::Error::last_os_error()));
    }
    Ok(FreeSpace {
        bytes: st.f_bavail as u64 * st.f_frsize as u64,
        block: st.f_frsize as u64,
        // Filesystems without an inode limit (btrfs, for one) report zero inodes in total.
        inodes: (st.f_files > 0).then_some(st.f_favail as u64),
    })
}
