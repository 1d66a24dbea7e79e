//! A Kura repository over a storage [`Backend`]: opening and unlocking, devices, the in-memory
//! index, saving blobs into packs, snapshots, locks, and the maintenance commands `check` and
//! `prune`.

pub mod backend;
pub mod check;
pub mod index;
pub mod lock;
pub mod provider;
pub mod prune;
pub mod remote;
pub mod repair;
pub mod repo;
pub mod saver;
pub mod transfer;

pub use backend::{Backend, BackendError, FileType, LocalDir};
pub use index::MasterIndex;
pub use provider::Provider;
pub use repo::{Credential, Repository};

use kura_core::{FormatError, Id};

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// There is no repository at the location.
    #[error("no Kura repository at {0} (run `kura init` to create one)")]
    NotFound(String),
    /// A repository already exists where `init` was asked to make one.
    #[error("a repository already exists at {0}")]
    AlreadyExists(String),
    /// The repository was written by a newer Kura.
    #[error(
        "the repository at {location} has format version {found}; this kura reads version {supported} (upgrade kura)"
    )]
    NewerFormat {
        /// Where.
        location: String,
        /// Its version.
        found: u32,
        /// Ours.
        supported: u32,
    },
    /// No key file opens with the passphrase, or the recovery code is wrong.
    #[error(transparent)]
    Key(#[from] kura_core::keys::KeyError),
    /// Storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A stored object is damaged or forged.
    #[error("damaged {what} {name}: {source}")]
    Corrupt {
        /// Which kind of object.
        what: &'static str,
        /// Its name.
        name: String,
        /// What is wrong.
        source: FormatError,
    },
    /// A blob that a tree or snapshot needs is not in the index.
    #[error("blob {0} is missing from the repository")]
    MissingBlob(Id),
    /// Another process holds a conflicting lock.
    #[error("repository is locked: {0}")]
    Locked(String),
    /// No snapshot matches what the user named.
    #[error("no snapshot matches {0:?}")]
    NoSnapshot(String),
    /// Several snapshots match a prefix.
    #[error("{0:?} matches several snapshots; give more of the id")]
    AmbiguousSnapshot(String),
    /// This machine is not a device of the repository.
    #[error("this machine is not yet a device of the repository (run `kura device add`)")]
    NotADevice,
    /// The device was removed from the repository: it may not add data any more.
    #[error(
        "device {0} was removed from the repository on {1} (`kura device add` makes this machine a device again; it needs the passphrase)"
    )]
    DeviceRemoved(kura_core::keys::DeviceId, jiff::Timestamp),
    /// No device, or more than one, fits what the user named.
    #[error("{0}")]
    NoSuchDevice(String),
}

/// Shorthand for repository results.
pub type Result<T, E = RepoError> = std::result::Result<T, E>;

impl RepoError {
    /// Whether this is damage to what is stored (an object that fails its check, or is not
    /// there), not a failure to reach it: damage to one part costs only that part, while a
    /// failure to reach the storage ends what was being done.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            RepoError::Corrupt { .. }
                | RepoError::MissingBlob(_)
                | RepoError::Backend(BackendError::NotFound(_))
        )
    }
}

pub(crate) fn corrupt(
    what: &'static str,
    name: impl ToString,
) -> impl FnOnce(FormatError) -> RepoError {
    move |source| RepoError::Corrupt {
        what,
        name: name.to_string(),
        source,
    }
}
