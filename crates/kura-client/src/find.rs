//! `kura find`: the entries of snapshots whose name (or path) matches a pattern. A directory
//! is read and matched once per place it appears in: snapshots of a slowly changing tree share
//! most of their directories, so finding across twenty of them costs little more than across
//! one.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use globset::{GlobBuilder, GlobMatcher};
use kura_core::Id;
use kura_core::tree::{Node, NodeKind};
use kura_repo::{MasterIndex, Repository};

use crate::walk::{LostTree, load_tree};
use crate::{ClientError, Result};

/// What to look for: glob patterns (`*`, `?`, `[...]`, `**`), or blob or tree ids. A
/// pattern without `/` is matched against an entry's name; one with `/` against its whole
/// path (at any depth unless it starts with `/`). An id (a hex prefix, as `kura check`
/// names a damaged blob) finds the files whose contents hold that blob, or the directories
/// whose listing is that tree.
#[derive(Debug)]
pub struct Query {
    globs: Vec<(GlobMatcher, bool)>,
    ids: Option<(Holder, Vec<String>)>,
    /// Only entries modified in this span (nanoseconds since the epoch, both ends included).
    modified: (Option<i64>, Option<i64>),
}

/// What an id given to `find` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A data blob: the files whose contents hold it.
    Blob,
    /// A tree: the directories it lists.
    Tree,
}

impl Query {
    /// Compiles `patterns`; a bad one is a usage error naming it.
    pub fn new(patterns: &[String], ignore_case: bool) -> Result<Query> {
        let mut out = Vec::new();
        for p in patterns {
            let whole_path = p.contains('/');
            let text = match (whole_path, p.starts_with('/')) {
                (true, false) => format!("**/{p}"),
                _ => p.clone(),
            };
            let glob = GlobBuilder::new(&text)
                .literal_separator(true)
                .case_insensitive(ignore_case)
                .build()
                .map_err(|e| ClientError::Usage(format!("bad pattern {p:?}: {e}")))?;
            out.push((glob.compile_matcher(), whole_path));
        }
        if out.is_empty() {
            return Err(ClientError::Usage("name at least one pattern".into()));
        }
        Ok(Query {
            globs: out,
            ids: None,
            modified: (None, None),
        })
    }

    /// A query for the entries that hold the blobs or trees whose ids start with `prefixes`
    /// (hex, at least 4 digits each).
    pub fn ids(holder: Holder, prefixes: &[String]) -> Result<Query> {
        let mut out = Vec::new();
        for p in prefixes {
            let lower = p.to_ascii_lowercase();
            if lower.len() < 4 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ClientError::Usage(format!(
                    "{p:?} is not an id: at least 4 hex digits"
                )));
            }
            out.push(lower);
        }
        if out.is_empty() {
            return Err(ClientError::Usage("name at least one id".into()));
        }
        Ok(Query {
            globs: Vec::new(),
            ids: Some((holder, out)),
            modified: (None, None),
        })
    }

    /// Only entries modified from `oldest` to `newest` (nanoseconds since the epoch; `None`:
    /// no bound), restic's `--oldest` and `--newest`.
    pub fn modified(mut self, oldest: Option<i64>, newest: Option<i64>) -> Query {
        self.modified = (oldest, newest);
        self
    }

    /// Whether the entry `node` at absolute `path` matches one of the patterns (and the
    /// span of modification times, if one was given).
    pub fn matches(&self, path: &Path, node: &Node) -> bool {
        let (oldest, newest) = self.modified;
        if oldest.is_some_and(|t| node.mtime_ns < t) || newest.is_some_and(|t| node.mtime_ns > t) {
            return false;
        }
        if let Some((holder, prefixes)) = &self.ids {
            let named = |id: &Id| {
                let hex = id.to_hex();
                prefixes.iter().any(|p| hex.starts_with(p.as_str()))
            };
            return match holder {
                Holder::Blob => node.content.iter().any(named),
                Holder::Tree => node.subtree.as_ref().is_some_and(named),
            };
        }
        self.globs
            .iter()
            .any(|(glob, whole_path)| match whole_path {
                true => glob.is_match(path),
                false => glob.is_match(OsStr::from_bytes(&node.name)),
            })
    }
}

/// One entry found: its absolute path in the snapshot and what it is.
#[derive(Debug, Clone)]
pub struct Found {
    /// The absolute path.
    pub path: PathBuf,
    /// The entry.
    pub node: Node,
}

/// Finds entries in the snapshots of one repository, remembering what each directory held.
pub struct Finder<'a> {
    repo: &'a Repository,
    index: &'a MasterIndex,
    query: Query,
    seen: HashMap<(Id, PathBuf), Rc<Vec<Found>>>,
    /// Directories whose listing could not be read (damaged or missing): what was under them
    /// was not searched.
    pub lost: Vec<LostTree>,
}

impl<'a> Finder<'a> {
    /// A finder for `query` over `repo`.
    pub fn new(repo: &'a Repository, index: &'a MasterIndex, query: Query) -> Finder<'a> {
        Finder {
            repo,
            index,
            query,
            seen: HashMap::new(),
            lost: Vec::new(),
        }
    }

    /// The matching entries of the snapshot whose root tree is `root`, parents first.
    pub fn in_snapshot(&mut self, root: &Id) -> Result<Rc<Vec<Found>>> {
        self.dir(root, Path::new("/"))
    }

    /// The matching entries under the directory `tree` at `path`.
    fn dir(&mut self, tree: &Id, path: &Path) -> Result<Rc<Vec<Found>>> {
        let key = (*tree, path.to_path_buf());
        if let Some(found) = self.seen.get(&key) {
            return Ok(found.clone());
        }
        let mut found = Vec::new();
        if let Some(t) = load_tree(self.repo, self.index, tree, path, &mut self.lost)? {
            for node in t.nodes {
                let child = path.join(OsStr::from_bytes(&node.name));
                let sub = match (node.kind, node.subtree) {
                    (NodeKind::Dir, Some(sub)) => Some(sub),
                    _ => None,
                };
                if self.query.matches(&child, &node) {
                    found.push(Found {
                        path: child.clone(),
                        node,
                    });
                }
                if let Some(sub) = sub {
                    found.extend(self.dir(&sub, &child)?.iter().cloned());
                }
            }
        }
        let found = Rc::new(found);
        self.seen.insert(key, found.clone());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_at_any_depth_and_paths_match_whole() {
        let q = Query::new(&["*.jpg".into(), "docs/**/report?.txt".into()], false).unwrap();
        let node = |name: &[u8], mtime_ns: i64| -> Node {
            let mut n: Node =
                serde_json::from_str(r#"{"name":"x","type":"file","mode":420,"mtime_ns":0}"#)
                    .unwrap();
            n.name = name.to_vec();
            n.mtime_ns = mtime_ns;
            n
        };
        let hit = |p: &str| {
            let p = Path::new(p);
            q.matches(p, &node(p.file_name().unwrap().as_bytes(), 0))
        };
        assert!(hit("/home/a/photo.jpg"));
        assert!(hit("/photo.jpg"));
        assert!(!hit("/home/a/photo.jpeg"));
        assert!(!hit("/home/a/photo.JPG"), "case counts unless asked");
        assert!(hit("/home/a/docs/2026/q1/report1.txt"));
        assert!(!hit("/home/a/report1.txt"));
        let anchored = Query::new(&["/home/*/notes".into()], false).unwrap();
        assert!(anchored.matches(Path::new("/home/a/notes"), &node(b"notes", 0)));
        assert!(!anchored.matches(Path::new("/srv/home/a/notes"), &node(b"notes", 0)));
        let any_case = Query::new(&["*.JPG".into()], true).unwrap();
        assert!(any_case.matches(Path::new("/x/a.jpg"), &node(b"a.jpg", 0)));
        let spanned = Query::new(&["*".into()], false)
            .unwrap()
            .modified(Some(10), Some(20));
        let at = |t| spanned.matches(Path::new("/f"), &node(b"f", t));
        assert!(at(10) && at(20) && !at(9) && !at(21));
        let mut holding = node(b"f", 0);
        holding.content = vec![Id([0xab; 32]), Id([0x12; 32])];
        let blob = Query::ids(Holder::Blob, &["1212".into()]).unwrap();
        assert!(blob.matches(Path::new("/f"), &holding));
        assert!(
            !Query::ids(Holder::Tree, &["1212".into()])
                .unwrap()
                .matches(Path::new("/f"), &holding)
        );
        assert!(
            Query::ids(Holder::Blob, &["12".into()]).is_err(),
            "too short to mean one"
        );
        assert!(Query::ids(Holder::Blob, &["zzzz".into()]).is_err());
        assert!(Query::new(&["[".into()], false).is_err());
        assert!(Query::new(&[], false).is_err());
    }
}
