//! `match.methods` entries: which HTTP methods a route may name.

use super::Method;

/// The methods of RFC 9110 (any case is accepted for them).
const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Extension methods in the IANA HTTP Method Registry (WebDAV and friends, QUERY), and
/// PURGE (cache invalidation, widespread though unregistered): written as they are sent.
const KNOWN_EXTENSION_METHODS: &[&str] = &[
    "ACL",
    "BASELINE-CONTROL",
    "BIND",
    "CHECKIN",
    "CHECKOUT",
    "COPY",
    "LABEL",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MKREDIRECTREF",
    "MKWORKSPACE",
    "MOVE",
    "ORDERPATCH",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "QUERY",
    "REBIND",
    "REPORT",
    "SEARCH",
    "UNBIND",
    "UNCHECKOUT",
    "UNLINK",
    "UNLOCK",
    "UPDATE",
    "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
];

/// A `match.methods` entry. Standard methods in any case; known extension methods as
/// they are sent; another all-capitals token is taken as an extension method too, unless
/// it is one typo away from a known method (`GETT`, `POTS`), which is refused with a
/// suggestion: a route that silently never matches is worse than an error.
pub(super) fn parse_method(name: &str) -> Result<Method, String> {
    let name = name.trim();
    let upper = name.to_ascii_uppercase();
    if STANDARD_METHODS.contains(&upper.as_str()) || KNOWN_EXTENSION_METHODS.contains(&name) {
        return Method::from_bytes(upper.as_bytes()).map_err(|_| "invalid HTTP method".into());
    }
    let known: Vec<&str> = STANDARD_METHODS
        .iter()
        .chain(KNOWN_EXTENSION_METHODS)
        .copied()
        .collect();
    if let Some(near) = super::super::suggest::closest(name, &known) {
        return Err(format!(
            "not an HTTP method this proxy knows; did you mean `{near}`?"
        ));
    }
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
    match token {
        true => Method::from_bytes(name.as_bytes()).map_err(|_| "invalid HTTP method".into()),
        false => Err("not a standard HTTP method; an extension method is case-sensitive: write it in capitals as it is sent (A-Z, 0-9, '-', '_')".into()),
    }
}
