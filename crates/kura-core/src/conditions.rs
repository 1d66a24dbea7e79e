//! Storage conditions (`docs/requirements/placement.md` requirement 6): what the service tells a
//! user of each object it stores for them: every copy's site and region, whether it is good, the
//! algorithm that sealed it and a reference to the key (never the key itself).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether a copy can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyStatus {
    /// Written and checked.
    Ok,
    /// Could not be written, or failed its check when read; the other copy serves meanwhile.
    Failed,
    /// Opens under its site's key but is not the object stored, or its site failed to prove
    /// its identity: kept untouched as evidence, never read or overwritten.
    Tampered,
}

impl CopyStatus {
    /// The name the conditions use.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyStatus::Ok => "ok",
            CopyStatus::Failed => "failed",
            CopyStatus::Tampered => "tampered",
        }
    }
}

/// One copy of an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyCondition {
    /// The site.
    pub site: String,
    /// The site's region.
    pub region: String,
    /// Whether the copy is good.
    pub status: CopyStatus,
    /// The site envelope's algorithm.
    pub algorithm: String,
    /// Which key sealed it, by reference (`site/vN`); empty for a copy never written.
    pub key_ref: String,
    /// Why a copy failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The conditions of one stored object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectConditions {
    /// The object: `kind/name` (`data/…`, `snapshots/…`), or `config`.
    pub object: String,
    /// Its size as the client sent it.
    pub size: u64,
    /// When it was stored.
    pub stored: String,
    /// How its placement falls short of the rule (`one_copy`, `secondary_in_home_region`),
    /// if it does.
    pub degraded: Option<String>,
    /// Its copies, primary first.
    pub copies: Vec<CopyCondition>,
}

/// The conditions as lines of text, for people: how many objects (and bytes, as `size` writes
/// them) share each set of copies, then every object that is degraded or has a failed copy.
pub fn summary(objects: &[ObjectConditions], size: impl Fn(u64) -> String) -> Vec<String> {
    let mut groups: BTreeMap<Vec<String>, (u64, u64)> = BTreeMap::new();
    for o in objects {
        let copies = o
            .copies
            .iter()
            .map(|c| {
                format!(
                    "{} (region {}): {}, {}, key {}",
                    c.site,
                    c.region,
                    c.status.as_str(),
                    c.algorithm,
                    if c.key_ref.is_empty() {
                        "-"
                    } else {
                        &c.key_ref
                    }
                )
            })
            .collect();
        let g = groups.entry(copies).or_default();
        g.0 += 1;
        g.1 += o.size;
    }
    let mut lines = vec![format!("{} objects stored", objects.len())];
    for (copies, (count, bytes)) in &groups {
        lines.push(format!(
            "{count} objects ({}) with {} copies:",
            size(*bytes),
            copies.len()
        ));
        lines.extend(copies.iter().map(|c| format!("  {c}")));
    }
    let short: Vec<&ObjectConditions> = objects
        .iter()
        .filter(|o| o.degraded.is_some() || o.copies.iter().any(|c| c.status != CopyStatus::Ok))
        .collect();
    if short.is_empty() {
        lines.push("every object has two good copies as the placement rule requires".into());
    } else {
        lines.push(format!(
            "{} objects are short of their placement (the service completes them when a site returns):",
            short.len()
        ));
        for o in short {
            lines.push(format!(
                "  {} {}",
                o.object,
                o.degraded.as_deref().unwrap_or("failed copy")
            ));
        }
    }
    lines
}
