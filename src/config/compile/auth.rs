//! Validation of a provider's client authentication (`client_auth` and its keys). Keys of
//! another method are errors. Keys and certificates are loaded here, once.

use super::{Arc, ClientAuth, Cx, Keyword, Path, PathBuf, PrivateKeyJwt, RawProvider, YamlPath};
use crate::keys::{SigningAlg, SigningKey};

/// The values of `client_auth`.
const METHODS: &[&str] = &[
    "basic",
    "post",
    "private_key_jwt",
    "client_assertion_file",
    "tls_client_auth",
];

impl Cx<'_> {
    /// `client_auth` and the keys that belong to it; keys of another method are errors.
    /// Returns the method, unless it is invalid, and the client authentication, unless
    /// it is invalid or its key material is (each reported).
    pub(super) fn client_auth(
        &mut self,
        path: &YamlPath,
        raw: &RawProvider,
        token_url: Option<&reqwest::Url>,
        azure: bool,
    ) -> (Option<&'static str>, Option<ClientAuth>) {
        let method = match self.keyword(&path.key("client_auth"), &raw.client_auth, METHODS) {
            // Entra ID's own documentation sends the secret in the body; other IdPs
            // default to Basic (RFC 6749 §2.3.1 says servers must support it).
            Keyword::Absent if azure => "post",
            Keyword::Absent => "basic",
            Keyword::Known(method) | Keyword::Invalid(Some(method)) => method,
            // Which keys belong here depends on the method: nothing more to check.
            Keyword::Invalid(None) => return (None, None),
        };
        let owned: [(&str, bool, &str); 7] = [
            (
                "private_key_file",
                raw.private_key_file.is_some(),
                "private_key_jwt",
            ),
            ("signing_alg", raw.signing_alg.is_some(), "private_key_jwt"),
            ("key_id", raw.key_id.is_some(), "private_key_jwt"),
            (
                "assertion_audience",
                raw.assertion_audience.is_some(),
                "private_key_jwt",
            ),
            (
                "client_assertion_file",
                raw.client_assertion_file.is_some(),
                "client_assertion_file",
            ),
            (
                "client_cert_file",
                raw.client_cert_file.is_some(),
                "tls_client_auth",
            ),
            (
                "client_key_file",
                raw.client_key_file.is_some(),
                "tls_client_auth",
            ),
        ];
        self.keys_belong_to(path, "client_auth", method, &owned);
        let auth = match method {
            "basic" => Some(ClientAuth::Basic),
            "post" => Some(ClientAuth::Post),
            "private_key_jwt" => self.private_key_jwt(path, raw, token_url, azure),
            "client_assertion_file" => self.client_assertion_file(path, raw),
            _ => self.tls_client_auth(path, raw),
        };
        (Some(method), auth)
    }

    /// RFC 7523 `private_key_jwt`: the key is loaded (and checked) here, once.
    fn private_key_jwt(
        &mut self,
        path: &YamlPath,
        raw: &RawProvider,
        token_url: Option<&reqwest::Url>,
        azure: bool,
    ) -> Option<ClientAuth> {
        let alg = self.signing_alg(&path.key("signing_alg"), raw);
        let key_id = self.text(&path.key("key_id"), &raw.key_id);
        let key_file = self
            .required(
                &path.key("private_key_file"),
                &raw.private_key_file,
                "the client's private key (PEM)",
            )
            .map(PathBuf::from);
        // Without a valid algorithm (reported), the key cannot be checked against it.
        let key = key_file.as_ref().zip(alg).and_then(|(f, alg)| match SigningKey::load(f, alg) {
            Err(e) => {
                self.problem(&path.key("private_key_file"), e);
                None
            }
            Ok(key) => {
                if azure && !key.has_certificate() {
                    self.problem(
                        &path.key("private_key_file"),
                        "Entra ID (kind: azure_ad) identifies certificate credentials by thumbprint: put the certificate (PEM) in the key file too",
                    );
                }
                Some(Arc::new(key))
            }
        });
        let audience = self
            .text(&path.key("assertion_audience"), &raw.assertion_audience)
            .or_else(|| token_url.map(|u| u.to_string()));
        Some(ClientAuth::PrivateKeyJwt(PrivateKeyJwt {
            key_file: key_file?,
            key: key?,
            key_id,
            audience: audience?,
        }))
    }

    /// `signing_alg`, default RS256; `None` when invalid (reported).
    fn signing_alg(&mut self, path: &YamlPath, raw: &RawProvider) -> Option<SigningAlg> {
        match self.keyword(path, &raw.signing_alg, &["RS256", "ES256", "PS256"]) {
            Keyword::Absent | Keyword::Known("RS256") => Some(SigningAlg::Rs256),
            Keyword::Known("ES256") => Some(SigningAlg::Es256),
            Keyword::Known(_) => Some(SigningAlg::Ps256),
            Keyword::Invalid(_) => None,
        }
    }

    /// A JWT read from a file at every token request (it may appear or rotate after
    /// start-up, like a projected service-account token).
    fn client_assertion_file(&mut self, path: &YamlPath, raw: &RawProvider) -> Option<ClientAuth> {
        let file = self.required(
            &path.key("client_assertion_file"),
            &raw.client_assertion_file,
            "the assertion file (e.g. a projected service-account token)",
        )?;
        if !Path::new(&file).exists() {
            self.warn(
                &path.key("client_assertion_file"),
                format!("{file} does not exist yet; token requests fail until it does"),
            );
        }
        Some(ClientAuth::AssertionFile(PathBuf::from(file)))
    }

    /// RFC 8705 `tls_client_auth`: the certificate and key are loaded (and checked to fit)
    /// here, once.
    fn tls_client_auth(&mut self, path: &YamlPath, raw: &RawProvider) -> Option<ClientAuth> {
        let cert = self.required(
            &path.key("client_cert_file"),
            &raw.client_cert_file,
            "the client certificate (PEM)",
        );
        let key = self.required(
            &path.key("client_key_file"),
            &raw.client_key_file,
            "the client key (PEM)",
        );
        let (cert_file, key_file) = (PathBuf::from(cert?), PathBuf::from(key?));
        match crate::trust::client_identity(&cert_file, &key_file) {
            Ok(identity) => Some(ClientAuth::TlsClientAuth {
                cert_file,
                key_file,
                identity: Arc::new(identity),
            }),
            Err(e) => {
                self.problem(&path.key("client_cert_file"), e);
                None
            }
        }
    }
}
