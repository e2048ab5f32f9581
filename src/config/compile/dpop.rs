//! Validation of a provider's `dpop` (SPEC §10, RFC 9449). The key is loaded here, once.

use super::{Arc, Cx, Keyword, PathBuf, RawProvider, YamlPath};
use crate::config::Dpop;
use crate::keys::{SigningAlg, SigningKey};
use crate::sender::DpopKey;

/// The values of `dpop.alg`.
const ALGS: &[&str] = &["ES256", "RS256", "PS256", "EdDSA"];

impl Cx<'_> {
    /// The provider's `dpop`, if it has one and it is valid (problems are reported).
    pub(super) fn dpop(&mut self, path: &YamlPath, raw: &RawProvider) -> Option<Arc<Dpop>> {
        let raw = raw.dpop.as_ref()?;
        let path = path.key("dpop");
        let alg = match self.keyword(&path.key("alg"), &raw.alg, ALGS) {
            Keyword::Absent | Keyword::Known("ES256") => Some(SigningAlg::Es256),
            Keyword::Known("RS256") => Some(SigningAlg::Rs256),
            Keyword::Known("PS256") => Some(SigningAlg::Ps256),
            Keyword::Known(_) => Some(SigningAlg::EdDsa),
            Keyword::Invalid(_) => None,
        };
        let key_file = self
            .required(
                &path.key("key_file"),
                &raw.key_file,
                "the DPoP private key (PEM)",
            )
            .map(PathBuf::from)?;
        match SigningKey::load(&key_file, alg?) {
            Ok(key) => Some(Arc::new(Dpop {
                key_file,
                key: Arc::new(DpopKey::new(key)),
                idp_nonce: Default::default(),
            })),
            Err(e) => {
                self.problem(&path.key("key_file"), e);
                None
            }
        }
    }
}
