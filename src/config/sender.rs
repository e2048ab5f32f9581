//! The compiled `dpop` of a provider and of its routes (SPEC §10).

use crate::sender::{DpopKey, NonceCell, Nonces};
use std::path::PathBuf;
use std::sync::Arc;

/// A provider's `dpop` (SPEC §10, RFC 9449): its key, loaded once, and the IdP's latest
/// nonce. The nonce is state, kept here because it belongs to this key and this token
/// endpoint: a reload that changes neither keeps the token source, and with it this.
#[derive(Debug)]
pub struct Dpop {
    pub key_file: PathBuf,
    pub key: Arc<DpopKey>,
    /// The token endpoint's latest `DPoP-Nonce`.
    pub idp_nonce: NonceCell,
}

/// What a route whose provider has `dpop` needs per request: the provider's key and each
/// upstream's latest nonce (kept per snapshot: a reload starts without nonces, and the
/// upstream asks again).
#[derive(Debug)]
pub struct RouteDpop {
    pub key: Arc<DpopKey>,
    pub nonces: Nonces,
}
