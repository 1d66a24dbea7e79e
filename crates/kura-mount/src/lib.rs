//! `kura mount`: a repository's snapshots as a read-only file system (FUSE). `ids/ID`,
//! `snapshots/DATE`, `hosts/HOST/DATE` and `tags/TAG/DATE` show each snapshot's whole tree
//! (`latest` links to the newest of each);
//! trees are read when first listed and file contents blob by blob when read, through a
//! cache of the blobs read last, so nothing is restored ahead.

pub mod fs;
pub mod namespace;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use kura_core::Id;
use kura_core::snapshot::Snapshot;
use kura_repo::{MasterIndex, Repository};

use crate::fs::SnapshotFs;
use crate::namespace::Namespace;
use crate::store::RepoStore;

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Where.
    pub mountpoint: PathBuf,
    /// Bytes of recently read blobs kept.
    pub cache_bytes: usize,
    /// Threads answering the kernel.
    pub threads: usize,
    /// Let other users (root included) see the mount; by default only its owner does.
    pub allow_other: bool,
}

/// Mounts the `snapshots` (oldest first) of `repo` and serves them
/// until `stop` says so (then it unmounts) or someone unmounts it (`fusermount3 -u`); `ready`
/// is called once the mount is in place.
pub fn mount(
    repo: Repository,
    index: MasterIndex,
    snapshots: &[(Id, Snapshot)],
    opts: &MountOptions,
    stop: impl Fn() -> bool,
    ready: impl FnOnce(),
) -> std::io::Result<()> {
    let store = Arc::new(RepoStore::new(repo, index, opts.cache_bytes));
    let ns = Namespace::new(
        store.clone(),
        namespace::list(snapshots, &TimeZone::system()),
    );
    // SAFETY: getuid and getgid cannot fail.
    let owner = unsafe { (libc::getuid(), libc::getgid()) };
    let fs = SnapshotFs::new(ns, store, owner);
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("kura".into()),
        fuser::MountOption::Subtype("kura".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if opts.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(opts.threads.max(1));
    let session = fuser::spawn_mount(fs, &opts.mountpoint, &config)?;
    ready();
    while !stop() && !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    match session.guard.is_finished() {
        true => session.join(),
        false => session.umount_and_join(),
    }
}
