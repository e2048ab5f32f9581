//! The store's cryptography, `ring` only: what Redis sees is a keyed hash for a name and
//! an authenticated ciphertext for a value, never a token, scope, client id or subject.
//!
//! One `encryption_key` (at least 32 bytes of secret) is stretched with HKDF-SHA256 into
//! two independent keys, so a key-name hash can never be turned into a value key:
//! - key names: HMAC-SHA256 of the caller's identity bytes (and a subject fingerprint);
//! - values: AES-256-GCM with a random 96-bit nonce, the full Redis key name as associated
//!   data, so a value copied under another key name does not open.
//!
//! [`Sealer::open`] refuses everything that does not authenticate (wrong key, tampered,
//! truncated, moved to another key name) and never panics on any input.

use crate::secret::Secret;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use std::fmt;

/// The shortest `encryption_key` accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// The first byte of every sealed value. It is authenticated (part of the associated
/// data), so a value of a future format is refused, not misread.
const FORMAT_VERSION: u8 = 1;

/// HKDF salt: fixed, so every replica derives the same keys from the same secret; it
/// names the purpose, so the same secret used elsewhere yields unrelated keys.
const HKDF_SALT: &[u8] = b"token-sidecar token store v1";
const INFO_NAMES: &[u8] = b"key names (HMAC-SHA256)";
const INFO_VALUES: &[u8] = b"values (AES-256-GCM)";

const TAG_LEN: usize = 16;

/// Keys derived from `encryption_key`. `Debug` prints nothing of them.
pub struct Sealer {
    names: hmac::Key,
    values: LessSafeKey,
    rng: SystemRandom,
}

/// `encryption_key` is shorter than [`MIN_KEY_LEN`] bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("token_store.encryption_key must hold at least {MIN_KEY_LEN} bytes of secret (it has {0})")]
pub struct ShortKey(pub usize);

impl Sealer {
    /// Derives the name and value keys from `key`.
    pub fn new(key: &Secret) -> Result<Sealer, ShortKey> {
        let ikm = key.expose().as_bytes();
        if ikm.len() < MIN_KEY_LEN {
            return Err(ShortKey(ikm.len()));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(ikm);
        // `expand` fails only when the output is longer than 255 hash lengths; 32 bytes
        // never is, so these are start-up invariants, not runtime failures.
        let names: hmac::Key = prk
            .expand(&[INFO_NAMES], hmac::HMAC_SHA256)
            .expect("HKDF output of 32 bytes")
            .into();
        let values: UnboundKey = prk
            .expand(&[INFO_VALUES], &aead::AES_256_GCM)
            .expect("HKDF output of 32 bytes")
            .into();
        Ok(Sealer {
            names,
            values: LessSafeKey::new(values),
            rng: SystemRandom::new(),
        })
    }

    /// The key-name hash (lowercase hex, 64 characters) of a provider `identity` and an
    /// optional `subject` (the fingerprint of a token-exchange subject). Both are
    /// length-prefixed, so no two different inputs are hashed as the same bytes.
    pub fn name_tag(&self, identity: &[u8], subject: Option<&[u8]>) -> String {
        let mut ctx = hmac::Context::with_key(&self.names);
        ctx.update(&(identity.len() as u64).to_be_bytes());
        ctx.update(identity);
        match subject {
            None => ctx.update(&[0]),
            Some(s) => {
                ctx.update(&[1]);
                ctx.update(&(s.len() as u64).to_be_bytes());
                ctx.update(s);
            }
        }
        hex(ctx.sign().as_ref())
    }

    /// Encrypts `plaintext` for the Redis key `name`: version, nonce, ciphertext and tag.
    /// `context` is authenticated along with the name (the refresh-token generation).
    pub fn seal(&self, name: &str, context: &[u8], plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG failing is not something to paper over: no value is written.
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.values
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(name, context)),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    /// The plaintext of a value [`Sealer::seal`]ed for `name` and `context` with this
    /// key, or `None` for anything else.
    pub fn open(&self, name: &str, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != FORMAT_VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .values
            .open_in_place(nonce, Aad::from(associated_data(name, context)), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

/// Version, key name and context, each but the last length-prefixed.
fn associated_data(name: &str, context: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(1 + 8 + name.len() + context.len());
    ad.push(FORMAT_VERSION);
    ad.extend_from_slice(&(name.len() as u64).to_be_bytes());
    ad.extend_from_slice(name.as_bytes());
    ad.extend_from_slice(context);
    ad
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn sealer(key: &str) -> Sealer {
        Sealer::new(&Secret::new(key)).unwrap()
    }

    #[test]
    fn refuses_short_keys() {
        assert_eq!(Sealer::new(&Secret::new("short")).unwrap_err(), ShortKey(5));
        let msg = Sealer::new(&Secret::new("x".repeat(31)))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("at least 32 bytes"), "{msg}");
        assert!(Sealer::new(&Secret::new("x".repeat(32))).is_ok());
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let s = sealer(KEY);
        let a = s.seal("p:{t}:token", b"", b"hello").unwrap();
        let b = s.seal("p:{t}:token", b"", b"hello").unwrap();
        assert_ne!(a, b, "a random nonce per value");
        assert_eq!(s.open("p:{t}:token", b"", &a).unwrap(), b"hello");
        assert_eq!(s.open("p:{t}:token", b"", &b).unwrap(), b"hello");
        assert_eq!(a.len(), 1 + NONCE_LEN + 5 + TAG_LEN);
    }

    #[test]
    fn refuses_what_does_not_authenticate() {
        let s = sealer(KEY);
        let sealed = s.seal("name", b"g1", b"the plaintext").unwrap();
        // Another key.
        assert!(sealer(&KEY.replace('0', "1"))
            .open("name", b"g1", &sealed)
            .is_none());
        // Another key name or context.
        assert!(s.open("name2", b"g1", &sealed).is_none());
        assert!(s.open("name", b"g2", &sealed).is_none());
        // Every single flipped bit, anywhere.
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut t = sealed.clone();
                t[i] ^= 1 << bit;
                assert!(s.open("name", b"g1", &t).is_none(), "byte {i} bit {bit}");
            }
        }
        // Every truncation and an extension.
        for n in 0..sealed.len() {
            assert!(s.open("name", b"g1", &sealed[..n]).is_none(), "length {n}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(s.open("name", b"g1", &longer).is_none());
    }

    #[test]
    fn open_never_panics_on_garbage() {
        let s = sealer(KEY);
        let mut rng = fastrand::Rng::with_seed(7);
        for len in 0..200 {
            let junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            assert!(s.open("n", b"", &junk).is_none());
            let mut versioned = junk.clone();
            versioned.insert(0, FORMAT_VERSION);
            assert!(s.open("n", b"", &versioned).is_none());
        }
    }

    #[test]
    fn no_plaintext_in_sealed_bytes() {
        let s = sealer(KEY);
        let plain = b"eyJhbGciOiJSUzI1NiJ9.secret-access-token scope:read:orders";
        let sealed = s.seal("n", b"", plain).unwrap();
        for window in [8usize, 12, 16] {
            for part in plain.windows(window) {
                assert!(
                    !sealed.windows(window).any(|w| w == part),
                    "{:?} appears in the sealed value",
                    String::from_utf8_lossy(part)
                );
            }
        }
    }

    #[test]
    fn name_tags_are_keyed_and_distinct() {
        let (a, b) = (sealer(KEY), sealer(&KEY.replace('0', "1")));
        let t = a.name_tag(b"provider identity", None);
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(t, a.name_tag(b"provider identity", None), "stable");
        assert_ne!(t, b.name_tag(b"provider identity", None), "keyed");
        assert_ne!(t, a.name_tag(b"provider identitz", None));
        assert_ne!(t, a.name_tag(b"provider identity", Some(b"")));
        assert_ne!(
            a.name_tag(b"provider identity", Some(b"s1")),
            a.name_tag(b"provider identity", Some(b"s2"))
        );
        // Length prefixes: moving bytes between identity and subject changes the tag.
        assert_ne!(a.name_tag(b"ab", Some(b"c")), a.name_tag(b"a", Some(b"bc")));
        assert!(!t.contains("provider"));
    }

    #[test]
    fn debug_prints_no_key_material() {
        assert_eq!(format!("{:?}", sealer(KEY)), "Sealer([redacted])");
    }
}
