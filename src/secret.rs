//! The `Secret` newtype: client secrets and access tokens live in it from the moment they
//! are read until the moment they are written to the wire.
//!
//! It must never be possible to print one by accident: `Debug` and `Display` both print
//! `[redacted]`, and the only way to the bytes is the explicit [`Secret::expose`].

use std::fmt;
use std::sync::Arc;

/// A string that must never reach a log line, an error message, `/status` or a metric.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The secret's text, for the one place that writes it to the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `candidate` is this secret. Compares SHA-256 digests in constant time, so
    /// neither the content nor the length of the secret leaks through timing.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let (a, b) = (self.fingerprint(), fingerprint(candidate));
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }

    /// The SHA-256 of the secret: identifies it (in cache keys, token identities)
    /// without holding it.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(self.0.as_bytes())
    }
}

/// A SHA-256 digest. The crate's one hasher for identifying content: secrets, subject
/// tokens, key material and config files.
pub type Fingerprint = [u8; 32];

/// The SHA-256 of `bytes`.
pub fn fingerprint(bytes: &[u8]) -> Fingerprint {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn matches_only_itself() {
        let s = Secret::new("hunter2");
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter3"));
        assert!(!s.matches(b"hunter"));
        assert!(!s.matches(b""));
        assert!(!s.matches(b"hunter22"));
    }
}
