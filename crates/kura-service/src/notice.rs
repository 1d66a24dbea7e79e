//! Notices to members (`spec/placement.md` requirements 6, 8 and 12): each is kept in the
//! member's message history and written as an e-mail message (RFC 5322) to the outbox directory,
//! `DATA/outbox`, the embedded default's stand-in for a mail relay.

use std::collections::BTreeMap;
use std::path::Path;

use crate::store::catalog::ObjectEntry;
use crate::store::{Store, User};
use kura_core::conditions::CopyStatus;

/// Keeps a notice in the member's history and writes it to the outbox; returns its number.
pub fn send(
    store: &Store,
    data_dir: &Path,
    user: &User,
    kind: &str,
    subject: &str,
    body: &str,
) -> Result<i64, crate::storage::StorageError> {
    let id = store.add_message(user.id, kind, subject, body)?;
    let outbox = data_dir.join("outbox");
    std::fs::create_dir_all(&outbox)?;
    let date = jiff::fmt::rfc2822::to_string(&jiff::Zoned::now()).unwrap_or_default();
    let message = format!(
        "From: Kura <kura@localhost>\r\nTo: {name}\r\nDate: {date}\r\nSubject: {subject}\r\n\
         Message-ID: <{id}.{uid}@kura>\r\nX-Kura-User: {name}\r\nX-Kura-Kind: {kind}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}",
        name = user.name,
        uid = user.id,
        body = body.replace('\n', "\r\n"),
    );
    crate::write_private(
        &outbox.join(format!("{id:08}-{}.eml", user.name)),
        message.as_bytes(),
    )?;
    tracing::info!(user = user.id, id, kind, "notice sent");
    Ok(id)
}

/// The storage conditions of `objects` as text: how many objects sit on each combination of
/// copies, with each copy's site, region, state, algorithm and key reference.
pub fn conditions_text(intro: &str, objects: &[ObjectEntry]) -> String {
    let mut groups: BTreeMap<Vec<String>, (u64, u64)> = BTreeMap::new();
    let mut degraded = 0;
    for o in objects {
        let lines = o
            .copies
            .iter()
            .map(|c| {
                format!(
                    "{} (region {}): {}, {}, key {}",
                    c.site,
                    c.region,
                    match c.status {
                        CopyStatus::Ok => "ok",
                        CopyStatus::Failed => "FAILED",
                    },
                    c.algorithm,
                    if c.key_ref.is_empty() {
                        "-"
                    } else {
                        &c.key_ref
                    }
                )
            })
            .collect();
        let g = groups.entry(lines).or_default();
        g.0 += 1;
        g.1 += o.size;
        degraded += u64::from(o.degraded.is_some());
    }
    let mut text = format!("{intro}\n\n");
    for (copies, (count, bytes)) in &groups {
        text.push_str(&format!("{count} objects ({bytes} bytes):\n"));
        for c in copies {
            text.push_str(&format!("  {c}\n"));
        }
    }
    text.push_str(&if degraded == 0 {
        "Every object has its two copies as the placement rule requires.\n".to_string()
    } else {
        format!(
            "{degraded} objects are stored degraded (fewer than two good copies, or both in \
             your home region); the service completes them when a site returns.\n"
        )
    });
    text.push_str("\n`kura conditions` shows the conditions of each object.\n");
    text
}
