//! The backup pipeline: scan → select by backup type → chunk → id → dedup → compress → seal →
//! pack → index → trees → snapshot (the commit point) → client markers.
//!
//! Files run on one worker per core; unchanged files (same size, mtime, ctime and inode as in
//! the file cache, with every blob still in the repository) are not read at all.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kura_core::Id;
use kura_core::index::{External, IndexFile};
use kura_core::keys::DeviceId;
use kura_core::pack::BlobKind;
use kura_core::snapshot::{BackupType, Snapshot, Summary};
use kura_core::tree::{Node, NodeKind, Tree};
use kura_repo::saver::{Saver, Scratch, adopt_orphans};
use kura_repo::{MasterIndex, RepoError, Repository};

use crate::pattern::Patterns;
use crate::progress::Progress;
use crate::state::{ClientState, Fingerprint, Markers};
use crate::walk::{self, FsDir, FsEntry};
use crate::{ClientError, Result};

/// What to back up, and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Paths to back up (made absolute).
    pub paths: Vec<PathBuf>,
    /// The requested backup type; [`BackupType::Baseline`] records without uploading.
    pub kind: BackupType,
    /// Exclude patterns.
    pub excludes: Vec<String>,
    /// Stay on the filesystem of each path.
    pub one_file_system: bool,
    /// Leave out the contents of directories tagged as caches (`CACHEDIR.TAG`).
    pub exclude_caches: bool,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot.
    pub hostname: String,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Set from outside to stop the backup before it commits (see [`crate::job`]).
    pub stop: Arc<AtomicBool>,
    /// `backup --stdin`: the one path is a file spooled from standard input, recorded in the
    /// snapshot as this name at the root.
    pub stdin_name: Option<String>,
}

/// What a backup did.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The new snapshot's id.
    pub id: Id,
    /// The new snapshot.
    pub snapshot: Snapshot,
    /// Set when an incremental or differential backup ran as full for lack of a baseline.
    pub fell_back: Option<String>,
    /// Entries that could not be read and were left out.
    pub errors: Vec<String>,
    /// Packs of an interrupted backup that were found and indexed.
    pub adopted_packs: usize,
    /// Exclude patterns that matched nothing (a typo, most likely).
    pub unmatched: Vec<String>,
}

struct FileResult {
    ids: Vec<Id>,
    size: u64,
    read: bool,
}

/// The roots a backup of `paths` covers: absolute, sorted, and without those inside another.
pub fn roots(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut roots: Vec<PathBuf> = paths
        .iter()
        .map(|p| walk::absolute(p))
        .collect::<Result<_>>()?;
    roots.sort();
    roots.dedup();
    let all = roots.clone();
    roots.retain(|r| !all.iter().any(|o| o != r && r.starts_with(o)));
    Ok(roots)
}

/// Roots as recorded in snapshots and jobs.
pub fn root_names(roots: &[PathBuf]) -> Vec<String> {
    roots.iter().map(|r| r.display().to_string()).collect()
}

/// Runs one backup as `device`.
pub fn backup(
    repo: &Repository,
    state: &ClientState,
    device: DeviceId,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupOutcome> {
    match run(repo, state, device, opts, progress, false)? {
        Ran::Saved(out) => Ok(out),
        Ran::Previewed(_) => Err(ClientError::Usage("a backup was only previewed".into())),
    }
}

/// What a backup would do, without writing anything: every file it would read is read, cut
/// and compressed as a backup would, so the data it would add is exact (its stored size to a
/// few bytes); packs, index, snapshot and this machine's state are left as they are.
pub fn preview(
    repo: &Repository,
    state: &ClientState,
    device: DeviceId,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<Preview> {
    match run(repo, state, device, opts, progress, true)? {
        Ran::Previewed(p) => Ok(p),
        Ran::Saved(_) => Err(ClientError::Usage("a preview saved a snapshot".into())),
    }
}

/// What [`preview`] found.
#[derive(Debug)]
pub struct Preview {
    /// The snapshot a backup would save now (not saved), with its summary.
    pub snapshot: Snapshot,
    /// Set when an incremental or differential backup would run as full.
    pub fell_back: Option<String>,
    /// Entries that could not be read.
    pub errors: Vec<String>,
    /// Exclude patterns that matched nothing.
    pub unmatched: Vec<String>,
}

enum Ran {
    Saved(BackupOutcome),
    Previewed(Preview),
}

fn run(
    repo: &Repository,
    state: &ClientState,
    device: DeviceId,
    opts: &BackupOptions,
    progress: &dyn Progress,
    dry_run: bool,
) -> Result<Ran> {
    let started = Instant::now();
    let time = jiff::Timestamp::now();
    repo.require_device(device)?;
    if opts.paths.is_empty() {
        return Err(ClientError::Usage(
            "nothing to back up: name at least one path".into(),
        ));
    }
    let lock = repo.lock(false)?;
    let mut index = repo.load_index()?;
    let adopted_packs = match dry_run {
        true => 0,
        false => adopt_orphans(repo, &mut index, device)?,
    };

    let roots = roots(&opts.paths)?;
    let root_strings = match &opts.stdin_name {
        Some(name) => vec![format!("/{name}")],
        None => root_names(&roots),
    };

    // Which marker set decides what is included, and whether it exists.
    let mut kind = opts.kind;
    let mut fell_back = None;
    let compare = match kind {
        BackupType::Incremental => Some(Markers::Incremental),
        BackupType::Differential => Some(Markers::Full),
        _ => None,
    };
    let mut base = None;
    let markers = match compare {
        Some(which) => {
            let (info, files) = state.markers(which);
            match info.chains_for(&root_strings) {
                Some(chains) => {
                    base = chains.first().and_then(|c| c.last()).copied();
                    Some(files)
                }
                None => {
                    fell_back = Some(format!(
                        "no full backup of {} on record for this device: running a full backup instead of {kind}",
                        root_strings.join(", ")
                    ));
                    None
                }
            }
        }
        None => None,
    };
    if fell_back.is_some() {
        kind = BackupType::Full;
    }
    let select = |path: &[u8], fp: &Fingerprint| match &markers {
        Some(m) => m.files.get(path).is_none_or(|(old, _)| old != fp),
        None => true,
    };
    let scan_opts = walk::ScanOptions {
        excludes: Patterns::new(&opts.excludes)?,
        one_file_system: opts.one_file_system,
        exclude_caches: opts.exclude_caches,
    };
    let mut scan = walk::scan(&roots, &scan_opts, &select)?;
    if let Some(name) = &opts.stdin_name {
        scan.root = walk::single_file_at_root(std::mem::take(&mut scan.root), name)?;
    }
    let unmatched = scan_opts.excludes.unmatched();
    let mut errors = scan.errors.clone();
    for e in &errors {
        progress.warn(e);
    }
    progress.start(scan.files.len() as u64, scan.bytes);

    // Contents: from the cache when unchanged, else read by the workers.
    let upload = kind != BackupType::Baseline;
    let cache = state.cache();
    let saver = Saver::new(repo, &index, device)?.measuring(dry_run);
    let results: Vec<OnceLock<Result<FileResult, String>>> =
        (0..scan.files.len()).map(|_| OnceLock::new()).collect();
    let externals: Mutex<Vec<External>> = Mutex::new(Vec::new());
    for (i, job) in scan.files.iter().enumerate() {
        if let Some((fp, ids)) = cache.files.get(job.path.as_os_str().as_bytes())
            && *fp == job.fp
            && ids.iter().all(|id| index.knows(id))
        {
            let _ = results[i].set(Ok(FileResult {
                ids: ids.clone(),
                size: fp.size,
                read: false,
            }));
            progress.bytes(fp.size);
            progress.item();
        }
    }
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        opts.threads
    };
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let fatal: Mutex<Option<RepoError>> = Mutex::new(None);
    let chunker = repo.chunker();
    let reader = Reader {
        chunker: &chunker,
        repo,
        progress,
        stop: &opts.stop,
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut scratch = saver.scratch();
                let mut buf = Vec::new();
                while !abort.load(Ordering::Relaxed) && !opts.stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = scan.files.get(i) else { break };
                    if results[i].get().is_some() {
                        continue;
                    }
                    let sink = if upload {
                        Sink::Save(&saver)
                    } else {
                        Sink::Record(&externals, &index)
                    };
                    let r = reader.read_file(job, &sink, &mut scratch, &mut buf);
                    let r = match r {
                        Err(ReadError::Repo(e)) => {
                            abort.store(true, Ordering::Relaxed);
                            fatal
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            break;
                        }
                        Err(ReadError::File(msg)) => {
                            if !opts.stop.load(Ordering::Relaxed) {
                                progress.warn(&msg);
                            }
                            Err(msg)
                        }
                        Ok(r) => Ok(r),
                    };
                    progress.item();
                    let _ = results[i].set(r);
                }
            });
        }
    });
    if let Some(e) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e.into());
    }
    if opts.stop.load(Ordering::Relaxed) {
        // What was sent stays indexed, so resuming the job does not send it again.
        saver.finish()?;
        return Err(ClientError::Stopped);
    }

    // Trees, bottom-up, then everything durable, then the snapshot.
    let mut summary = Summary::default();
    for (job, r) in scan.files.iter().zip(&results) {
        if let Some(Ok(r)) = r.get() {
            summary.files_carried += u64::from(job.carried);
            match cache.files.get(job.path.as_os_str().as_bytes()) {
                _ if !r.read => summary.files_unchanged += 1,
                Some(_) => summary.files_changed += 1,
                None => summary.files_new += 1,
            }
        }
    }
    drop(cache);
    let mut scratch = saver.scratch();
    let mut tree_ctx = TreeCtx {
        repo,
        saver: &saver,
        scratch: &mut scratch,
        results: &results,
        summary: &mut summary,
        errors: &mut errors,
        scan: &scan,
        trees: Vec::new(),
    };
    let (tree, changes) = tree_ctx.save_dir(&scan.root, markers.is_some())?;
    let changes = match changes {
        Some(id) => Some(id),
        None if markers.is_some() => Some(tree_ctx.save_tree(Tree::default())?),
        None => None,
    };
    let trees = std::mem::take(&mut tree_ctx.trees);
    if !dry_run {
        lock.check_held()?;
    }
    saver.finish()?;
    let packs = snapshot_packs(&index, &saver, &results, &trees);
    let externals = externals.into_inner().unwrap_or_else(|p| p.into_inner());
    if !externals.is_empty() && !dry_run {
        repo.write_index_file(
            device,
            &IndexFile {
                packs: vec![],
                external: dedup_externals(externals),
            },
        )?;
    }
    summary.dirs = scan.dirs;
    summary.blobs_added = saver.stats.blobs.load(Ordering::Relaxed);
    summary.data_added = saver.stats.data_bytes.load(Ordering::Relaxed);
    summary.stored_added = saver.stats.stored_bytes.load(Ordering::Relaxed);
    summary.errors = errors.len() as u64;
    summary.duration = started.elapsed().as_secs_f64();
    let snapshot = Snapshot {
        time,
        device,
        hostname: opts.hostname.clone(),
        paths: root_strings.clone(),
        kind,
        tags: opts.tags.clone(),
        tree,
        base,
        changes,
        excludes: opts.excludes.clone(),
        original: None,
        summary,
    };
    if dry_run {
        return Ok(Ran::Previewed(Preview {
            snapshot,
            fell_back,
            errors,
            unmatched,
        }));
    }
    lock.check_held()?;
    if opts.stop.load(Ordering::Relaxed) {
        return Err(ClientError::Stopped);
    }
    let id = repo.save_snapshot(&snapshot)?;
    // A repository made before the reserve existed gets one, so that a disk this backup
    // filled can still be cleaned; with no room for it, the next backup tries again.
    let _ = repo.backend().keep_reserve();
    if let Some(p) = repo.backend().provider()
        && let Err(e) = p.report_snapshot_packs(&id.to_hex(), &packs)
    {
        errors.push(format!(
            "snapshot {} saved, but the storage provider was not told which packs it needs \
             (it could not name it if one is lost): {e}",
            id.short()
        ));
    }

    // The snapshot is committed: a failure to update the local state only costs re-reading
    // files next time, so it is reported, not fatal.
    if let Err(e) = state.locked(|| update_state(state, &scan, &results, kind, id, &root_strings)) {
        errors.push(format!(
            "snapshot {} saved, but this machine's state was not updated: {e}",
            id.short()
        ));
    }
    Ok(Ran::Saved(BackupOutcome {
        id,
        snapshot,
        fell_back,
        errors,
        adopted_packs,
        unmatched,
    }))
}

/// The packs a snapshot needs: those holding its trees and its files' contents (blobs stored
/// only at a baseline need none), found in the index or among the packs this backup wrote.
fn snapshot_packs(
    index: &MasterIndex,
    saver: &Saver<'_>,
    results: &[OnceLock<Result<FileResult, String>>],
    trees: &[Id],
) -> Vec<Id> {
    let mut packs: std::collections::BTreeSet<Id> = saver.packs_written().into_iter().collect();
    let files = results
        .iter()
        .filter_map(|r| r.get().and_then(|r| r.as_ref().ok()));
    for id in files.flat_map(|r| r.ids.iter()).chain(trees) {
        if let Some((pack, _)) = index.locate(id) {
            packs.insert(pack);
        }
    }
    packs.into_iter().collect()
}

fn dedup_externals(mut x: Vec<External>) -> Vec<External> {
    x.sort_by_key(|a| a.id);
    x.dedup_by(|a, b| a.id == b.id);
    x
}

/// After the snapshot is committed: the file cache and the markers of the backup type.
fn update_state(
    state: &ClientState,
    scan: &walk::Scan,
    results: &[OnceLock<Result<FileResult, String>>],
    kind: BackupType,
    id: Id,
    roots: &[String],
) -> Result<()> {
    let root_bytes: Vec<Vec<u8>> = roots.iter().map(|r| r.as_bytes().to_vec()).collect();
    // Files backed up by this run (not those that failed).
    let done = || {
        scan.files
            .iter()
            .zip(results)
            .filter_map(|(job, r)| match r.get() {
                Some(Ok(r)) => Some((job, &r.ids)),
                _ => None,
            })
    };
    // Every backup scans the whole of its roots, so the cache forgets files that are gone.
    let mut cache = state.cache();
    cache.clear_under(&root_bytes);
    for (job, ids) in done() {
        let path = job.path.as_os_str().as_bytes();
        cache.files.insert(path.to_vec(), (job.fp, ids.clone()));
    }
    state.set_cache(&cache)?;
    drop(cache);
    let mark = |which: Markers, replace: bool| -> Result<()> {
        let (mut info, mut files) = state.markers(which);
        if replace {
            files.clear_under(&root_bytes);
            info.record_full(roots, id);
        } else {
            info.record_incremental(roots, id);
        }
        for (job, _) in done().filter(|(job, _)| job.carried) {
            let path = job.path.as_os_str().as_bytes();
            files.files.insert(path.to_vec(), (job.fp, Vec::new()));
        }
        state.set_markers(which, &info, &files)
    };
    match kind {
        BackupType::Full | BackupType::Baseline => {
            mark(Markers::Full, true)?;
            mark(Markers::Incremental, true)
        }
        BackupType::Incremental => mark(Markers::Incremental, false),
        BackupType::Copy | BackupType::Differential => Ok(()),
    }
}

struct TreeCtx<'a, 'b> {
    repo: &'a Repository,
    saver: &'a Saver<'a>,
    scratch: &'b mut Scratch,
    results: &'a [OnceLock<Result<FileResult, String>>],
    summary: &'b mut Summary,
    errors: &'b mut Vec<String>,
    scan: &'a walk::Scan,
    /// The trees saved, for the list of packs the snapshot needs.
    trees: Vec<Id>,
}

impl TreeCtx<'_, '_> {
    /// Saves the tree of `dir` and, with `changes`, the tree of only the files carried below
    /// it (`None` when it holds none).
    fn save_dir(&mut self, dir: &FsDir, changes: bool) -> Result<(Id, Option<Id>)> {
        let mut tree = Tree::default();
        let mut carried = Tree::default();
        for (name, entry) in &dir.children {
            let node = match entry {
                FsEntry::Dir(d) => {
                    let (sub, sub_changes) = self.save_dir(d, changes)?;
                    if let Some(c) = sub_changes {
                        carried.nodes.push(node(
                            name,
                            NodeKind::Dir,
                            &d.meta,
                            0,
                            vec![],
                            Some(c),
                            None,
                        ));
                    }
                    node(name, NodeKind::Dir, &d.meta, 0, vec![], Some(sub), None)
                }
                FsEntry::File { meta, job, .. } => match self.results[*job].get() {
                    Some(Ok(r)) => {
                        self.summary.files += 1;
                        self.summary.bytes += r.size;
                        let n = node(
                            name,
                            NodeKind::File,
                            meta,
                            r.size,
                            r.ids.clone(),
                            None,
                            None,
                        );
                        if self.scan.files[*job].carried {
                            carried.nodes.push(n.clone());
                        }
                        n
                    }
                    Some(Err(e)) => {
                        self.errors.push(e.clone());
                        continue;
                    }
                    None => {
                        self.errors.push(format!(
                            "{}: not read",
                            self.scan.files[*job].path.display()
                        ));
                        continue;
                    }
                },
                FsEntry::Symlink { meta, target } => node(
                    name,
                    NodeKind::Symlink,
                    meta,
                    0,
                    vec![],
                    None,
                    Some(target.clone()),
                ),
                FsEntry::Special { meta, kind } => node(name, *kind, meta, 0, vec![], None, None),
            };
            tree.nodes.push(node);
        }
        let id = self.save_tree(tree)?;
        let changes = if changes && !carried.nodes.is_empty() {
            Some(self.save_tree(carried)?)
        } else {
            None
        };
        Ok((id, changes))
    }

    fn save_tree(&mut self, mut tree: Tree) -> Result<Id> {
        let bytes = tree.encode();
        let id = self.repo.blob_key().id(&bytes);
        self.saver.save(BlobKind::Tree, id, &bytes, self.scratch)?;
        self.trees.push(id);
        Ok(id)
    }
}

fn node(
    name: &[u8],
    kind: NodeKind,
    meta: &walk::Meta,
    size: u64,
    content: Vec<Id>,
    subtree: Option<Id>,
    target: Option<Vec<u8>>,
) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
        mtime_ns: meta.mtime_ns,
        size,
        content,
        subtree,
        target,
        hardlink: meta.hardlink,
        rdev: meta.rdev,
        xattrs: meta.xattrs.clone(),
    }
}

enum Sink<'a> {
    Save(&'a Saver<'a>),
    Record(&'a Mutex<Vec<External>>, &'a MasterIndex),
}

enum ReadError {
    File(String),
    Repo(RepoError),
}

/// Reads one file in windows of at least the maximum chunk size, cutting it into chunks.
/// What every worker reads files with.
struct Reader<'a> {
    chunker: &'a kura_core::chunker::Chunker,
    repo: &'a Repository,
    progress: &'a dyn Progress,
    stop: &'a AtomicBool,
}

impl Reader<'_> {
    fn read_file(
        &self,
        job: &walk::FileJob,
        sink: &Sink<'_>,
        scratch: &mut Scratch,
        buf: &mut Vec<u8>,
    ) -> Result<FileResult, ReadError> {
        let Reader {
            chunker,
            repo,
            progress,
            stop,
        } = *self;
        let path = job.path.as_path();
        let file_err = |e: std::io::Error| ReadError::File(format!("{}: {e}", path.display()));
        // Open without following a symlink or blocking on a FIFO that replaced the file since the
        // scan, and insist on the same regular file the scan saw.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(file_err)?;
        let meta = f.metadata().map_err(file_err)?;
        if !meta.is_file() || std::os::unix::fs::MetadataExt::ino(&meta) != job.fp.inode {
            return Err(ReadError::File(format!(
                "{}: replaced by another file during the backup",
                path.display()
            )));
        }
        let max = chunker.max_size();
        // Refill when less than one maximal chunk is buffered; a buffer of 1.5 maximal chunks
        // bounds memory per worker while moving at most one chunk's bytes per refill.
        let window = max + max / 2;
        if buf.len() < window {
            buf.resize(window, 0);
        }
        let (mut start, mut filled, mut eof) = (0usize, 0usize, false);
        let mut ids = Vec::new();
        let mut size = 0u64;
        loop {
            if stop.load(Ordering::Relaxed) {
                // The backup is being stopped; this file's result is never used.
                return Err(ReadError::File(format!("{}: stopped", path.display())));
            }
            while !eof && filled - start < max {
                if filled == window {
                    buf.copy_within(start..filled, 0);
                    filled -= start;
                    start = 0;
                }
                match f.read(&mut buf[filled..window]) {
                    Ok(0) => eof = true,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(file_err(e)),
                }
            }
            if start == filled {
                break;
            }
            let end = (start + max).min(filled);
            let n = chunker.next_len(&buf[start..end]);
            let chunk = &buf[start..start + n];
            let id = repo.blob_key().id(chunk);
            match sink {
                Sink::Save(saver) => {
                    saver
                        .save(BlobKind::Data, id, chunk, scratch)
                        .map_err(ReadError::Repo)?;
                }
                Sink::Record(externals, index) => {
                    if !index.knows(&id) {
                        externals
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(External {
                                kind: BlobKind::Data,
                                id,
                                raw_length: n as u32,
                            });
                    }
                }
            }
            ids.push(id);
            size += n as u64;
            progress.bytes(n as u64);
            start += n;
        }
        // The contents are stored as read; the cache keeps the fingerprint from the scan, so a
        // file that changed meanwhile is read again next time.
        if let Ok(m) = f.metadata() {
            let now = walk::fingerprint(&m);
            if now.size != size || now.mtime_ns != job.fp.mtime_ns {
                progress.warn(&format!(
                    "{}: changed while it was being backed up; stored as read",
                    path.display()
                ));
            }
        }
        Ok(FileResult {
            ids,
            size,
            read: true,
        })
    }
}
