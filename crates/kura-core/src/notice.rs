//! Notices the service sends a member (storage conditions, moved data, and later incidents and
//! statements), as the member's message history keeps them.

use serde::{Deserialize, Serialize};

/// One notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Its number in the member's history.
    pub id: i64,
    /// When it was sent (RFC 3339).
    pub at: String,
    /// What it is about: `conditions`, `placement`, ...
    pub kind: String,
    /// The subject line.
    pub subject: String,
    /// The text.
    pub body: String,
}
