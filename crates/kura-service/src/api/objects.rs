//! A user's repository objects: list, read (whole or a range), size, store, remove. Names
//! are validated before anything is looked up, and every store is checked against the
//! contract's limits.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use futures_util::StreamExt;

use crate::spool::Spool;
use crate::storage::{READ_WINDOW, StorageError};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kura_api::{ByteRange, CHECKSUM_HEADER, is_hex_name};
use kura_repo::FileType;

use super::auth::Authed;
use super::budget::{Cost, Received};
use super::{ApiError, ApiResult, App, AppState, Metrics, catalog};
use crate::registry::User;
use crate::registry::quota::{Limits, Reservation, Room};
use crate::upload::Uploads;

/// The kind named `kind`, with `name` checked for it: `config` for the config, else 1 to 64
/// lowercase hex digits. Nothing else reaches storage.
pub fn file_type(kind: &str, name: Option<&str>) -> ApiResult<FileType> {
    let t = FileType::from_name(kind)
        .ok_or_else(|| ApiError::not_found(format!("no such kind {kind:?}")))?;
    if let Some(n) = name {
        let ok = match t {
            FileType::Config => n == "config",
            _ => is_hex_name(n, 64),
        };
        if !ok {
            return Err(ApiError::bad_request(format!("invalid name {n:?}")));
        }
    }
    Ok(t)
}

/// The `Range` of a request (inclusive), if any; see [`ByteRange`].
pub fn parse_range(headers: &HeaderMap) -> ApiResult<Option<ByteRange>> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(ByteRange::parse)
        .map(Some)
        .ok_or_else(|| ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "malformed Range header"))
}

/// The checksum a client sent with a piece or object, if any.
pub fn checksum(headers: &HeaderMap) -> ApiResult<Option<String>> {
    headers
        .get(CHECKSUM_HEADER)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request("malformed checksum header"))
        })
        .transpose()
}

/// `GET /v1/repo/{kind}`.
pub async fn list(
    State(app): App,
    Path(kind): Path<String>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let t = file_type(&kind, None)?;
    let id = authed.user.id;
    let names = catalog(&app, move |s| s.object_names(id, t.name())).await?;
    Ok(axum::Json(names).into_response())
}

/// `GET /v1/repo/{kind}/{name}`, whole or a range. A part longer than a window is sent a
/// window at a time as it is read from the sites, so a read holds about a window of memory.
pub async fn read(
    State(app): App,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let t = file_type(&kind, Some(&name))?;
    let range = parse_range(&headers)?;
    let id = authed.user.id;
    let entry = app.storage.entry(id, t, &name).await?;
    let size = entry.size;
    let (start, end) = match range {
        Some(r) if r.first >= size => return Err(StorageError::OutOfRange.into()),
        Some(r) => (r.first, r.last.saturating_add(1).min(size)),
        None => (0, size),
    };
    let held = app.budget.hold(id, end - start, Cost::Opened).await?;
    let body = if end - start > READ_WINDOW {
        let counted = app.clone();
        let windows = app.storage.windows(id, t, entry, start, end)?;
        Body::from_stream(windows.map(move |part| {
            // The memory stays held as long as the body is being sent.
            let _ = &held;
            part.inspect(|p| Metrics::add(&counted.metrics.bytes_out, p.len() as u64))
        }))
    } else {
        let body = match range {
            None => app.storage.get(id, t, &entry).await?,
            Some(_) => app.storage.get_range(id, t, &entry, start, end).await?,
        };
        Metrics::add(&app.metrics.bytes_out, body.len() as u64);
        Body::from(body)
    };
    if range.is_none() {
        return Ok((StatusCode::OK, body).into_response());
    }
    let content_range = format!("bytes {start}-{}/{size}", end - 1);
    Ok((
        StatusCode::PARTIAL_CONTENT,
        [(axum::http::header::CONTENT_RANGE, content_range)],
        body,
    )
        .into_response())
}

/// `HEAD /v1/repo/{kind}/{name}`: the size.
pub async fn head(
    State(app): App,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let t = file_type(&kind, Some(&name))?;
    let id = authed.user.id;
    let entry = catalog(&app, move |s| s.object(id, t.name(), &name))
        .await?
        .ok_or_else(|| ApiError::not_found("not found"))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_LENGTH, entry.size.to_string())],
    )
        .into_response())
}

/// `PUT /v1/repo/{kind}/{name}`.
pub async fn write(
    State(app): App,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
    headers: HeaderMap,
    Received(body): Received,
) -> ApiResult<StatusCode> {
    let t = file_type(&kind, Some(&name))?;
    let sum = body.sha256().to_string();
    if checksum(&headers)?.is_some_and(|sent| !sum.eq_ignore_ascii_case(&sent)) {
        return Err(ApiError::resend());
    }
    if already_stored(&app, &authed, t, &name, &sum).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    let user = authed.user;
    let room = reserve(&app, &user, Some((t, &name)), body.len(), None).await?;
    store_object(&app, &user, t, &name, body, room).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/repo/{kind}/{name}`.
pub async fn remove(
    State(app): App,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<StatusCode> {
    let t = file_type(&kind, Some(&name))?;
    // Locks are the repository's own bookkeeping: removing them destroys nothing.
    if t != FileType::Lock {
        authed.may_destroy("deleting")?;
    }
    let (storage, id) = (app.storage.clone(), authed.user.id);
    tokio::spawn(async move { storage.delete(id, t, &name).await }).await??;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether an append-only session's store is already done: the same bytes stored under the
/// name (a retry) are; other bytes there are refused, since they would replace them.
pub async fn already_stored(
    app: &Arc<AppState>,
    authed: &Authed,
    t: FileType,
    name: &str,
    sha256: &str,
) -> ApiResult<bool> {
    if !authed.append_only || t == FileType::Lock {
        return Ok(false);
    }
    let (id, n) = (authed.user.id, name.to_string());
    match catalog(app, move |s| s.object(id, t.name(), &n)).await? {
        None => Ok(false),
        Some(e) if e.sha256.eq_ignore_ascii_case(sha256) => Ok(true),
        Some(_) => authed
            .may_destroy("replacing a stored object")
            .map(|()| true),
    }
}

/// Reserves room under the user's limits for an object `t`/`name` of `size` bytes, or
/// with `object` `None` for a piece of that many bytes of an upload. The user's unfinished
/// uploads count too, except the one being committed (`committing`).
pub async fn reserve(
    app: &Arc<AppState>,
    user: &User,
    object: Option<(FileType, &str)>,
    size: u64,
    committing: Option<(&str, &str)>,
) -> ApiResult<Reservation> {
    let Some(contract) = &user.contract else {
        return Err(ApiError::internal("authorized user without a contract"));
    };
    let limits = Limits {
        max_bytes: contract.max_bytes,
        max_archives: contract.max_archives,
        max_objects: app.max_objects,
    };
    let object = object.map(|(t, n)| (t.name(), n.to_string()));
    let committing = committing.map(|(k, n)| (k.to_string(), n.to_string()));
    let (registry, uploads, id) = (app.registry.clone(), uploads_of(app, user), user.id);
    let reserved = tokio::task::spawn_blocking(move || {
        let room = match &object {
            Some((kind, name)) => Room::Object { kind, name, size },
            None => Room::Piece(size),
        };
        let except = committing.as_ref().map(|(k, n)| (k.as_str(), n.as_str()));
        registry.reserve(id, room, limits, || {
            uploads.pending_bytes(except).map_err(std::io::Error::other)
        })
    })
    .await??;
    reserved.map_err(|over| {
        Metrics::add(&app.metrics.refused, 1);
        ApiError::new(StatusCode::FORBIDDEN, over.to_string())
    })
}

/// A user's unfinished uploads.
pub fn uploads_of(app: &AppState, user: &User) -> Uploads {
    Uploads::new(crate::user_dir(&app.data_dir, user.id).join("uploads"))
}

/// Stores an object on the sites under the room reserved for it. It runs to its end even if
/// the client goes away meanwhile, so an object is never stored without being recorded and
/// counted; the room is held until then, not only as long as the request.
pub async fn store_object(
    app: &Arc<AppState>,
    user: &User,
    t: FileType,
    name: &str,
    object: Spool,
    room: Reservation,
) -> ApiResult<()> {
    let (storage, user, name) = (app.storage.clone(), user.clone(), name.to_string());
    let (len, sha256) = (object.len(), object.sha256().to_string());
    tokio::spawn(async move {
        let stored = storage.put(&user, t, &name, Arc::new(object), sha256).await;
        drop(room);
        stored
    })
    .await??;
    Metrics::add(&app.metrics.bytes_in, len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_malformed_range_is_not_satisfiable() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_range(&h).unwrap(), None);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=2-4"));
        assert_eq!(
            parse_range(&h).unwrap(),
            Some(ByteRange { first: 2, last: 4 })
        );
        h.insert(header::RANGE, HeaderValue::from_static("bytes=4-2"));
        let e = parse_range(&h).unwrap_err();
        assert_eq!(e.status, StatusCode::RANGE_NOT_SATISFIABLE);
    }

    #[test]
    fn names_are_lowercase_hex_or_the_config() {
        assert_eq!(file_type("data", Some("ab01")).unwrap(), FileType::Pack);
        assert_eq!(
            file_type("config", Some("config")).unwrap(),
            FileType::Config
        );
        for (kind, name) in [
            ("data", "AB01"),
            ("data", "../x"),
            ("data", ""),
            ("config", "other"),
            ("snapshots", "g0"),
        ] {
            let e = file_type(kind, Some(name)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{kind}/{name}");
        }
        assert!(file_type("data", Some(&"a".repeat(64))).is_ok());
        assert!(file_type("data", Some(&"a".repeat(65))).is_err());
        assert_eq!(
            file_type("users", None).unwrap_err().status,
            StatusCode::NOT_FOUND
        );
    }
}
