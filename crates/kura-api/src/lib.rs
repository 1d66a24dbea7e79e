//! The Kura service's HTTP API as types, shared by the client (`kura_repo::remote`) and the
//! service (`kura_service::api`), so neither can drift from the other: every route
//! ([`route`]), the headers and body limits, and every request and response body. The
//! statement types live here ([`statement`]) because users read them over the API;
//! kura-billing computes them.
//!
//! ```text
//! POST   /v1/login                    Login -> Session (a password, or {} with a registered
//!                                     client certificate on the connection)
//! GET    /v1/repo/{kind}              names of one kind (config keys devices snapshots index
//!                                     data locks logs)
//! GET    /v1/repo/{kind}/{name}       contents (Range: bytes=a-b for part)
//! HEAD   /v1/repo/{kind}/{name}       size in Content-Length
//! PUT    /v1/repo/{kind}/{name}       store (atomic; checked against CHECKSUM_HEADER if sent)
//! DELETE /v1/repo/{kind}/{name}       remove
//! PUT    /v1/jobs/{job}               a JobReport for the service's backup log
//! GET    /v1/jobs                     the user's backup log as the service has it
//! PUT    /v1/snapshots/{name}/packs   the pack ids (32 bytes each) a snapshot needs
//! GET    /v1/conditions?since=TIME    [ObjectConditions] of objects stored since TIME
//! GET    /v1/messages                 [Notice]: the user's message history
//! GET    /v1/incidents                [Incident]: what the checks found
//! GET    /v1/lost                     ["kind/name"]: objects with no good copy
//! GET    /v1/statements               [Statement]
//! POST   /v1/statements/{id}/objection  Objection -> Statement
//! GET    /v1/uploads                  [Upload]: unfinished uploads
//! DELETE /v1/uploads?older_than=SECS  drop unfinished uploads untouched that long -> Removed
//! HEAD   /v1/uploads/{kind}/{name}    bytes received so far in RECEIVED_HEADER
//! PUT    /v1/uploads/{kind}/{name}?offset=N   one piece, with its CHECKSUM_HEADER -> Received
//! POST   /v1/uploads/{kind}/{name}    commit: CHECKSUM_HEADER of the whole object
//! DELETE /v1/uploads/{kind}/{name}    abandon an upload
//! GET    /healthz                     liveness
//! GET    /metrics                     Prometheus text format
//! ```
//!
//! A refusal is answered with an [`ErrorBody`]. A piece or object that does not match its
//! checksum is answered 422 with `resend: true`; a piece at the wrong offset 409 with
//! `received`, where the client goes on from.

pub mod route;
pub mod statement;

pub use kura_core::conditions::ObjectConditions;
pub use kura_core::job::JobReport;
pub use kura_core::notice::{Incident, Notice};
pub use route::Route;
pub use statement::{Line, Period, Statement, Status};

use serde::{Deserialize, Serialize};

/// The SHA-256 (hex) of a piece or object, sent by the client and checked before storing.
pub const CHECKSUM_HEADER: &str = "x-kura-sha256";
/// How many bytes of an unfinished upload the service has.
pub const RECEIVED_HEADER: &str = "x-kura-received";

/// Largest request body: a pack is at most ~24 MiB.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest body of a login, a job report or an objection.
pub const SMALL_BODY: usize = 16 * 1024;
/// Largest list of the packs a snapshot needs: 131,072 ids, a snapshot of about 2 TiB.
pub const PACKS_BODY: usize = 4 * 1024 * 1024;
/// The most characters an objection's reason may have.
pub const MAX_REASON: usize = 4000;

/// Whether `n` is a name the API takes for an object or snapshot: 1 to `max` lowercase hex
/// digits.
pub fn is_hex_name(n: &str, max: usize) -> bool {
    !n.is_empty()
        && n.len() <= max
        && n.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A part of an object as the `Range` header carries it: `bytes=FIRST-LAST`, inclusive, at
/// most [`MAX_BODY`] long. The only form the API takes (no suffix or open ranges, one range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// The first byte.
    pub first: u64,
    /// The last byte (inclusive).
    pub last: u64,
}

impl ByteRange {
    /// The range of `len` bytes from `offset` (`len` at least 1).
    pub fn of(offset: u64, len: u64) -> ByteRange {
        ByteRange {
            first: offset,
            last: offset + len.max(1) - 1,
        }
    }

    /// The header's value.
    pub fn header(self) -> String {
        format!("bytes={}-{}", self.first, self.last)
    }

    /// Reads a header's value; `None` unless well formed, in order and at most [`MAX_BODY`].
    pub fn parse(value: &str) -> Option<ByteRange> {
        let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        if !digits(a) || !digits(b) {
            return None;
        }
        let (first, last): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
        (first <= last && last - first < MAX_BODY as u64).then_some(ByteRange { first, last })
    }
}

/// A login: a user name and password, or nothing but the connection's client certificate.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The user's login name (empty with a client certificate).
    #[serde(default)]
    pub user: String,
    /// The password; `None` logs in with the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for Login {
    // A login is logged on failure; the password never is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// A session opened by a [`Login`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The bearer token of every later request.
    pub token: String,
    /// When it ends (RFC 3339).
    pub expires: String,
}

/// The body of every refusal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A one-line reason for the user.
    pub error: String,
    /// For a piece at the wrong offset: how many bytes the service has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// The data did not match its checksum: send it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resend: bool,
}

/// A user's objection to a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objection {
    /// Why (1 to [`MAX_REASON`] printable characters).
    pub reason: String,
}

/// How many bytes of an upload the service holds after a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// Bytes received so far.
    pub received: u64,
}

/// How many unfinished uploads a sweep removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// How many.
    pub removed: usize,
}

/// One unfinished upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The kind of object (`data`, `index`, ...).
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Bytes received so far.
    pub received: u64,
}

/// The query of `GET /v1/conditions`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Since {
    /// Only objects stored since then.
    pub since: Option<jiff::Timestamp>,
}

/// The query of a piece: where in the object it starts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PieceAt {
    /// Its offset.
    pub offset: u64,
}

/// The query of `DELETE /v1/uploads`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Sweep {
    /// Seconds an upload has been untouched.
    pub older_than: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_bounded_and_well_formed() {
        let r = ByteRange::parse("bytes=0-9").unwrap();
        assert_eq!((r.first, r.last), (0, 9));
        assert_eq!(ByteRange::of(10, 5).header(), "bytes=10-14");
        assert_eq!(
            ByteRange::parse(&ByteRange::of(7, 1).header()),
            Some(ByteRange::of(7, 1))
        );
        for bad in [
            "bytes=9-0",
            "bytes=-5",
            "bytes=5-",
            "items=0-1",
            "bytes=a-b",
            "0-1",
            "bytes=+1-2",
            "bytes=0-1,3-4",
            "bytes= 0-1",
        ] {
            assert_eq!(ByteRange::parse(bad), None, "{bad}");
        }
        assert!(ByteRange::parse(&format!("bytes=0-{}", MAX_BODY)).is_none());
        assert!(ByteRange::parse(&format!("bytes=0-{}", MAX_BODY - 1)).is_some());
    }

    #[test]
    fn a_login_never_shows_its_password() {
        let l = Login {
            user: "alice".into(),
            password: Some("hunter22".into()),
        };
        assert!(!format!("{l:?}").contains("hunter22"));
    }
}
