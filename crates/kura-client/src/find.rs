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

/// What to look for: glob patterns (`*`, `?`, `[...]`, `**`). A pattern without `/` is
/// matched against an entry's name; one with `/` against its whole path (at any depth
/// unless it starts with `/`).
#[derive(Debug)]
pub struct Query(Vec<(GlobMatcher, bool)>);

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
        Ok(Query(out))
    }

    /// Whether the entry `name` at absolute `path` matches one of the patterns.
    pub fn matches(&self, path: &Path, name: &[u8]) -> bool {
        self.0.iter().any(|(glob, whole_path)| match whole_path {
            true => glob.is_match(path),
            false => glob.is_match(OsStr::from_bytes(name)),
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
                if self.query.matches(&child, &node.name) {
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
        let hit = |p: &str| {
            let p = Path::new(p);
            q.matches(p, p.file_name().unwrap().as_bytes())
        };
        assert!(hit("/home/a/photo.jpg"));
        assert!(hit("/photo.jpg"));
        assert!(!hit("/home/a/photo.jpeg"));
        assert!(!hit("/home/a/photo.JPG"), "case counts unless asked");
        assert!(hit("/home/a/docs/2026/q1/report1.txt"));
        assert!(!hit("/home/a/report1.txt"));
        let anchored = Query::new(&["/home/*/notes".into()], false).unwrap();
        assert!(anchored.matches(Path::new("/home/a/notes"), b"notes"));
        assert!(!anchored.matches(Path::new("/srv/home/a/notes"), b"notes"));
        let any_case = Query::new(&["*.JPG".into()], true).unwrap();
        assert!(any_case.matches(Path::new("/x/a.jpg"), b"a.jpg"));
        assert!(Query::new(&["[".into()], false).is_err());
        assert!(Query::new(&[], false).is_err());
    }
}
