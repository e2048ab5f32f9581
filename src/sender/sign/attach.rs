//! Adding a [`Signed`] to a request: under the route's label, next to the signatures the
//! app already made (RFC 9421 §4.3: a message may carry several, each under its own
//! label in the `Signature-Input` and `Signature` dictionaries).

use super::{sfv, Signed, Signer};
use http::{HeaderMap, HeaderValue};

const INPUT: &str = "signature-input";
const SIGNATURE: &str = "signature";

impl Signer {
    /// Sets `Signature-Input` and `Signature` of `headers` to the app's members (those
    /// under other labels) followed by ours; an app member under our label is replaced.
    /// When either of the app's fields is not a dictionary (RFC 8941 §4.2.2) both are
    /// replaced by ours alone: a broken signature cannot be kept beside ours.
    pub fn attach(&self, signed: Signed, headers: &mut HeaderMap) {
        let merged = with_member(headers, INPUT, &self.label, &signed.input).zip(with_member(
            headers,
            SIGNATURE,
            &self.label,
            &signed.signature,
        ));
        let (input, signature) = merged.unwrap_or((signed.input, signed.signature));
        headers.insert(INPUT, input);
        headers.insert(SIGNATURE, signature);
    }
}

/// The field `name` of `headers` (all its lines, as one list) without its member `label`,
/// and `ours` (a `label=…` member) added at the end; `None` when it is not a dictionary.
fn with_member(
    headers: &HeaderMap,
    name: &str,
    label: &str,
    ours: &HeaderValue,
) -> Option<HeaderValue> {
    let mut lines = headers.get_all(name).iter().peekable();
    if lines.peek().is_none() {
        return Some(ours.clone());
    }
    let joined = lines
        .map(|v| v.to_str().ok())
        .collect::<Option<Vec<_>>>()?
        .join(", ");
    let mut out = String::with_capacity(joined.len() + ours.len() + 2);
    for (key, member) in sfv::dictionary_members(&joined)? {
        if key != label {
            out.push_str(member);
            out.push_str(", ");
        }
    }
    out.push_str(ours.to_str().ok()?);
    HeaderValue::try_from(out).ok()
}

#[cfg(test)]
mod tests {
    use super::super::{SignAlg, SignKey};
    use super::*;
    use crate::keys::HmacKey;

    fn signer() -> Signer {
        let key = SignKey::Hmac(HmacKey::new(b"k"));
        Signer::new(
            key,
            SignAlg::HmacSha256,
            "kid".into(),
            "sig1".into(),
            vec![],
            None,
        )
        .unwrap()
    }

    fn ours() -> Signed {
        Signed {
            base: String::new(),
            input: HeaderValue::from_static("sig1=();created=2"),
            signature: HeaderValue::from_static("sig1=:b3Vycw==:"),
        }
    }

    fn attached(app: &[(&'static str, &'static str)]) -> (String, String) {
        let mut headers = HeaderMap::new();
        for (k, v) in app {
            headers.append(*k, HeaderValue::from_static(v));
        }
        signer().attach(ours(), &mut headers);
        let one = |name| {
            let all: Vec<_> = headers.get_all(name).iter().collect();
            assert_eq!(all.len(), 1, "{name}");
            all[0].to_str().unwrap().to_string()
        };
        (one(INPUT), one(SIGNATURE))
    }

    fn pair(input: &str, signature: &str) -> (String, String) {
        (input.into(), signature.into())
    }

    #[test]
    fn the_apps_signatures_stay_beside_ours_and_ours_replaces_its_label() {
        // No signature of the app's: ours alone.
        assert_eq!(attached(&[]), pair("sig1=();created=2", "sig1=:b3Vycw==:"));
        // The app's own label stays, ours is added.
        assert_eq!(
            attached(&[
                (INPUT, r#"app=("@method");created=1;keyid="a""#),
                (SIGNATURE, "app=:YXBw:"),
            ]),
            pair(
                r#"app=("@method");created=1;keyid="a", sig1=();created=2"#,
                "app=:YXBw:, sig1=:b3Vycw==:"
            )
        );
        // Our label in the app's fields is replaced, over several lines too.
        assert_eq!(
            attached(&[
                (INPUT, "sig1=();created=0"),
                (INPUT, "app=();created=1"),
                (SIGNATURE, "sig1=:b2xk:, app=:YXBw:"),
            ]),
            pair(
                "app=();created=1, sig1=();created=2",
                "app=:YXBw:, sig1=:b3Vycw==:"
            )
        );
        // Either field not a dictionary: both are ours alone.
        for broken in [
            [(INPUT, "app=();created=1"), (SIGNATURE, "not a dictionary")],
            [(INPUT, "App=()"), (SIGNATURE, "app=:YXBw:")],
        ] {
            assert_eq!(
                attached(&broken),
                pair("sig1=();created=2", "sig1=:b3Vycw==:")
            );
        }
    }
}
