//! Trees: the JSON listing of one directory, stored as a blob of kind `Tree`.
//!
//! A snapshot's root tree mirrors the absolute paths it backed up (`/home/u/docs` is the node
//! `home` → `u` → `docs`). Names are bytes: a UTF-8 name is a JSON string, any other name an
//! array of byte values. Every decoder checks that names are single, safe path components,
//! so no tree can make a restore write outside its target.

use serde::{Deserialize, Serialize};

use crate::{FormatError, Id};

/// The kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file; `content` lists its data blobs in order.
    File,
    /// A directory; `subtree` is its listing.
    Dir,
    /// A symbolic link; `target` is what it points to, stored and restored verbatim.
    Symlink,
    /// A named pipe (FIFO).
    Fifo,
    /// A character device; `rdev` is its device number.
    #[serde(rename = "chardev")]
    CharDevice,
    /// A block device; `rdev` is its device number.
    #[serde(rename = "blockdev")]
    BlockDevice,
}

impl NodeKind {
    /// The word for it in listings.
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice => "chardev",
            NodeKind::BlockDevice => "blockdev",
        }
    }
}

/// One extended attribute: a name (`user.x`, `security.selinux`, ...) and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// The attribute's name.
    #[serde(with = "name_serde")]
    pub name: Vec<u8>,
    /// Its value, hex.
    #[serde(with = "hex_serde")]
    pub value: Vec<u8>,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The entry's name: one path component.
    #[serde(with = "name_serde")]
    pub name: Vec<u8>,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    #[serde(default)]
    pub uid: u32,
    /// Group.
    #[serde(default)]
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// File size in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Data blobs, in order (files only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Id>,
    /// The listing of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// The target of a symlink.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_name_serde"
    )]
    pub target: Option<Vec<u8>>,
    /// Non-zero for a file with several hard links: entries of one snapshot with the same
    /// value are one file.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hardlink: u64,
    /// The device number of a device node.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// Extended attributes, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A directory listing, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries, sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

/// Whether `name` is one safe path component: not empty, not `.` or `..`, no `/` or NUL.
pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

impl Tree {
    /// The JSON encoding (nodes sorted first).
    pub fn encode(&mut self) -> Vec<u8> {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and validates a tree.
    pub fn decode(data: &[u8]) -> Result<Tree, FormatError> {
        let tree: Tree = serde_json::from_slice(data)
            .map_err(|e| FormatError::invalid("tree", e.to_string()))?;
        for (i, n) in tree.nodes.iter().enumerate() {
            if !is_safe_name(&n.name) {
                return Err(FormatError::invalid(
                    "tree",
                    format!("unsafe name {:?}", String::from_utf8_lossy(&n.name)),
                ));
            }
            if i > 0 && tree.nodes[i - 1].name >= n.name {
                return Err(FormatError::invalid(
                    "tree",
                    "names not sorted or not unique",
                ));
            }
            let ok = match n.kind {
                NodeKind::File => n.subtree.is_none() && n.target.is_none(),
                NodeKind::Dir => n.subtree.is_some() && n.content.is_empty() && n.target.is_none(),
                NodeKind::Symlink => {
                    n.target.is_some() && n.content.is_empty() && n.subtree.is_none()
                }
                NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                    n.target.is_none() && n.content.is_empty() && n.subtree.is_none()
                }
            };
            let names_ok = n
                .xattrs
                .iter()
                .all(|x| !x.name.is_empty() && !x.name.contains(&0));
            if !names_ok {
                return Err(FormatError::invalid("tree", "bad extended attribute name"));
            }
            if !ok {
                return Err(FormatError::invalid(
                    "tree",
                    "fields do not fit the entry's type",
                ));
            }
        }
        Ok(tree)
    }

    /// The entry with this name.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

mod name_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Name {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(name: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(name) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.collect_seq(name),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(match Name::deserialize(d)? {
            Name::Text(t) => t.into_bytes(),
            Name::Bytes(b) => b,
        })
    }
}

mod hex_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::id::hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        crate::id::unhex(&text).ok_or_else(|| serde::de::Error::custom("not hex"))
    }
}

mod opt_name_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(name: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match name {
            Some(n) => super::name_serde::serialize(n, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(
            Option::<super::name_serde::Name>::deserialize(d)?.map(|n| match n {
                super::name_serde::Name::Text(t) => t.into_bytes(),
                super::name_serde::Name::Bytes(b) => b,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(name: &[u8]) -> Node {
        Node {
            name: name.to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime_ns: 1_700_000_000_123_456_789,
            size: 3,
            content: vec![Id([1; 32])],
            subtree: None,
            target: None,
            hardlink: 0,
            rdev: 0,
            xattrs: vec![],
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [&b".."[..], b".", b"", b"a/b", b"a\0"] {
            let json = serde_json::to_vec(&Tree {
                nodes: vec![file(bad)],
            })
            .unwrap();
            assert!(Tree::decode(&json).is_err(), "{bad:?}");
        }
        let dup = serde_json::to_vec(&Tree {
            nodes: vec![file(b"a"), file(b"a")],
        })
        .unwrap();
        assert!(Tree::decode(&dup).is_err());
        let mut dir = file(b"d");
        dir.kind = NodeKind::Dir;
        let json = serde_json::to_vec(&Tree { nodes: vec![dir] }).unwrap();
        assert!(
            Tree::decode(&json).is_err(),
            "a dir needs a subtree and no content"
        );
    }

    #[test]
    fn special_files_and_xattrs_round_trip() {
        let mut fifo = file(b"pipe");
        fifo.kind = NodeKind::Fifo;
        fifo.content.clear();
        let mut dev = file(b"tty");
        dev.kind = NodeKind::CharDevice;
        dev.content.clear();
        dev.rdev = 0x0501;
        let mut f = file(b"x");
        f.xattrs = vec![Xattr {
            name: b"user.note".to_vec(),
            value: vec![0, 1, 255],
        }];
        let mut tree = Tree {
            nodes: vec![fifo, dev, f],
        };
        let bytes = tree.encode();
        assert_eq!(Tree::decode(&bytes).unwrap(), tree);
        assert!(String::from_utf8_lossy(&bytes).contains("\"chardev\""));
        let mut bad = tree.clone();
        bad.nodes[0].content = vec![Id([1; 32])];
        assert!(Tree::decode(&serde_json::to_vec(&bad).unwrap()).is_err());
    }

    proptest! {
        #[test]
        fn round_trip_any_names(names in proptest::collection::btree_set(proptest::collection::vec(1u8..=255, 1..12), 0..10)) {
            let nodes: Vec<Node> = names.iter().filter(|n| is_safe_name(n)).map(|n| {
                let mut f = file(n);
                f.kind = NodeKind::Symlink;
                f.content.clear();
                f.target = Some(n.iter().rev().copied().collect());
                f
            }).collect();
            let mut tree = Tree { nodes };
            let bytes = tree.encode();
            prop_assert_eq!(Tree::decode(&bytes).unwrap(), tree);
        }
    }
}
