//! Where a mounted snapshot's trees and file contents come from: a small trait, so the
//! namespace and the reads are tested without a repository, and its implementation over a
//! repository with the caches a file system needs (every `ls` reads the same trees again,
//! and the kernel reads a file in pieces smaller than a blob).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use kura_core::Id;
use kura_core::tree::Tree;
use kura_repo::{MasterIndex, RepoError, Repository};

/// What the file system reads.
pub trait Store: Send + Sync + 'static {
    /// The tree `id`.
    fn tree(&self, id: &Id) -> Result<Arc<Tree>, String>;
    /// The plaintext of blob `id`.
    fn blob(&self, id: &Id) -> Result<Arc<Vec<u8>>, String>;
    /// The plaintext length of blob `id`, if the repository holds it.
    fn blob_len(&self, id: &Id) -> Option<u64>;
}

/// A repository's trees and blobs, with every tree read kept and the most recent blobs (up
/// to a byte budget) kept.
pub struct RepoStore {
    repo: Repository,
    index: MasterIndex,
    trees: Mutex<HashMap<Id, Arc<Tree>>>,
    blobs: Mutex<Recent>,
}

/// The blobs read last, oldest first, within a byte budget.
struct Recent {
    budget: usize,
    held: usize,
    order: VecDeque<Id>,
    blobs: HashMap<Id, Arc<Vec<u8>>>,
}

impl Recent {
    fn get(&self, id: &Id) -> Option<Arc<Vec<u8>>> {
        self.blobs.get(id).cloned()
    }

    fn put(&mut self, id: Id, b: Arc<Vec<u8>>) {
        if self.blobs.contains_key(&id) {
            return;
        }
        self.held += b.len();
        self.order.push_back(id);
        self.blobs.insert(id, b);
        while self.held > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.blobs.remove(&old) {
                self.held -= gone.len();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RepoStore {
    /// The store over `repo` and its loaded `index`, keeping up to `cache_bytes` of blobs.
    pub fn new(repo: Repository, index: MasterIndex, cache_bytes: usize) -> RepoStore {
        RepoStore {
            repo,
            index,
            trees: Mutex::new(HashMap::new()),
            blobs: Mutex::new(Recent {
                budget: cache_bytes,
                held: 0,
                order: VecDeque::new(),
                blobs: HashMap::new(),
            }),
        }
    }
}

fn describe(e: RepoError) -> String {
    e.to_string()
}

impl Store for RepoStore {
    fn tree(&self, id: &Id) -> Result<Arc<Tree>, String> {
        if let Some(t) = lock(&self.trees).get(id) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.repo.load_tree(&self.index, id).map_err(describe)?);
        lock(&self.trees).insert(*id, t.clone());
        Ok(t)
    }

    fn blob(&self, id: &Id) -> Result<Arc<Vec<u8>>, String> {
        if let Some(b) = lock(&self.blobs).get(id) {
            return Ok(b);
        }
        // Read outside the lock: other threads go on reading other blobs meanwhile.
        let b = Arc::new(self.repo.read_blob(&self.index, id).map_err(describe)?);
        lock(&self.blobs).put(*id, b.clone());
        Ok(b)
    }

    fn blob_len(&self, id: &Id) -> Option<u64> {
        self.index.locate(id).map(|(_, e)| u64::from(e.raw_length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_blobs_stay_within_their_budget_oldest_out_first() {
        let mut r = Recent {
            budget: 10,
            held: 0,
            order: VecDeque::new(),
            blobs: HashMap::new(),
        };
        for i in 0..4u8 {
            r.put(Id([i; 32]), Arc::new(vec![i; 4]));
        }
        assert_eq!(r.held, 8);
        assert!(r.get(&Id([0; 32])).is_none() && r.get(&Id([1; 32])).is_none());
        assert_eq!(r.get(&Id([3; 32])).unwrap().as_slice(), &[3; 4]);
        r.put(Id([3; 32]), Arc::new(vec![9; 4]));
        assert_eq!(r.held, 8, "a blob held is not counted twice");
    }
}
