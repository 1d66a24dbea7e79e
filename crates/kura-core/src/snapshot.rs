//! Snapshots: the record of one backup, stored as a sealed file of kind `Snapshot`.

use serde::{Deserialize, Serialize};

use crate::keys::DeviceId;
use crate::{FormatError, Id};

/// The backup types of `docs/requirements/terminal-backup.md` requirement 5, plus the baseline of
/// requirement 6.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Everything; becomes the new baseline for incremental and differential.
    #[default]
    Full,
    /// Everything; markers stay as they were.
    Copy,
    /// What changed since the last full or incremental; resets the markers.
    Incremental,
    /// What changed since the last full; markers stay as they were.
    Differential,
    /// A known state recorded without uploading file contents.
    Baseline,
}

impl std::fmt::Display for BackupType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupType::Full => "full",
            BackupType::Copy => "copy",
            BackupType::Incremental => "incremental",
            BackupType::Differential => "differential",
            BackupType::Baseline => "baseline",
        })
    }
}

/// Counts from the backup that made a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Total size of the files in the snapshot.
    pub bytes: u64,
    /// Files not seen by the previous backup of these paths.
    pub files_new: u64,
    /// Files whose metadata changed, so their contents were read.
    pub files_changed: u64,
    /// Files recognised as unchanged from metadata alone.
    pub files_unchanged: u64,
    /// Blobs added to the repository.
    pub blobs_added: u64,
    /// Bytes of file data added (before compression).
    pub data_added: u64,
    /// Bytes added to the repository (packs, after compression and encryption).
    pub stored_added: u64,
    /// Files this backup carried: for incremental and differential, those its markers selected
    /// as changed since the base; for the other types, every file.
    #[serde(default)]
    pub files_carried: u64,
    /// Entries that could not be read, and were left out.
    pub errors: u64,
    /// Seconds the backup took.
    pub duration: f64,
}

/// The record of one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the backup started.
    pub time: jiff::Timestamp,
    /// The device that made it (its key sealed the snapshot and its new data).
    pub device: DeviceId,
    /// The device's host name when it made the snapshot.
    pub hostname: String,
    /// The absolute paths backed up.
    pub paths: Vec<String>,
    /// The backup type.
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// User tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The root tree: the whole state of the paths at `time`, whatever the type, so every
    /// snapshot restores by itself.
    pub tree: Id,
    /// For incremental and differential: the snapshot the markers rest on (the previous
    /// incremental, or the full). Informational: no snapshot needs its base to be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Id>,
    /// For incremental and differential: a tree of only the files this backup carried (and the
    /// directories leading to them), which `--only-changes` restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Id>,
    /// Exclude patterns in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// For a snapshot rewritten (tags changed, repaired): the id it first had, which other
    /// snapshots may name as their base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    /// Counts.
    #[serde(default)]
    pub summary: Summary,
}

impl Snapshot {
    /// The JSON encoding.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The tree of what this snapshot carried: its `changes`, or for the types that carry
    /// everything, the whole tree.
    pub fn carried(&self) -> Id {
        self.changes.unwrap_or(self.tree)
    }

    /// Every tree root the snapshot refers to.
    pub fn trees(&self) -> impl Iterator<Item = Id> {
        std::iter::once(self.tree).chain(self.changes)
    }

    /// Decodes a snapshot.
    pub fn decode(data: &[u8]) -> Result<Snapshot, FormatError> {
        serde_json::from_slice(data).map_err(|e| FormatError::invalid("snapshot", e.to_string()))
    }
}

/// How `kura tag` changes a snapshot's tags: replace them all, or add and remove some.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagChange {
    /// The tags to have, replacing all (`Some(vec![])` clears them).
    pub set: Option<Vec<String>>,
    /// Tags to add.
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
}

impl TagChange {
    /// Whether it changes nothing whatever the tags.
    pub fn is_empty(&self) -> bool {
        self.set.is_none() && self.add.is_empty() && self.remove.is_empty()
    }

    /// The tags `tags` become: the set (or the old ones), minus those removed, plus those
    /// added, in the order first seen and each once.
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        let start = self.set.as_deref().unwrap_or(tags);
        let mut out: Vec<String> = Vec::new();
        for t in start.iter().chain(&self.add) {
            let t = t.trim();
            if !t.is_empty() && !out.iter().any(|o| o == t) && !self.remove.iter().any(|r| r == t) {
                out.push(t.to_string());
            }
        }
        out
    }
}

/// Which snapshots a command considers (`--host`, `--path`, `--tag`: restic's names). An empty
/// list does not narrow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Host names or device names: the snapshot's must be one of them.
    pub hosts: Vec<String>,
    /// Absolute paths: the snapshot must have backed up every one.
    pub paths: Vec<String>,
    /// Tag lists, each `a,b` meaning both: the snapshot must carry every tag of one list.
    pub tags: Vec<String>,
}

impl Filter {
    /// Whether it narrows nothing.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.paths.is_empty() && self.tags.is_empty()
    }

    /// Whether snapshot `s`, made by the device named `device_name`, is considered.
    pub fn matches(&self, s: &Snapshot, device_name: Option<&str>) -> bool {
        let host = self.hosts.is_empty()
            || self
                .hosts
                .iter()
                .any(|h| *h == s.hostname || Some(h.as_str()) == device_name);
        let paths = self.paths.iter().all(|p| s.paths.contains(p));
        let tags = self.tags.is_empty()
            || self.tags.iter().any(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .all(|t| s.tags.iter().any(|have| have == t))
            });
        host && paths && tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_narrow_by_host_or_device_name_paths_and_tags() {
        let mut s = Snapshot::decode(br#"{"time":"2026-11-21T10:00:00Z","device":"03030303030303030303030303030303","hostname":"vm","paths":["/a","/b"],"type":"full","tags":["daily","home"],"tree":"0909090909090909090909090909090909090909090909090909090909090909"}"#).unwrap();
        let f = |hosts: &[&str], paths: &[&str], tags: &[&str]| Filter {
            hosts: hosts.iter().map(|x| x.to_string()).collect(),
            paths: paths.iter().map(|x| x.to_string()).collect(),
            tags: tags.iter().map(|x| x.to_string()).collect(),
        };
        assert!(f(&[], &[], &[]).matches(&s, None));
        assert!(f(&["vm"], &[], &[]).matches(&s, None));
        assert!(f(&["laptop"], &[], &[]).matches(&s, Some("laptop")));
        assert!(!f(&["other"], &[], &[]).matches(&s, Some("laptop")));
        assert!(f(&[], &["/a"], &[]).matches(&s, None));
        assert!(!f(&[], &["/a", "/c"], &[]).matches(&s, None));
        assert!(f(&[], &[], &["daily,home"]).matches(&s, None));
        assert!(!f(&[], &[], &["daily,work"]).matches(&s, None));
        assert!(f(&[], &[], &["daily,work", "home"]).matches(&s, None));
        s.tags.clear();
        assert!(!f(&[], &[], &["home"]).matches(&s, None));
    }

    #[test]
    fn tag_changes_set_add_and_remove_each_tag_once() {
        let tags = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let have = tags(&["daily", "home"]);
        let add = TagChange {
            add: tags(&["work", "daily"]),
            remove: tags(&["home"]),
            ..TagChange::default()
        };
        assert_eq!(add.apply(&have), tags(&["daily", "work"]));
        let set = TagChange {
            set: Some(tags(&["a", "a", " b "])),
            ..TagChange::default()
        };
        assert_eq!(set.apply(&have), tags(&["a", "b"]));
        let clear = TagChange {
            set: Some(vec![]),
            ..TagChange::default()
        };
        assert!(clear.apply(&have).is_empty());
        assert!(TagChange::default().is_empty() && !clear.is_empty());
    }

    #[test]
    fn round_trip() {
        let s = Snapshot {
            time: "2026-11-21T10:00:00Z".parse().unwrap(),
            device: DeviceId([3; 16]),
            hostname: "h".into(),
            paths: vec!["/a".into()],
            kind: BackupType::Incremental,
            tags: vec!["t".into()],
            tree: Id([9; 32]),
            base: Some(Id([8; 32])),
            changes: Some(Id([7; 32])),
            excludes: vec![],
            original: Some(Id([6; 32])),
            summary: Summary::default(),
        };
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        assert!(Snapshot::decode(b"{}").is_err());
        assert!(
            String::from_utf8(s.encode())
                .unwrap()
                .contains("\"type\":\"incremental\"")
        );
    }
}
