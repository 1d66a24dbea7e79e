//! A phone's memory on disk: the address book as vCard files and the other memory items, in a
//! folder the phone replaces whole, so a restore writes all its items or none.
//!
//! ```text
//! ROOT/data -> gen-7          the memory as it is (a symbolic link)
//! ROOT/gen-7/contacts/*.vcf   one card per file
//! ROOT/gen-7/items/NAME       one memory item per file
//! ```
//!
//! A restore or wipe builds the next generation beside the current one, syncs it, and then
//! renames a new link over `data`: the rename is the one step that makes it the memory, so a
//! process killed at any point leaves the old memory or the new one, never a mix. What a
//! killed write left behind is removed at the next [`Store::open`]. Writers (the phone agent,
//! `kura phone import`) and readers (`kura phone export`) of one memory may be different
//! processes: each write holds `ROOT/lock` exclusively, each read shared.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::payload::{Bundle, CONTACTS, ITEMS};

const LINK: &str = "data";

/// A phone's memory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the memory under `root`, making an empty one if there is none, and removes what an
    /// interrupted write left.
    pub fn open(root: &Path) -> io::Result<Store> {
        fs::create_dir_all(root)?;
        let store = Store {
            root: root.to_path_buf(),
        };
        let _lock = store.lock(true)?;
        if fs::symlink_metadata(root.join(LINK)).is_err() {
            let first = store.generation(0);
            fs::create_dir_all(first.join(CONTACTS))?;
            fs::create_dir_all(first.join(ITEMS))?;
            store.point_to(0)?;
        }
        let current = store.current_generation()?;
        for e in fs::read_dir(root)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = name.ends_with(".tmp")
                || name
                    .strip_prefix("gen-")
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n != current);
            if stale {
                remove(&e.path())?;
            }
        }
        Ok(store)
    }

    /// The folder holding the memory as it is now (`ROOT/data`).
    pub fn data(&self) -> PathBuf {
        self.root.join(LINK)
    }

    /// Everything in memory.
    pub fn read(&self) -> io::Result<Bundle> {
        let _lock = self.lock(false)?;
        read_folder(&self.data())
    }

    /// Holds the memory's lock (exclusive to write, shared to read) until dropped.
    fn lock(&self, exclusive: bool) -> io::Result<fs::File> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))?;
        if exclusive {
            f.lock()?;
        } else {
            f.lock_shared()?;
        }
        Ok(f)
    }

    /// Writes `restored` over the items it names in `items` (the whole memory when `items` is
    /// empty): each named item becomes exactly what `restored` holds of it, the rest stays.
    /// All or nothing.
    pub fn restore(&self, restored: &Bundle, items: &[String]) -> io::Result<()> {
        let _lock = self.lock(true)?;
        let mut next = if items.is_empty() {
            Bundle::default()
        } else {
            let now = read_folder(&self.data())?;
            Bundle {
                entries: now
                    .entries
                    .into_iter()
                    .filter(|(p, _)| !items.iter().any(|i| i == Bundle::item_of(p)))
                    .collect(),
            }
        };
        next.entries.extend(restored.only(items).entries);
        self.replace(&next)
    }

    /// Empties the memory (a lost phone told to wipe itself). All or nothing.
    pub fn wipe(&self) -> io::Result<()> {
        let _lock = self.lock(true)?;
        self.replace(&Bundle::default())
    }

    fn replace(&self, next: &Bundle) -> io::Result<()> {
        let old = self.current_generation()?;
        let n = old + 1;
        let staging = self.root.join(format!("gen-{n}.tmp"));
        remove(&staging)?;
        for folder in [CONTACTS, ITEMS] {
            fs::create_dir_all(staging.join(folder))?;
        }
        for (path, bytes) in &next.entries {
            let file = staging.join(path);
            fs::write(&file, bytes)?;
            fs::File::open(&file)?.sync_all()?;
        }
        for folder in [CONTACTS, ITEMS] {
            sync_dir(&staging.join(folder))?;
        }
        fs::rename(&staging, self.generation(n))?;
        sync_dir(&self.root)?;
        self.point_to(n)?;
        remove(&self.generation(old))
    }

    fn generation(&self, n: u64) -> PathBuf {
        self.root.join(format!("gen-{n}"))
    }

    fn current_generation(&self) -> io::Result<u64> {
        let target = fs::read_link(self.data())?;
        target
            .to_str()
            .and_then(|t| t.strip_prefix("gen-"))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} points to {}, not a generation",
                        self.data().display(),
                        target.display()
                    ),
                )
            })
    }

    fn point_to(&self, n: u64) -> io::Result<()> {
        let tmp = self.root.join("data.tmp");
        remove(&tmp)?;
        std::os::unix::fs::symlink(format!("gen-{n}"), &tmp)?;
        fs::rename(&tmp, self.data())?;
        sync_dir(&self.root)
    }
}

/// The bundle a folder laid out as a phone's memory holds (`contacts/*.vcf`, `items/*`); a
/// file that is not a card or plain item is an error.
pub fn read_folder(dir: &Path) -> io::Result<Bundle> {
    let mut b = Bundle::default();
    for folder in [CONTACTS, ITEMS] {
        let entries = match fs::read_dir(dir.join(folder)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let path = format!("{folder}/{}", e.file_name().to_string_lossy());
            let bytes = fs::read(e.path())?;
            b.insert(&path, bytes).map_err(|err| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {err}", e.path().display()),
                )
            })?;
        }
    }
    Ok(b)
}

/// Makes `dir` hold exactly `bundle`, laid out as a phone's memory (the terminal's copy of a
/// phone, which it backs up). Not atomic: the snapshot taken of it is.
pub fn write_folder(dir: &Path, bundle: &Bundle) -> io::Result<()> {
    for folder in [CONTACTS, ITEMS] {
        remove(&dir.join(folder))?;
        fs::create_dir_all(dir.join(folder))?;
    }
    for (path, bytes) in &bundle.entries {
        fs::write(dir.join(path), bytes)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Bundle {
        let mut b = Bundle::default();
        b.insert("contacts/1.vcf", b"card one".to_vec()).unwrap();
        b.insert("contacts/2.vcf", b"card two".to_vec()).unwrap();
        b.insert("items/memo", b"memo".to_vec()).unwrap();
        b.insert("items/alarm", b"07:00".to_vec()).unwrap();
        b
    }

    #[test]
    fn a_restore_replaces_the_named_items_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.read().unwrap(), Bundle::default());
        s.restore(&memory(), &[]).unwrap();
        assert_eq!(s.read().unwrap(), memory());

        let mut changed = Bundle::default();
        changed.insert("contacts/3.vcf", b"three".to_vec()).unwrap();
        changed.insert("items/memo", b"other".to_vec()).unwrap();
        s.restore(&changed, &["contacts".into()]).unwrap();
        let now = s.read().unwrap();
        assert_eq!(now.contacts(), 1);
        assert_eq!(now.entries["items/memo"], b"memo");
        assert_eq!(now.entries["items/alarm"], b"07:00");

        s.wipe().unwrap();
        assert_eq!(s.read().unwrap(), Bundle::default());
        let gens = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(gens, 3, "the link, the lock and one generation");
    }

    #[test]
    fn what_a_killed_write_left_is_removed_and_the_memory_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.restore(&memory(), &[]).unwrap();
        // A write killed before its rename, and one killed after it but before the link.
        fs::create_dir_all(dir.path().join("gen-9.tmp/contacts")).unwrap();
        fs::create_dir_all(dir.path().join("gen-8/items")).unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.read().unwrap(), memory());
        assert!(!dir.path().join("gen-9.tmp").exists());
        assert!(!dir.path().join("gen-8").exists());
    }
}
