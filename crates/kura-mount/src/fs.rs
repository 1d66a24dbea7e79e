//! The FUSE side: the kernel's requests answered from a [`Namespace`], read-only.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};
use kura_core::tree::NodeKind;

use crate::namespace::{Entry, Layout, Namespace};
use crate::store::Store;

/// Snapshots never change while mounted, so the kernel may keep what it was told.
const TTL: Duration = Duration::from_secs(300);

/// A mounted repository.
pub struct SnapshotFs<S> {
    ns: Namespace<S>,
    store: Arc<S>,
    open: Mutex<HashMap<u64, Arc<Layout>>>,
    next_handle: AtomicU64,
    /// The newest snapshot's time: what the top directories show.
    newest: SystemTime,
    uid: u32,
    gid: u32,
}

fn time(ns: i64) -> SystemTime {
    match u64::try_from(ns) {
        Ok(n) => UNIX_EPOCH + Duration::from_nanos(n),
        Err(_) => UNIX_EPOCH,
    }
}

impl<S: Store> SnapshotFs<S> {
    /// The file system of `ns`, its top directories owned by `uid`:`gid`.
    pub fn new(ns: Namespace<S>, store: Arc<S>, (uid, gid): (u32, u32)) -> SnapshotFs<S> {
        let newest = ns
            .snapshots()
            .last()
            .map(|s| time(i64::try_from(s.time.as_nanosecond()).unwrap_or(0)))
            .unwrap_or(UNIX_EPOCH);
        SnapshotFs {
            ns,
            store,
            open: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            newest,
            uid,
            gid,
        }
    }

    fn attr(&self, ino: u64, entry: &Entry) -> FileAttr {
        let mut a = FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: self.newest,
            mtime: self.newest,
            ctime: self.newest,
            crtime: self.newest,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        match entry {
            Entry::Latest(target) => {
                a.kind = FileType::Symlink;
                a.perm = 0o777;
                a.nlink = 1;
                a.size = target.len() as u64;
            }
            Entry::Snapshot(i) => {
                if let Some(s) = self.ns.snapshots().get(*i) {
                    let t = time(i64::try_from(s.time.as_nanosecond()).unwrap_or(0));
                    (a.atime, a.mtime, a.ctime) = (t, t, t);
                }
            }
            Entry::Node(n) => {
                let t = time(n.mtime_ns);
                (a.atime, a.mtime, a.ctime) = (t, t, t);
                a.kind = match n.kind {
                    NodeKind::File => FileType::RegularFile,
                    NodeKind::Dir => FileType::Directory,
                    NodeKind::Symlink => FileType::Symlink,
                    NodeKind::Fifo => FileType::NamedPipe,
                    NodeKind::CharDevice => FileType::CharDevice,
                    NodeKind::BlockDevice => FileType::BlockDevice,
                };
                a.perm = (n.mode & 0o7777) as u16;
                a.nlink = if n.kind == NodeKind::Dir { 2 } else { 1 };
                a.uid = n.uid;
                a.gid = n.gid;
                a.rdev = n.rdev as u32;
                a.size = match n.kind {
                    NodeKind::Symlink => n.target.as_ref().map_or(0, |t| t.len() as u64),
                    _ => n.size,
                };
                a.blocks = a.size.div_ceil(512);
            }
            Entry::Root | Entry::Ids | Entry::Snapshots | Entry::Groups(_) | Entry::Group(..) => {}
        }
        a
    }
}

/// Why a request failed, for the kernel: the log says what, the caller gets EIO.
fn io_error(what: &str, e: String) -> Errno {
    eprintln!("kura mount: {what}: {e}");
    Errno::EIO
}

impl<S: Store> Filesystem for SnapshotFs<S> {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.ns.lookup(parent.0, name.as_bytes()) {
            Ok(Some(c)) => reply.entry(&TTL, &self.attr(c.ino, &c.entry), Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(io_error("reading a directory", e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.ns.entry(ino.0) {
            Some(e) => reply.attr(&TTL, &self.attr(ino.0, &e)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.ns.entry(ino.0) {
            Some(Entry::Latest(target)) => reply.data(target.as_bytes()),
            Some(Entry::Node(n)) if n.kind == NodeKind::Symlink => {
                reply.data(n.target.as_deref().unwrap_or_default())
            }
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(Entry::Node(n)) = self.ns.entry(ino.0) else {
            return reply.error(Errno::EISDIR);
        };
        if n.kind != NodeKind::File {
            return reply.error(Errno::EINVAL);
        }
        let Some(layout) = Layout::of(&n, self.store.as_ref()) else {
            return reply.error(io_error(
                "opening a file",
                "part of its data is not in the repository (a baseline, or lost)".into(),
            ));
        };
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(layout));
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let layout = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
            .cloned();
        let Some(layout) = layout else {
            return reply.error(Errno::EBADF);
        };
        match layout.read(self.store.as_ref(), offset, size as usize) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(io_error("reading a file", e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.ns.children(ino.0) {
            Ok(Some(c)) => c,
            Ok(None) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(io_error("reading a directory", e)),
        };
        let dots = [(ino.0, b".".to_vec()), (ino.0, b"..".to_vec())];
        let all = dots
            .into_iter()
            .map(|(i, n)| (i, n, FileType::Directory))
            .chain(children.into_iter().map(|c| {
                let kind = self.attr(c.ino, &c.entry).kind;
                (c.ino, c.name, kind)
            }));
        for (i, (ino, name, kind)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }
}
