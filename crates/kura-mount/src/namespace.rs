//! The mounted file system's names and inode numbers: `ids/ID`, `snapshots/DATE`,
//! `hosts/HOST/DATE` and `tags/TAG/DATE` at the top (each `snapshots/`, `hosts/HOST` and
//! `tags/TAG` with a `latest` link to its newest), each snapshot's whole tree below, as
//! restic lays it out. A snapshot's root is one inode wherever it appears; any other entry
//! gets its number when first listed or looked up, and keeps it while mounted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kura_core::Id;
use kura_core::snapshot::Snapshot;
use kura_core::tree::{Node, NodeKind};

use crate::store::Store;

/// The root.
pub const ROOT: u64 = 1;
const IDS: u64 = 2;
const SNAPSHOTS: u64 = 3;
const LATEST: u64 = 4;
const HOSTS: u64 = 5;
const TAGS: u64 = 6;
/// The first snapshot root's inode.
const FIRST_SNAPSHOT: u64 = 7;

/// One snapshot as the top of the file system names it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its id.
    pub id: Id,
    /// When it was made.
    pub time: Timestamp,
    /// Its root tree.
    pub tree: Id,
    /// Its directory under `snapshots/`: its local time, and its short id if another
    /// snapshot has the same second.
    pub by_date: String,
    /// The host that made it.
    pub host: String,
    /// Its tags.
    pub tags: Vec<String>,
}

/// How `hosts/` and `tags/` group snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// By the host that made them.
    Host,
    /// By a tag they carry.
    Tag,
}

/// What an inode is.
#[derive(Debug, Clone)]
pub enum Entry {
    /// `/`.
    Root,
    /// `/ids`: a directory per snapshot, by short id.
    Ids,
    /// `/snapshots`: a directory per snapshot, by local time, and `latest`.
    Snapshots,
    /// `latest` in `/snapshots` or a group: a link to the newest snapshot's directory.
    Latest(String),
    /// `/hosts` or `/tags`: a directory per host or tag.
    Groups(Grouping),
    /// `/hosts/HOST` or `/tags/TAG`: the snapshots of that host or with that tag.
    Group(Grouping, String),
    /// A snapshot's root directory (the index into the listed snapshots).
    Snapshot(usize),
    /// An entry of a snapshot's tree.
    Node(Arc<Node>),
}

impl Entry {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        match self {
            Entry::Latest(_) => false,
            Entry::Node(n) => n.kind == NodeKind::Dir,
            _ => true,
        }
    }
}

/// A directory entry: its inode, name and what it is.
#[derive(Debug, Clone)]
pub struct Child {
    /// Its inode number.
    pub ino: u64,
    /// Its name.
    pub name: Vec<u8>,
    /// What it is.
    pub entry: Entry,
}

/// The names and inodes of a mounted repository.
pub struct Namespace<S> {
    store: Arc<S>,
    snapshots: Vec<Listed>,
    inodes: RwLock<Vec<Entry>>,
    named: Mutex<HashMap<(u64, Vec<u8>), u64>>,
}

/// The directory names of `snapshots` (oldest first) under `snapshots/`, in `tz`.
pub fn list(snapshots: &[(Id, Snapshot)], tz: &TimeZone) -> Vec<Listed> {
    let date = |t: &Timestamp| {
        t.to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, s) in snapshots {
        *seen.entry(date(&s.time)).or_default() += 1;
    }
    snapshots
        .iter()
        .map(|(id, s)| {
            let d = date(&s.time);
            let by_date = match seen.get(&d) {
                Some(n) if *n > 1 => format!("{d}-{}", id.short()),
                _ => d,
            };
            Listed {
                id: *id,
                time: s.time,
                tree: s.tree,
                by_date,
                host: s.hostname.clone(),
                tags: s.tags.clone(),
            }
        })
        .collect()
}

/// Whether `s` belongs to the group `name` of `grouping`.
fn in_group(s: &Listed, grouping: Grouping, name: &str) -> bool {
    match grouping {
        Grouping::Host => s.host == name,
        Grouping::Tag => s.tags.iter().any(|t| t == name),
    }
}

/// `name` if it is safe as one path component (a host or a tag could hold a `/`).
fn component(name: &str) -> Option<&str> {
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']);
    (!bad).then_some(name)
}

impl<S: Store> Namespace<S> {
    /// The namespace of `snapshots` (oldest first), reading trees from `store`.
    pub fn new(store: Arc<S>, snapshots: Vec<Listed>) -> Namespace<S> {
        let latest = snapshots
            .last()
            .map(|s| s.by_date.clone())
            .unwrap_or_default();
        let mut inodes = vec![
            Entry::Root,
            Entry::Ids,
            Entry::Snapshots,
            Entry::Latest(latest),
            Entry::Groups(Grouping::Host),
            Entry::Groups(Grouping::Tag),
        ];
        inodes.extend((0..snapshots.len()).map(Entry::Snapshot));
        Namespace {
            store,
            snapshots,
            inodes: RwLock::new(inodes),
            named: Mutex::new(HashMap::new()),
        }
    }

    /// The snapshots it shows, oldest first.
    pub fn snapshots(&self) -> &[Listed] {
        &self.snapshots
    }

    /// What inode `ino` is.
    pub fn entry(&self, ino: u64) -> Option<Entry> {
        let inodes = self.inodes.read().unwrap_or_else(|p| p.into_inner());
        inodes
            .get(usize::try_from(ino).ok()?.checked_sub(1)?)
            .cloned()
    }

    /// The number of the entry `name` of directory `parent`, given one the first time.
    fn intern(&self, parent: u64, name: &[u8], entry: Entry) -> u64 {
        let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ino) = named.get(&(parent, name.to_vec())) {
            return *ino;
        }
        let mut inodes = self.inodes.write().unwrap_or_else(|p| p.into_inner());
        inodes.push(entry);
        let ino = inodes.len() as u64;
        named.insert((parent, name.to_vec()), ino);
        ino
    }

    /// The tree a directory inode lists, if it lists one.
    fn tree_of(&self, entry: &Entry) -> Option<Id> {
        match entry {
            Entry::Snapshot(i) => self.snapshots.get(*i).map(|s| s.tree),
            Entry::Node(n) if n.kind == NodeKind::Dir => n.subtree,
            _ => None,
        }
    }

    /// The entries of directory `ino`; `Ok(None)` when it is not a directory.
    pub fn children(&self, ino: u64) -> Result<Option<Vec<Child>>, String> {
        let Some(entry) = self.entry(ino) else {
            return Ok(None);
        };
        let snapshot = |i: usize, name: &str| Child {
            ino: FIRST_SNAPSHOT + i as u64,
            name: name.as_bytes().to_vec(),
            entry: Entry::Snapshot(i),
        };
        let fixed = |ino: u64, name: &str, entry: Entry| Child {
            ino,
            name: name.as_bytes().to_vec(),
            entry,
        };
        Ok(Some(match entry {
            Entry::Root => vec![
                fixed(HOSTS, "hosts", Entry::Groups(Grouping::Host)),
                fixed(IDS, "ids", Entry::Ids),
                fixed(SNAPSHOTS, "snapshots", Entry::Snapshots),
                fixed(TAGS, "tags", Entry::Groups(Grouping::Tag)),
            ],
            Entry::Groups(grouping) => {
                let mut names: Vec<&str> = (self.snapshots.iter())
                    .flat_map(|s| match grouping {
                        Grouping::Host => vec![s.host.as_str()],
                        Grouping::Tag => s.tags.iter().map(String::as_str).collect(),
                    })
                    .filter_map(component)
                    .collect();
                names.sort_unstable();
                names.dedup();
                names
                    .into_iter()
                    .map(|n| {
                        let entry = Entry::Group(grouping, n.to_string());
                        Child {
                            ino: self.intern(ino, n.as_bytes(), entry.clone()),
                            name: n.as_bytes().to_vec(),
                            entry,
                        }
                    })
                    .collect()
            }
            Entry::Group(grouping, name) => {
                let members: Vec<(usize, &Listed)> = (self.snapshots.iter().enumerate())
                    .filter(|(_, s)| in_group(s, grouping, &name))
                    .collect();
                let mut out: Vec<Child> = (members.iter())
                    .map(|(i, s)| snapshot(*i, &s.by_date))
                    .collect();
                if let Some((_, newest)) = members.last() {
                    let entry = Entry::Latest(newest.by_date.clone());
                    out.push(Child {
                        ino: self.intern(ino, b"latest", entry.clone()),
                        name: b"latest".to_vec(),
                        entry,
                    });
                }
                out
            }
            Entry::Ids => (self.snapshots.iter().enumerate())
                .map(|(i, s)| snapshot(i, &s.id.short()))
                .collect(),
            Entry::Snapshots => {
                let mut out: Vec<Child> = (self.snapshots.iter().enumerate())
                    .map(|(i, s)| snapshot(i, &s.by_date))
                    .collect();
                if let Some(Entry::Latest(target)) = self.entry(LATEST)
                    && !target.is_empty()
                {
                    out.push(Child {
                        ino: LATEST,
                        name: b"latest".to_vec(),
                        entry: Entry::Latest(target),
                    });
                }
                out
            }
            Entry::Latest(_) => return Ok(None),
            e => {
                let Some(tree) = self.tree_of(&e) else {
                    return Ok(match e.is_dir() {
                        true => Some(Vec::new()),
                        false => None,
                    });
                };
                let tree = self.store.tree(&tree)?;
                tree.nodes
                    .iter()
                    .map(|n| {
                        let entry = Entry::Node(Arc::new(n.clone()));
                        Child {
                            ino: self.intern(ino, &n.name, entry.clone()),
                            name: n.name.clone(),
                            entry,
                        }
                    })
                    .collect()
            }
        }))
    }

    /// The entry `name` of directory `parent`, if there is one.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<Child>, String> {
        let Some(entry) = self.entry(parent) else {
            return Ok(None);
        };
        if let Some(tree) = self.tree_of(&entry) {
            let tree = self.store.tree(&tree)?;
            return Ok(tree.find(name).map(|n| {
                let entry = Entry::Node(Arc::new(n.clone()));
                Child {
                    ino: self.intern(parent, name, entry.clone()),
                    name: name.to_vec(),
                    entry,
                }
            }));
        }
        Ok(self
            .children(parent)?
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == name))
    }
}

/// Where each blob of a file starts, for reads at any offset.
#[derive(Debug, Clone)]
pub struct Layout {
    blobs: Vec<Id>,
    starts: Vec<u64>,
    size: u64,
}

impl Layout {
    /// The layout of `node`'s contents; `None` when a blob is not in the repository.
    pub fn of(node: &Node, store: &impl Store) -> Option<Layout> {
        let mut starts = Vec::with_capacity(node.content.len());
        let mut at = 0;
        for id in &node.content {
            starts.push(at);
            at += store.blob_len(id)?;
        }
        Some(Layout {
            blobs: node.content.clone(),
            starts,
            size: at,
        })
    }

    /// Up to `len` bytes from `offset`, read blob by blob from `store`.
    pub fn read(&self, store: &impl Store, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        let end = self.size.min(offset.saturating_add(len as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut i = self
            .starts
            .partition_point(|s| *s <= offset)
            .saturating_sub(1);
        let mut at = offset;
        while at < end && i < self.blobs.len() {
            let blob = store.blob(&self.blobs[i])?;
            let from = (at - self.starts[i]) as usize;
            let to = blob.len().min(from + (end - at) as usize);
            if from >= to {
                return Err("a blob is shorter than the index says".into());
            }
            out.extend_from_slice(&blob[from..to]);
            at += (to - from) as u64;
            i += 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_core::tree::Tree;

    /// Trees and blobs in memory.
    #[derive(Default)]
    struct Memory {
        trees: HashMap<Id, Arc<Tree>>,
        blobs: HashMap<Id, Arc<Vec<u8>>>,
    }

    impl Store for Memory {
        fn tree(&self, id: &Id) -> Result<Arc<Tree>, String> {
            self.trees.get(id).cloned().ok_or_else(|| "no tree".into())
        }
        fn blob(&self, id: &Id) -> Result<Arc<Vec<u8>>, String> {
            self.blobs.get(id).cloned().ok_or_else(|| "no blob".into())
        }
        fn blob_len(&self, id: &Id) -> Option<u64> {
            self.blobs.get(id).map(|b| b.len() as u64)
        }
    }

    fn node(name: &str, kind: NodeKind) -> Node {
        let mut n: Node = serde_json::from_str(&format!(
            r#"{{"name":"{name}","type":"file","mode":420,"mtime_ns":0}}"#
        ))
        .unwrap();
        n.kind = kind;
        n
    }

    #[test]
    fn snapshots_appear_by_id_and_date_with_latest_and_entries_keep_their_numbers() {
        let mut m = Memory::default();
        let mut file = node("a.txt", NodeKind::File);
        file.content = vec![Id([1; 32]), Id([2; 32])];
        m.blobs.insert(Id([1; 32]), Arc::new(b"hello ".to_vec()));
        m.blobs.insert(Id([2; 32]), Arc::new(b"world".to_vec()));
        let mut dir = node("docs", NodeKind::Dir);
        dir.subtree = Some(Id([8; 32]));
        m.trees
            .insert(Id([8; 32]), Arc::new(Tree { nodes: vec![file] }));
        m.trees
            .insert(Id([9; 32]), Arc::new(Tree { nodes: vec![dir] }));
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let snap = |time: &str, host: &str, tags: &[&str]| {
            let mut s = Snapshot::decode(
                br#"{"time":"2026-01-01T00:00:00Z","device":"03030303030303030303030303030303","hostname":"h","paths":["/a"],"type":"full","tree":"0909090909090909090909090909090909090909090909090909090909090909"}"#,
            )
            .unwrap();
            s.time = t(time);
            s.hostname = host.into();
            s.tags = tags.iter().map(|t| t.to_string()).collect();
            s
        };
        let listed = list(
            &[
                (
                    Id([3; 32]),
                    snap("2026-01-01T10:00:00Z", "laptop", &["daily"]),
                ),
                (Id([4; 32]), snap("2026-01-01T10:00:00Z", "nas", &["a/b"])),
                (
                    Id([5; 32]),
                    snap("2026-01-02T10:00:00Z", "laptop", &["daily", "keep"]),
                ),
            ],
            &TimeZone::UTC,
        );
        assert_eq!(
            listed[0].by_date,
            format!("2026-01-01T10:00:00-{}", Id([3; 32]).short())
        );
        assert_eq!(listed[2].by_date, "2026-01-02T10:00:00");
        let ns = Namespace::new(Arc::new(m), listed);
        let names = |ino| -> Vec<String> {
            ns.children(ino)
                .unwrap()
                .unwrap()
                .iter()
                .map(|c| String::from_utf8(c.name.clone()).unwrap())
                .collect()
        };
        assert_eq!(names(ROOT), ["hosts", "ids", "snapshots", "tags"]);
        assert_eq!(names(HOSTS), ["laptop", "nas"]);
        assert_eq!(names(TAGS), ["daily", "keep"], "a tag with a / is left out");
        let laptop = ns.lookup(HOSTS, b"laptop").unwrap().unwrap();
        assert_eq!(names(laptop.ino).len(), 3, "two snapshots and latest");
        let daily_latest = ns.lookup(ns.lookup(TAGS, b"daily").unwrap().unwrap().ino, b"latest");
        assert!(
            matches!(daily_latest.unwrap().unwrap().entry, Entry::Latest(t) if t == "2026-01-02T10:00:00")
        );
        assert_eq!(names(IDS).len(), 3);
        assert_eq!(names(SNAPSHOTS).last().unwrap(), "latest");
        let latest = ns.lookup(SNAPSHOTS, b"latest").unwrap().unwrap();
        assert!(matches!(latest.entry, Entry::Latest(t) if t == "2026-01-02T10:00:00"));
        // The same snapshot under ids/ and snapshots/ is one inode.
        let by_id = ns
            .lookup(IDS, Id([5; 32]).short().as_bytes())
            .unwrap()
            .unwrap();
        let by_date = ns
            .lookup(SNAPSHOTS, b"2026-01-02T10:00:00")
            .unwrap()
            .unwrap();
        assert_eq!(by_id.ino, by_date.ino);
        let docs = ns.lookup(by_id.ino, b"docs").unwrap().unwrap();
        assert_eq!(names(docs.ino), ["a.txt"]);
        let a = ns.lookup(docs.ino, b"a.txt").unwrap().unwrap();
        assert_eq!(
            ns.children(docs.ino).unwrap().unwrap()[0].ino,
            a.ino,
            "numbers are kept"
        );
        assert!(ns.lookup(docs.ino, b"nope").unwrap().is_none());
        assert!(
            ns.children(a.ino).unwrap().is_none(),
            "a file lists nothing"
        );
        let Entry::Node(n) = a.entry else { panic!() };
        let store = Memory {
            blobs: [
                (Id([1; 32]), Arc::new(b"hello ".to_vec())),
                (Id([2; 32]), Arc::new(b"world".to_vec())),
            ]
            .into(),
            ..Memory::default()
        };
        let layout = Layout::of(&n, &store).unwrap();
        assert_eq!(layout.read(&store, 0, 100).unwrap(), b"hello world");
        assert_eq!(layout.read(&store, 4, 4).unwrap(), b"o wo");
        assert_eq!(layout.read(&store, 6, 5).unwrap(), b"world");
        assert!(layout.read(&store, 11, 5).unwrap().is_empty());
        assert!(ns.entry(9999).is_none());
    }
}
