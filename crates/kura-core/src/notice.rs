//! Notices the service sends a user (storage conditions, moved data, incidents, statements),
//! as the user's message history keeps them, and the incidents the service's checks found in
//! the user's data.

use serde::{Deserialize, Serialize};

/// One notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Its number in the user's history.
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

/// What kind of incident a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// A copy was missing or unreadable; it was repaired from a good copy (or is waiting to be).
    MediaFault,
    /// A copy holds other bytes than were stored though its envelope opens; kept as evidence.
    Tampering,
    /// No copy of an object is good.
    Lost,
    /// A site holding the user's data failed to prove its identity as often as the
    /// operator's threshold allows.
    FraudulentSite,
}

impl IncidentKind {
    /// The name in the database and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::MediaFault => "media_fault",
            IncidentKind::Tampering => "tampering",
            IncidentKind::Lost => "lost",
            IncidentKind::FraudulentSite => "fraudulent_site",
        }
    }
}

impl std::str::FromStr for IncidentKind {
    type Err = crate::FormatError;

    fn from_str(s: &str) -> Result<IncidentKind, crate::FormatError> {
        [
            IncidentKind::MediaFault,
            IncidentKind::Tampering,
            IncidentKind::Lost,
            IncidentKind::FraudulentSite,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| crate::FormatError::invalid("incident kind", s.to_string()))
    }
}

/// One incident in a user's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Its number.
    pub id: i64,
    /// When it was found.
    pub at: String,
    /// Whose data it touched.
    pub user: i64,
    /// What it was.
    pub kind: IncidentKind,
    /// The object (`kind/name`), if it is about one.
    pub object: Option<String>,
    /// The sites involved.
    pub sites: Vec<String>,
    /// One line for people.
    pub summary: String,
    /// The particulars (ranges, checksums, repairs, snapshots), for scripts.
    pub detail: serde_json::Value,
}
