//! The few Structured Field Values (RFC 8941 §4.1) that signatures write: strings, byte
//! sequences, integers, parameters and dictionary keys. Serialisation only.

use base64::Engine;

/// Appends `s` as an sf-string (§4.1.6): printable ASCII only, `"` and `\` escaped.
pub(super) fn string(out: &mut String, s: &str) -> Result<(), String> {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => return Err("a value that is not printable ASCII".to_string()),
        }
    }
    out.push('"');
    Ok(())
}

/// Appends `bytes` as an sf-binary (§4.1.8): `:` base64 (with padding) `:`.
pub(super) fn byte_sequence(out: &mut String, bytes: &[u8]) {
    out.push(':');
    out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
    out.push(':');
}

/// True when `key` is a valid dictionary key or parameter name (§3.1.2): starts with a
/// lowercase letter or `*`, then lowercase letters, digits, `_`, `-`, `.`, `*`.
pub(super) fn is_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some('a'..='z' | '*'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-' | '.' | '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_and_refuse_what_they_cannot_carry() {
        let mut out = String::new();
        string(&mut out, r#"a "quoted" \ value"#).unwrap();
        assert_eq!(out, r#""a \"quoted\" \\ value""#);
        assert!(string(&mut String::new(), "tab\there").is_err());
        assert!(string(&mut String::new(), "é").is_err());
        let mut out = String::new();
        byte_sequence(&mut out, b"hello");
        assert_eq!(out, ":aGVsbG8=:");
        assert!(is_key("sig1") && is_key("*x") && is_key("sig-b26"));
        assert!(!is_key("Sig") && !is_key("1sig") && !is_key("") && !is_key("a b"));
    }
}
