//! What a sealed value holds, and its byte layout (inside the seal, so Redis never sees
//! it): an access token with its type, scope and expiry, or a refresh token.
//!
//! The layout is length-prefixed and starts with a kind byte, so an access-token value
//! can never be read as a refresh token or the other way round. Decoding checks every
//! length and refuses trailing bytes; it never panics.

use crate::secret::Secret;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KIND_ACCESS: u8 = 1;
const KIND_REFRESH: u8 = 2;

/// An access token as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    pub access_token: Secret,
    pub token_type: String,
    pub scope: Option<String>,
    /// Expiry as unix time in milliseconds (wall clock: replicas share no monotonic one).
    pub expires_at_ms: u64,
    /// The end of its freshness as the fetching replica computed it (unix ms): past it,
    /// a replica that needs a token refreshes rather than adopts this one.
    pub refresh_at_ms: u64,
}

impl StoredToken {
    /// The expiry as a wall-clock time.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.expires_at_ms)
    }

    /// True while the token is before its refresh point by this machine's clock.
    pub fn is_fresh(&self) -> bool {
        unix_ms(SystemTime::now()) < self.refresh_at_ms.min(self.expires_at_ms)
    }

    /// How long the token is still fresh by this machine's clock (zero once past).
    pub fn fresh_for(&self) -> Duration {
        let now = unix_ms(SystemTime::now());
        Duration::from_millis(
            self.refresh_at_ms
                .min(self.expires_at_ms)
                .saturating_sub(now),
        )
    }

    /// How long the token is still valid by this machine's clock (zero once expired).
    pub fn remaining(&self) -> Duration {
        self.expires_at()
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }
}

/// Unix time in milliseconds of `t` (zero before 1970).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(super) fn encode_access(t: &StoredToken) -> Vec<u8> {
    let token = t.access_token.expose().as_bytes();
    let mut out = Vec::with_capacity(32 + token.len() + t.token_type.len());
    out.push(KIND_ACCESS);
    out.extend_from_slice(&t.expires_at_ms.to_be_bytes());
    out.extend_from_slice(&t.refresh_at_ms.to_be_bytes());
    put_bytes(&mut out, t.token_type.as_bytes());
    match &t.scope {
        None => out.push(0),
        Some(scope) => {
            out.push(1);
            put_bytes(&mut out, scope.as_bytes());
        }
    }
    put_bytes(&mut out, token);
    out
}

pub(super) fn decode_access(bytes: &[u8]) -> Option<StoredToken> {
    let mut r = Reader(bytes);
    if r.byte()? != KIND_ACCESS {
        return None;
    }
    let expires_at_ms = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
    let refresh_at_ms = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
    let token_type = r.string()?;
    let scope = match r.byte()? {
        0 => None,
        1 => Some(r.string()?),
        _ => return None,
    };
    let access_token = Secret::new(r.string()?);
    r.end()?;
    Some(StoredToken {
        access_token,
        token_type,
        scope,
        expires_at_ms,
        refresh_at_ms,
    })
}

pub(super) fn encode_refresh(token: &Secret) -> Vec<u8> {
    let mut out = vec![KIND_REFRESH];
    put_bytes(&mut out, token.expose().as_bytes());
    out
}

pub(super) fn decode_refresh(bytes: &[u8]) -> Option<Secret> {
    let mut r = Reader(bytes);
    if r.byte()? != KIND_REFRESH {
        return None;
    }
    let token = Secret::new(r.string()?);
    r.end()?;
    Some(token)
}

/// A 4-byte big-endian length, then the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Tokens and scopes are far below 4 GiB; a longer one would be cut by the length
    // field and then refused by `decode`, never misread.
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn string(&mut self) -> Option<String> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?);
        let bytes = self.take(usize::try_from(len).ok()?)?;
        String::from_utf8(bytes.to_vec()).ok()
    }

    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scope: Option<&str>) -> StoredToken {
        StoredToken {
            access_token: Secret::new("at-123"),
            token_type: "Bearer".into(),
            scope: scope.map(str::to_string),
            expires_at_ms: 1_700_000_000_123,
            refresh_at_ms: 1_700_000_000_100,
        }
    }

    #[test]
    fn access_round_trip() {
        for t in [token(None), token(Some("")), token(Some("read write"))] {
            assert_eq!(decode_access(&encode_access(&t)).unwrap(), t);
        }
    }

    #[test]
    fn refresh_round_trip() {
        let enc = encode_refresh(&Secret::new("rt-1"));
        assert_eq!(decode_refresh(&enc).unwrap().expose(), "rt-1");
    }

    #[test]
    fn kinds_do_not_mix() {
        assert!(decode_refresh(&encode_access(&token(None))).is_none());
        assert!(decode_access(&encode_refresh(&Secret::new("rt"))).is_none());
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let enc = encode_access(&token(Some("s")));
        for n in 0..enc.len() {
            assert!(decode_access(&enc[..n]).is_none(), "length {n}");
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert!(decode_access(&longer).is_none());
        let mut bad_flag = enc;
        // kind (1) + expiry (8) + refresh (8) + type length (4) + "Bearer" (6): the scope
        // flag.
        bad_flag[27] = 2;
        assert!(decode_access(&bad_flag).is_none());
    }

    #[test]
    fn decode_never_panics_on_garbage() {
        let mut rng = fastrand::Rng::with_seed(11);
        for len in 0..300 {
            let mut junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = decode_access(&junk);
            let _ = decode_refresh(&junk);
            if let Some(first) = junk.first_mut() {
                *first = KIND_ACCESS;
            }
            let _ = decode_access(&junk);
        }
        // A length field pointing far past the end.
        let _ = decode_refresh(&[KIND_REFRESH, 0xff, 0xff, 0xff, 0xff, b'x']);
    }

    #[test]
    fn a_sealed_token_shows_neither_token_nor_scope() {
        let sealer = super::super::Sealer::new(&Secret::new("k".repeat(32))).unwrap();
        let t = StoredToken {
            access_token: Secret::new("eyJ0eXAiOiJKV1QifQ.secret-at"),
            token_type: "Bearer".into(),
            scope: Some("read:orders".into()),
            expires_at_ms: 1,
            refresh_at_ms: 1,
        };
        let sealed = sealer.seal("p:{x}:token", b"", &encode_access(&t)).unwrap();
        for plain in ["secret-at", "eyJ0eXAiOiJKV1QifQ", "read:orders", "Bearer"] {
            let found = sealed.windows(plain.len()).any(|w| w == plain.as_bytes());
            assert!(!found, "{plain} in the sealed value");
        }
        let opened = sealer.open("p:{x}:token", b"", &sealed).unwrap();
        assert_eq!(decode_access(&opened).unwrap(), t);
    }

    #[test]
    fn wall_clock_helpers() {
        let t = token(None);
        assert_eq!(unix_ms(t.expires_at()), t.expires_at_ms);
        assert_eq!(t.remaining(), Duration::ZERO, "2023 is past");
        assert!(!t.is_fresh());
        assert_eq!(t.fresh_for(), Duration::ZERO);
        let later = StoredToken {
            expires_at_ms: unix_ms(SystemTime::now()) + 60_000,
            refresh_at_ms: unix_ms(SystemTime::now()) + 30_000,
            ..t
        };
        assert!(later.is_fresh());
        assert!(
            later.fresh_for() > Duration::from_secs(29)
                && later.fresh_for() <= Duration::from_secs(30)
        );
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
