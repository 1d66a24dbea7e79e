//! What a user tells the service and asks of it beside storage: job reports and the packs
//! each snapshot needs (so a lost pack names its snapshots), the storage conditions, the
//! message and incident histories, lost objects, statements and objections.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get};
use kura_api::{JobReport, MAX_REASON, ObjectConditions, Objection, Since, Statement};
use kura_repo::FileType;
use serde::Serialize;

use super::auth::Authed;
use super::objects::file_type;
use super::{ApiError, ApiResult, App, AppState, catalog};
use crate::registry::{Registry, RegistryError};

/// A `GET` route answering with what `query` finds for the user.
pub fn view<T: Serialize + Send + 'static>(
    query: fn(&Registry, i64) -> Result<T, RegistryError>,
) -> MethodRouter<std::sync::Arc<AppState>> {
    get(
        move |State(app): App, Extension(authed): Extension<Authed>| async move {
            let id = authed.user.id;
            catalog(&app, move |s| query(s, id)).await.map(axum::Json)
        },
    )
}

/// `GET /v1/conditions?since=`: per object, each copy's site, region, state, algorithm and
/// key reference.
pub async fn conditions(
    State(app): App,
    Query(q): Query<Since>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<axum::Json<Vec<ObjectConditions>>> {
    let id = authed.user.id;
    let entries = catalog(&app, move |s| s.objects(id, q.since)).await?;
    Ok(axum::Json(entries.iter().map(|e| e.conditions()).collect()))
}

/// `GET /v1/jobs`: the user's backup log as the service has it.
pub async fn jobs(
    State(app): App,
    Extension(authed): Extension<Authed>,
) -> ApiResult<axum::Json<Vec<JobReport>>> {
    let name = authed.user.name;
    let lines = catalog(&app, move |s| s.job_log(Some(&name))).await?;
    Ok(axum::Json(lines.into_iter().map(|l| l.report).collect()))
}

/// `PUT /v1/jobs/{job}`: a job's report.
pub async fn job_report(
    State(app): App,
    Path(job): Path<String>,
    Extension(authed): Extension<Authed>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let Authed { user, .. } = authed;
    let report = JobReport::decode(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed job report: {e}")))?;
    if let Some(why) = crate::joblog::refusal(&report, &job) {
        return Err(ApiError::bad_request(why));
    }
    let a = app.clone();
    tokio::task::spawn_blocking(move || {
        crate::joblog::record(&a.registry, &a.data_dir, &user, &report)
    })
    .await?
    .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/snapshots/{name}/packs`: which packs a user's snapshot needs, as the client
/// reports after a backup, so a lost pack names the snapshots it takes with it.
pub async fn snapshot_packs(
    State(app): App,
    Path(name): Path<String>,
    Extension(authed): Extension<Authed>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let user = authed.user.id;
    let t = file_type(FileType::Snapshot.name(), Some(&name))?;
    let packs = kura_core::id::ids_from_bytes(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed pack list: {e}")))?;
    let known = catalog(&app, move |s| {
        if s.object(user, t.name(), &name)?.is_none() {
            return Ok(false);
        }
        // Only packs this member stores are kept: the list costs the service nothing beyond
        // what the member already pays for.
        let mut ids = Vec::with_capacity(packs.len());
        for p in &packs {
            if s.object(user, FileType::Pack.name(), &p.to_hex())?
                .is_some()
            {
                ids.push(p.0);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        s.set_snapshot_packs(user, &name, &ids)?;
        Ok(true)
    })
    .await?;
    if !known {
        return Err(ApiError::not_found("no such snapshot"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// An objection's reason, trimmed, if it is 1 to [`MAX_REASON`] printable characters.
pub fn objection_reason(reason: &str) -> Option<String> {
    let reason = reason.trim();
    let printable = reason
        .chars()
        .all(|c| !c.is_control() || c == '\n' || c == '\t');
    let fits = !reason.is_empty() && reason.chars().count() <= MAX_REASON;
    (fits && printable).then(|| reason.to_string())
}

/// `POST /v1/statements/{id}/objection`: holds the charge until the operator resolves it.
pub async fn objection(
    State(app): App,
    Path(id): Path<String>,
    Extension(authed): Extension<Authed>,
    body: Bytes,
) -> ApiResult<axum::Json<Statement>> {
    let Authed { user, .. } = authed;
    let o: Objection = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed objection: {e}")))?;
    let reason = objection_reason(&o.reason).ok_or_else(|| {
        ApiError::bad_request(format!(
            "an objection needs a reason of 1 to {MAX_REASON} printable characters"
        ))
    })?;
    let today = crate::settlement::today();
    let registry = app.registry.clone();
    let held =
        tokio::task::spawn_blocking(move || registry.object_to(user.id, &id, &reason, today))
            .await?;
    let held = match held {
        Ok(s) => s,
        Err(RegistryError::Invalid(m)) => return Err(ApiError::not_found(m)),
        Err(RegistryError::Conflict(m)) => return Err(ApiError::new(StatusCode::CONFLICT, m)),
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = crate::settlement::tell(&app.storage).await {
        tracing::warn!("telling of the objection: {e}");
    }
    Ok(axum::Json(held))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_objection_needs_a_printable_reason_of_bounded_length() {
        assert_eq!(objection_reason("  too much\n"), Some("too much".into()));
        assert_eq!(objection_reason("a\tb\nc"), Some("a\tb\nc".into()));
        assert_eq!(objection_reason("   "), None);
        assert_eq!(objection_reason("bell\u{7}"), None);
        assert!(objection_reason(&"x".repeat(MAX_REASON)).is_some());
        assert!(objection_reason(&"x".repeat(MAX_REASON + 1)).is_none());
        // Characters, not bytes: a reason in Japanese may use its whole length.
        assert!(objection_reason(&"異".repeat(MAX_REASON)).is_some());
    }
}
