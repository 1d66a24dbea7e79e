//! The storage provider's side of a repository kept at the Kura service: what the device
//! tells it (job reports, the packs a snapshot needs) and what it asks of it (storage
//! conditions, lost objects, incidents, notices, statements). Storage itself is
//! [`crate::Backend`]; a backend at a provider hands this out through
//! [`crate::Backend::provider`].

use kura_api::{Incident, JobReport, Notice, ObjectConditions, Statement};
use kura_core::Id;

use crate::BackendError;

/// Calls to the storage provider, in terms it may see (ids, counts, never paths or names).
pub trait Provider: Send + Sync {
    /// Tells the provider how a job stands, for its own log.
    fn report_job(&self, report: &JobReport) -> Result<(), BackendError>;
    /// Tells the provider which packs a snapshot needs (their ids only), so that a provider
    /// that loses a pack can name the snapshots it takes with it.
    fn report_snapshot_packs(&self, snapshot: &str, packs: &[Id]) -> Result<(), BackendError>;
    /// The storage conditions of the objects stored (since `since`).
    fn conditions(
        &self,
        since: Option<jiff::Timestamp>,
    ) -> Result<Vec<ObjectConditions>, BackendError>;
    /// The objects the provider has no good copy of any more (`kind/name`, or `config`):
    /// readers treat them as missing, so a backup stores their contents anew.
    fn lost(&self) -> Result<Vec<String>, BackendError>;
    /// The user's statements, oldest first.
    fn statements(&self) -> Result<Vec<Statement>, BackendError>;
    /// Objects to a statement before its deadline; the provider holds the charge until its
    /// operator resolves the objection. Returns the statement as it stands now.
    fn object_to(&self, statement: &str, reason: &str) -> Result<Statement, BackendError>;
    /// The incidents the provider's checks found in the user's data.
    fn incidents(&self) -> Result<Vec<Incident>, BackendError>;
    /// The user's message history.
    fn notices(&self) -> Result<Vec<Notice>, BackendError>;
}
