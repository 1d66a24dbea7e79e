//! Every route of the API, as one pattern each: the service mounts the pattern, the client
//! fills it in.

/// One route: a path pattern whose `{…}` parts are filled in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(pub &'static str);

impl Route {
    /// The pattern, as the service's router mounts it.
    pub const fn pattern(self) -> &'static str {
        self.0
    }

    /// The path with `args` in place of the `{…}` parts, in order. Arguments are put in as
    /// they are: callers pass names the API allows (hex, kinds, statement ids).
    pub fn path(self, args: &[&str]) -> String {
        let mut out = String::with_capacity(self.0.len() + 64);
        let mut args = args.iter();
        let mut rest = self.0;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            out.push_str(args.next().copied().unwrap_or_default());
            rest = &rest[close..];
        }
        out.push_str(rest);
        out
    }
}

/// `POST`: a session for a password or client certificate.
pub const LOGIN: Route = Route("/v1/login");
/// `GET`: the names of one kind of object.
pub const OBJECTS: Route = Route("/v1/repo/{kind}");
/// `GET`, `HEAD`, `PUT`, `DELETE`: one object.
pub const OBJECT: Route = Route("/v1/repo/{kind}/{name}");
/// `GET`: the user's backup log.
pub const JOBS: Route = Route("/v1/jobs");
/// `PUT`: a job's report.
pub const JOB: Route = Route("/v1/jobs/{job}");
/// `PUT`: the packs a snapshot needs.
pub const SNAPSHOT_PACKS: Route = Route("/v1/snapshots/{name}/packs");
/// `GET`: storage conditions.
pub const CONDITIONS: Route = Route("/v1/conditions");
/// `GET`: the message history.
pub const MESSAGES: Route = Route("/v1/messages");
/// `GET`: the incident history.
pub const INCIDENTS: Route = Route("/v1/incidents");
/// `GET`: objects with no good copy.
pub const LOST: Route = Route("/v1/lost");
/// `GET`: the user's statements.
pub const STATEMENTS: Route = Route("/v1/statements");
/// `POST`: an objection to a statement.
pub const OBJECTION: Route = Route("/v1/statements/{id}/objection");
/// `GET`: unfinished uploads; `DELETE`: sweep old ones.
pub const UPLOADS: Route = Route("/v1/uploads");
/// `HEAD`, `PUT`, `POST`, `DELETE`: one upload in pieces.
pub const UPLOAD: Route = Route("/v1/uploads/{kind}/{name}");
/// `GET`: liveness.
pub const HEALTHZ: Route = Route("/healthz");
/// `GET`: Prometheus metrics.
pub const METRICS: Route = Route("/metrics");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fill_the_pattern_in_order() {
        assert_eq!(OBJECT.path(&["data", "ab12"]), "/v1/repo/data/ab12");
        assert_eq!(
            OBJECTION.path(&["7-2026-11"]),
            "/v1/statements/7-2026-11/objection"
        );
        assert_eq!(LOGIN.path(&[]), "/v1/login");
        assert_eq!(OBJECT.pattern(), "/v1/repo/{kind}/{name}");
    }
}
