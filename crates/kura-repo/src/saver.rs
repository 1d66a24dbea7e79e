//! Saving blobs: dedup against the index, compress, seal, and fill packs from many threads.
//!
//! Packs are written as they fill, and their index entries are flushed to an index file every
//! few packs, so a backup killed at any point leaves only complete packs, most of them indexed;
//! [`adopt_orphans`] indexes the rest when the next backup starts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kura_core::Id;
use kura_core::compress::Compressor;
use kura_core::crypto::Key;
use kura_core::index::{IndexFile, IndexedPack};
use kura_core::keys::DeviceId;
use kura_core::pack::{self, BlobKind, PackBuilder};

use crate::backend::FileType;
use crate::index::{IdSet, MasterIndex};
use crate::{Repository, Result};

/// Index entries are flushed after this many packs, or this long, whichever comes first.
const FLUSH_PACKS: usize = 8;
const FLUSH_AFTER: Duration = Duration::from_secs(10);

/// Per-thread buffers for [`Saver::save`], reused from blob to blob.
pub struct Scratch {
    compressor: Compressor,
    blob: Vec<u8>,
}

/// Counts of what a [`Saver`] added.
#[derive(Debug, Default)]
pub struct SaverStats {
    /// New blobs.
    pub blobs: AtomicU64,
    /// Plaintext bytes of the new data blobs (file contents; trees not counted).
    pub data_bytes: AtomicU64,
    /// Bytes of packs written.
    pub stored_bytes: AtomicU64,
}

struct Pending {
    packs: Vec<IndexedPack>,
    since: Instant,
}

/// Saves blobs for one device into new packs. Shared by reference between worker threads.
pub struct Saver<'a> {
    repo: &'a Repository,
    index: &'a MasterIndex,
    device: DeviceId,
    key: Key,
    level: i32,
    fresh: Mutex<IdSet>,
    open: [Mutex<PackBuilder>; 2],
    spare: Mutex<Vec<Vec<u8>>>,
    pending: Mutex<Pending>,
    written: Mutex<Vec<Id>>,
    /// Measure only: write no pack or index (`backup --dry-run`).
    measure_only: bool,
    /// What was added so far.
    pub stats: SaverStats,
}

impl<'a> Saver<'a> {
    /// A saver that skips blobs `index` already knows.
    pub fn new(
        repo: &'a Repository,
        index: &'a MasterIndex,
        device: DeviceId,
    ) -> Result<Saver<'a>> {
        let key = repo.require_device(device)?.clone();
        Ok(Saver {
            repo,
            index,
            device,
            key,
            level: repo.config().compression_level,
            fresh: Mutex::new(IdSet::default()),
            open: [
                Mutex::new(PackBuilder::new(device)),
                Mutex::new(PackBuilder::new(device)),
            ],
            spare: Mutex::new(Vec::new()),
            pending: Mutex::new(Pending {
                packs: Vec::new(),
                since: Instant::now(),
            }),
            written: Mutex::new(Vec::new()),
            measure_only: false,
            stats: SaverStats::default(),
        })
    }

    /// With `yes`, a saver that only measures (for `backup --dry-run`): blobs are compressed
    /// and sealed into packs as ever, so the stats are what a backup would add (packs fill
    /// in another order each run, so their sizes differ by a few bytes), but no pack or
    /// index is written.
    pub fn measuring(mut self, yes: bool) -> Saver<'a> {
        self.measure_only = yes;
        self
    }

    /// Buffers for one worker thread.
    pub fn scratch(&self) -> Scratch {
        Scratch {
            compressor: Compressor::new(self.level),
            blob: Vec::new(),
        }
    }

    /// Stores a blob unless it is already stored; returns whether it was new. (Baseline-only
    /// blobs are stored here too: only an unchanged file at its baseline path may rely on the
    /// recovery source, and the backup pipeline decides that before calling.)
    pub fn save(&self, kind: BlobKind, id: Id, data: &[u8], scratch: &mut Scratch) -> Result<bool> {
        if self.index.contains(&id) || !lock(&self.fresh).insert(id) {
            return Ok(false);
        }
        let compression = scratch.compressor.compress(data, &mut scratch.blob);
        pack::seal_blob(&self.key, kind, &id, &mut scratch.blob);
        let full = {
            let mut open = lock(&self.open[kind as usize]);
            let full = open
                .would_overflow(scratch.blob.len())
                .then(|| std::mem::replace(&mut *open, self.fresh_pack()));
            open.push(kind, id, compression, data.len() as u32, &scratch.blob);
            full
        };
        self.stats.blobs.fetch_add(1, Ordering::Relaxed);
        if kind == BlobKind::Data {
            self.stats
                .data_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        if let Some(builder) = full {
            self.write_pack(builder)?;
        }
        Ok(true)
    }

    fn fresh_pack(&self) -> PackBuilder {
        let buffer = lock(&self.spare).pop().unwrap_or_default();
        PackBuilder::with_buffer(self.device, buffer)
    }

    fn write_pack(&self, builder: PackBuilder) -> Result<()> {
        let (bytes, id, entries) = builder.finish(&self.key);
        self.stats
            .stored_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if self.measure_only {
            lock(&self.spare).push(bytes);
            return Ok(());
        }
        self.repo
            .backend()
            .write(FileType::Pack, &id.to_hex(), &bytes)?;
        lock(&self.spare).push(bytes);
        lock(&self.written).push(id);
        let flush = {
            let mut p = lock(&self.pending);
            p.packs.push(IndexedPack {
                id,
                device: self.device,
                entries,
            });
            if p.packs.len() >= FLUSH_PACKS || p.since.elapsed() >= FLUSH_AFTER {
                p.since = Instant::now();
                std::mem::take(&mut p.packs)
            } else {
                Vec::new()
            }
        };
        if !flush.is_empty() {
            self.repo.write_index_file(
                self.device,
                &IndexFile {
                    packs: flush,
                    external: vec![],
                },
            )?;
        }
        Ok(())
    }

    /// The packs this saver wrote so far.
    pub fn packs_written(&self) -> Vec<Id> {
        lock(&self.written).clone()
    }

    /// Writes the open packs and the remaining index entries. Everything saved is durable and
    /// indexed when this returns.
    pub fn finish(&self) -> Result<()> {
        for open in &self.open {
            let builder = std::mem::replace(&mut *lock(open), PackBuilder::new(self.device));
            if !builder.is_empty() {
                self.write_pack(builder)?;
            }
        }
        let packs = std::mem::take(&mut lock(&self.pending).packs);
        if !packs.is_empty() {
            self.repo.write_index_file(
                self.device,
                &IndexFile {
                    packs,
                    external: vec![],
                },
            )?;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A worker that panicked while holding the lock has already failed the backup; the data
    // behind the lock is still consistent (every update is a single push or insert).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Indexes complete packs that no index file lists (left by a killed backup), so their blobs
/// are not uploaded again. Returns how many packs were adopted; damaged packs are skipped.
pub fn adopt_orphans(
    repo: &Repository,
    index: &mut MasterIndex,
    device: DeviceId,
) -> Result<usize> {
    let mut adopted = Vec::new();
    for name in repo.backend().list(FileType::Pack)? {
        let Ok(id) = name.parse::<Id>() else { continue };
        if index.has_pack(&id) {
            continue;
        }
        if let Ok((sealed_by, entries)) = repo.read_pack_header(&name) {
            adopted.push(IndexedPack {
                id,
                device: sealed_by,
                entries,
            });
        }
    }
    let n = adopted.len();
    if n > 0 {
        let file = IndexFile {
            packs: adopted,
            external: vec![],
        };
        let name = repo.write_index_file(device, &file)?;
        index.add_file(name, file);
    }
    Ok(n)
}
