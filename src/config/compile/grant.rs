//! Validation of a provider's grant (`grant_type` and its keys). Keys of another grant are
//! errors.

use super::{Cx, Exchange, Grant, HeaderName, Keyword, PathBuf, RawProvider, Secret, YamlPath};

/// The values of `grant_type`.
const GRANTS: &[&str] = &["client_credentials", "refresh_token", "token_exchange"];

impl Cx<'_> {
    /// `grant_type` and the keys that belong to it; keys of another grant are errors.
    pub(super) fn grant(&mut self, path: &YamlPath, raw: &RawProvider) -> Option<Grant> {
        let grant = match self.keyword(&path.key("grant_type"), &raw.grant_type, GRANTS) {
            Keyword::Absent => "client_credentials",
            Keyword::Known(grant) | Keyword::Invalid(Some(grant)) => grant,
            // Which keys belong here depends on the grant: nothing more to check.
            Keyword::Invalid(None) => return None,
        };
        let owned: [(&str, bool, &str); 9] = [
            (
                "refresh_token",
                raw.refresh_token.is_some(),
                "refresh_token",
            ),
            (
                "refresh_token_store",
                raw.refresh_token_store.is_some(),
                "refresh_token",
            ),
            (
                "subject_token_from",
                raw.subject_token_from.is_some(),
                "token_exchange",
            ),
            (
                "subject_token_type",
                raw.subject_token_type.is_some(),
                "token_exchange",
            ),
            (
                "actor_token_file",
                raw.actor_token_file.is_some(),
                "token_exchange",
            ),
            (
                "actor_token_type",
                raw.actor_token_type.is_some(),
                "token_exchange",
            ),
            (
                "requested_token_type",
                raw.requested_token_type.is_some(),
                "token_exchange",
            ),
            ("max_subjects", raw.max_subjects.is_some(), "token_exchange"),
            (
                "forward_subject_header",
                raw.forward_subject_header.is_some(),
                "token_exchange",
            ),
        ];
        self.keys_belong_to(path, "grant_type", grant, &owned);
        match grant {
            "client_credentials" => Some(Grant::ClientCredentials),
            "refresh_token" => self.refresh_token_grant(path, raw),
            _ => self.token_exchange_grant(path, raw),
        }
    }

    /// `grant_type: refresh_token`: the configured token, or the rotated one in the store.
    fn refresh_token_grant(&mut self, path: &YamlPath, raw: &RawProvider) -> Option<Grant> {
        let store = self
            .text(&path.key("refresh_token_store"), &raw.refresh_token_store)
            .map(PathBuf::from);
        let stored = store
            .as_ref()
            .and_then(|s| std::fs::read_to_string(s).ok())
            .filter(|t| !t.trim().is_empty());
        let written = self.text(&path.key("refresh_token"), &raw.refresh_token);
        // Written but unreadable (`${…}` failed): that problem is reported already.
        let unreadable = raw.refresh_token.is_some() && written.is_none();
        let configured = written
            .filter(|t| !t.trim().is_empty())
            .map(|t| Secret::new(t.trim()));
        // The store holds the latest rotated token: it wins over the configured one.
        let initial = match (stored, &configured) {
            (Some(t), _) => Secret::new(t.trim()),
            (None, Some(t)) => t.clone(),
            (None, None) if unreadable => return None,
            (None, None) => {
                self.problem(
                    &path.key("refresh_token"),
                    "missing required field (the initial refresh token)",
                );
                return None;
            }
        };
        Some(Grant::RefreshToken {
            initial,
            configured,
            store,
        })
    }

    /// `grant_type: token_exchange` (RFC 8693).
    fn token_exchange_grant(&mut self, path: &YamlPath, raw: &RawProvider) -> Option<Grant> {
        let (header, prefix) = self.subject_token_from(&path.key("subject_token_from"), raw);
        let actor_token_file = self
            .text(&path.key("actor_token_file"), &raw.actor_token_file)
            .map(PathBuf::from);
        let actor_token_type = self.text(&path.key("actor_token_type"), &raw.actor_token_type);
        if actor_token_file.is_some() != actor_token_type.is_some() {
            self.problem(
                &path.key("actor_token_type"),
                "actor_token_file and actor_token_type go together",
            );
        }
        let max_subjects = match self.text(&path.key("max_subjects"), &raw.max_subjects) {
            None => 10_000,
            Some(t) => t
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=10_000_000).contains(n))
                .unwrap_or_else(|| {
                    self.problem(
                        &path.key("max_subjects"),
                        format!("invalid count {t:?}: expected 1 to 10000000"),
                    );
                    10_000
                }),
        };
        Some(Grant::TokenExchange(Exchange {
            header: header?,
            prefix,
            subject_token_type: self
                .text(&path.key("subject_token_type"), &raw.subject_token_type)
                .unwrap_or_else(|| "urn:ietf:params:oauth:token-type:access_token".to_string()),
            actor_token_file,
            actor_token_type,
            requested_token_type: self
                .text(&path.key("requested_token_type"), &raw.requested_token_type),
            max_subjects,
            forward_subject_header: raw.forward_subject_header.unwrap_or(false),
        }))
    }

    /// `subject_token_from`: the request header with the subject token, and the prefix
    /// before the token in it.
    fn subject_token_from(
        &mut self,
        fpath: &YamlPath,
        raw: &RawProvider,
    ) -> (Option<HeaderName>, String) {
        let from = raw.subject_token_from.as_ref();
        let none = None;
        let header = self.required(
            &fpath.key("header"),
            from.map_or(&none, |f| &f.header),
            "the request header with the subject token",
        );
        let header = header.and_then(|h| match HeaderName::from_bytes(h.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                self.problem(&fpath.key("header"), format!("invalid header name {h:?}"));
                None
            }
        });
        // From the app's own Authorization header, the scheme is not part of the token.
        let default_prefix = if header.as_ref() == Some(&http::header::AUTHORIZATION) {
            "Bearer "
        } else {
            ""
        };
        let prefix = self
            .text(&fpath.key("prefix"), from.map_or(&none, |f| &f.prefix))
            .unwrap_or_else(|| default_prefix.to_string());
        (header, prefix)
    }
}
