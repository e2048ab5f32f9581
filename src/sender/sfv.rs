//! The few Structured Field Values (RFC 8941 §4.1) that signatures write: strings, byte
//! sequences, integers, parameters and dictionary keys; and the one thing they read: the
//! members of a dictionary an app already sent (§4.2.2), so a signature is added to the
//! app's `Signature` and `Signature-Input` rather than replacing them.

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

/// The members of the dictionary `value` (§4.2.2) in order, each as its key and its whole
/// text (`key=value;params`, or `key;params`); `None` when `value` is not a dictionary.
/// Values are checked against the grammar but not decoded.
pub(super) fn dictionary_members(value: &str) -> Option<Vec<(&str, &str)>> {
    let mut c = Parser {
        s: value.as_bytes(),
        i: 0,
    };
    c.sp();
    let mut members = Vec::new();
    while !c.done() {
        let start = c.i;
        let key = c.key()?;
        if c.eat(b'=') {
            c.item_or_inner_list()?;
        } else {
            c.params()?;
        }
        members.push((key, &value[start..c.i]));
        c.ows();
        if c.done() {
            break;
        }
        if !c.eat(b',') {
            return None;
        }
        c.ows();
        if c.done() {
            return None; // a trailing comma
        }
    }
    Some(members)
}

/// A cursor over a field value, for [`dictionary_members`] (RFC 8941 §4.2).
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> usize {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        self.i - start
    }

    fn sp(&mut self) {
        self.take_while(|b| b == b' ');
    }

    fn ows(&mut self) {
        self.take_while(|b| b == b' ' || b == b'\t');
    }

    /// §4.2.3.3 `key`.
    fn key(&mut self) -> Option<&'a str> {
        let start = self.i;
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'*')) {
            return None;
        }
        self.take_while(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*'));
        std::str::from_utf8(&self.s[start..self.i]).ok()
    }

    /// §4.2.1.1: an item or an inner list, with its parameters.
    fn item_or_inner_list(&mut self) -> Option<()> {
        if !self.eat(b'(') {
            self.bare_item()?;
            return self.params();
        }
        loop {
            self.sp();
            if self.eat(b')') {
                return self.params();
            }
            self.bare_item()?;
            self.params()?;
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    /// §4.2.3.2 parameters.
    fn params(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// §4.2.3.1: an integer or decimal, string, token, byte sequence or boolean (and RFC
    /// 9651's dates, `@` and an integer).
    fn bare_item(&mut self) -> Option<()> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'@' => {
                self.i += 1;
                self.number()
            }
            b'"' => {
                self.i += 1;
                loop {
                    match self.peek()? {
                        b'"' => break,
                        b'\\' => {
                            self.i += 1;
                            if !matches!(self.peek()?, b'"' | b'\\') {
                                return None;
                            }
                        }
                        0x20..=0x7e => {}
                        _ => return None,
                    }
                    self.i += 1;
                }
                self.i += 1;
                Some(())
            }
            b':' => {
                self.i += 1;
                self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                self.eat(b':').then_some(())
            }
            b'?' => {
                self.i += 1;
                matches!(self.peek()?, b'0' | b'1').then(|| self.i += 1)
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b);
                self.take_while(tchar);
                Some(())
            }
            _ => None,
        }
    }

    /// §4.2.4: at most 15 digits, or 12 and a fraction of 1 to 3.
    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        let int = self.take_while(|b| b.is_ascii_digit());
        if !self.eat(b'.') {
            return (1..=15).contains(&int).then_some(());
        }
        let frac = self.take_while(|b| b.is_ascii_digit());
        ((1..=12).contains(&int) && (1..=3).contains(&frac)).then_some(())
    }
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

    #[test]
    fn dictionaries_are_split_into_members_and_anything_else_refused() {
        let input = r#"sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd", app=("@method" "@authority" "content-type");created=1;alg="ed25519""#;
        let members = dictionary_members(input).unwrap();
        assert_eq!(
            members,
            [
                (
                    "sig-b21",
                    r#"sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#
                ),
                (
                    "app",
                    r#"app=("@method" "@authority" "content-type");created=1;alg="ed25519""#
                ),
            ]
        );
        let sig = "sig1=:dGVzdA==:,\tflag;x=?1, n=-1.5, t=tok/en:x, d=@1659578233";
        let keys: Vec<_> = dictionary_members(sig)
            .unwrap()
            .into_iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(keys, ["sig1", "flag", "n", "t", "d"]);
        assert_eq!(dictionary_members("").unwrap(), []);
        for bad in [
            "Sig=:x:",
            "sig=:x",
            "a=1,",
            "a=1 b=2",
            "a=\"unterminated",
            "a=(1 2",
            "a=(1,2)",
            "a=1234567890123456",
            "a=\"\\x\"",
            "a=é",
            "a=1;",
            "a==1",
        ] {
            assert_eq!(dictionary_members(bad), None, "{bad}");
        }
    }
}
