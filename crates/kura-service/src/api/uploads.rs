//! Large objects in checked pieces (`docs/requirements/terminal-backup.md` requirement 8):
//! what the service has of an upload, one piece at a time at its offset, the commit that
//! stores the whole, and abandoning. Unfinished uploads count against the storage limit.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kura_api::{PieceAt, RECEIVED_HEADER, Removed, Sweep};

use super::auth::Authed;
use super::budget::{Cost, Received};
use super::objects::{already_stored, checksum, file_type, reserve, store_object, uploads_of};
use super::{ApiError, ApiResult, App, catalog};
use crate::upload::{Finished, UploadError};

/// The user's unfinished uploads, beside their other per-user files.
/// Runs an upload step on the blocking pool to its end, even if the client goes away.
async fn uploading<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UploadError> + Send + 'static,
) -> ApiResult<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// `GET /v1/uploads`.
pub async fn list(State(app): App, Extension(authed): Extension<Authed>) -> ApiResult<Response> {
    let up = uploads_of(&app, &authed.user);
    Ok(axum::Json(uploading(move || up.list()).await?).into_response())
}

/// `DELETE /v1/uploads?older_than=SECS`.
pub async fn sweep(
    State(app): App,
    Query(q): Query<Sweep>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<axum::Json<Removed>> {
    let up = uploads_of(&app, &authed.user);
    let age = std::time::Duration::from_secs(q.older_than);
    let removed = uploading(move || up.sweep(age)).await?;
    Ok(axum::Json(Removed { removed }))
}

/// `HEAD /v1/uploads/{kind}/{name}`: bytes received so far.
pub async fn status(
    State(app): App,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    file_type(&kind, Some(&name))?;
    let up = uploads_of(&app, &authed.user);
    let received = uploading(move || up.received(&kind, &name)).await?;
    Ok((StatusCode::OK, [(RECEIVED_HEADER, received.to_string())]).into_response())
}

/// `PUT /v1/uploads/{kind}/{name}?offset=N`: one piece with its checksum.
pub async fn piece(
    State(app): App,
    Path((kind, name)): Path<(String, String)>,
    Query(at): Query<PieceAt>,
    Extension(authed): Extension<Authed>,
    headers: HeaderMap,
    Received(body): Received,
) -> ApiResult<axum::Json<kura_api::Received>> {
    let Authed { user, .. } = authed;
    file_type(&kind, Some(&name))?;
    let sum =
        checksum(&headers)?.ok_or_else(|| ApiError::bad_request("a piece needs a checksum"))?;
    // Held until the piece is on disk, where the next reservation sees it as pending.
    let room = reserve(&app, &user, None, body.len(), None).await?;
    let up = uploads_of(&app, &user);
    let received = uploading(move || up.append(&kind, &name, at.offset, &body, &sum)).await?;
    drop(room);
    Ok(axum::Json(kura_api::Received { received }))
}

/// `POST /v1/uploads/{kind}/{name}`: stores the whole upload if it matches its checksum.
pub async fn commit(
    State(app): App,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let t = file_type(&kind, Some(&name))?;
    let sum =
        checksum(&headers)?.ok_or_else(|| ApiError::bad_request("a commit needs a checksum"))?;
    let up = uploads_of(&app, &authed.user);
    let (k, n, u) = (kind.clone(), name.clone(), up.clone());
    // A missing upload is held at the least; `finish` then says what is missing.
    let size = uploading(move || u.received(&k, &n)).await.unwrap_or(0);
    let _held = app
        .budget
        .hold(authed.user.id, size, Cost::Committed)
        .await?;
    let (k, n, s, u) = (kind.clone(), name.clone(), sum.clone(), up.clone());
    let finished = tokio::task::spawn_blocking(move || u.finish(&k, &n, &s)).await?;
    let Finished { object, mark } = match finished {
        Ok(f) => f,
        Err(UploadError::NotFound) => {
            // A repeated commit whose first answer was lost: the object is in place.
            let id = authed.user.id;
            let stored = catalog(&app, move |s| s.object(id, t.name(), &name)).await?;
            return match stored {
                Some(e) if e.sha256.eq_ignore_ascii_case(&sum) => Ok(StatusCode::NO_CONTENT),
                _ => Err(UploadError::NotFound.into()),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let drop_upload = {
        let (kind, name) = (kind.clone(), name.clone());
        move || uploading(move || up.drop_finished(&kind, &name, mark))
    };
    match already_stored(&app, &authed, t, &name, &sum).await {
        Ok(false) => {}
        done => {
            drop_upload().await?;
            return done.map(|_| StatusCode::NO_CONTENT);
        }
    }
    let user = authed.user;
    let committing = Some((kind.as_str(), name.as_str()));
    let room = match reserve(&app, &user, Some((t, &name)), object.len(), committing).await {
        Ok(room) => room,
        Err(e) => {
            drop_upload().await?;
            return Err(e);
        }
    };
    // Dropped only once stored: a service killed before that finds it again when the client
    // repeats the commit.
    store_object(&app, &user, t, &name, object, room).await?;
    drop_upload().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/uploads/{kind}/{name}`.
pub async fn abort(
    State(app): App,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<StatusCode> {
    file_type(&kind, Some(&name))?;
    let up = uploads_of(&app, &authed.user);
    uploading(move || up.abort(&kind, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}
