//! What a request needs besides its token when the upstream wants proof of who sends it
//! (SPEC §10): DPoP proofs (RFC 9449, [`dpop`]) and HTTP message signatures (RFC 9421,
//! with `Content-Digest` from RFC 9530, [`sign`]).
//!
//! Pure functions over a request's parts and the keys the config loaded: no IO, no
//! clock but `SystemTime::now` for `iat` and `created`, and no state except the DPoP
//! nonces the servers sent (tiny lock-free cells). Nothing here logs; no error holds key
//! material, a token or a header value. It sits below `config` (which loads the keys into
//! these types) and above `keys`.

mod challenge;
pub mod dpop;
mod sfv;
pub mod sign;

pub use dpop::{DpopKey, NonceCell, Nonces, ProofClaims};
pub use sign::{content_digest, Component, Message, Params, SignAlg, SignKey, Signed, Signer};

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (`iat`, `created`).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `n` random bytes, base64url without padding (`jti`, `nonce`).
fn random_b64(rng: &ring::rand::SystemRandom, n: usize) -> Result<String, String> {
    use base64::Engine;
    let mut bytes = vec![0u8; n];
    ring::rand::SecureRandom::fill(rng, &mut bytes).map_err(|_| "no randomness".to_string())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
