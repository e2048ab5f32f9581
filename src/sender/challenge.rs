//! The challenges of a `WWW-Authenticate` field value (RFC 9110 §11.6.1, §11.2), read
//! well enough to tell which auth-params belong to which scheme: a quoted `realm` that
//! holds `DPoP error="use_dpop_nonce"` is text, not a challenge, and `error = x` (with
//! whitespace around `=`) is a parameter.
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! Both the challenges and their parameters are comma-separated, so the value is read as
//! one list: an element `token = value` is a parameter of the challenge before it; any
//! other element starts a challenge. A value that does not follow the grammar holds no
//! challenge at all (nothing is guessed from a broken one).

use std::borrow::Cow;

/// One challenge: its scheme and its auth-params (names as sent, values unquoted). A
/// `token68` is not kept: nothing here needs it.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub scheme: &'a str,
    pub params: Vec<(&'a str, Cow<'a, str>)>,
}

impl Challenge<'_> {
    /// The value of the parameter `name` (names are case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }
}

/// The challenges of `value`; `None` when it does not follow the grammar.
pub fn parse(value: &str) -> Option<Vec<Challenge<'_>>> {
    let mut c = Cursor { s: value, i: 0 };
    let mut out: Vec<Challenge<'_>> = Vec::new();
    loop {
        // Empty list elements are allowed (RFC 9110 §5.6.1).
        while c.eat_ows() || c.eat(b',') {}
        if c.done() {
            return Some(out);
        }
        let name = c.token()?;
        let spaced = c.eat_ows();
        if c.eat(b'=') {
            // `name = value`: a parameter of the challenge before it.
            c.eat_ows();
            let value = c.value()?;
            out.last_mut()?.params.push((name, value));
        } else {
            let mut challenge = Challenge {
                scheme: name,
                params: Vec::new(),
            };
            if spaced && !c.at_element_end() {
                first_param_or_token68(&mut c, &mut challenge)?;
            }
            out.push(challenge);
        }
        c.eat_ows();
        if !c.at_element_end() {
            return None;
        }
    }
}

/// After `scheme 1*SP`: an auth-param, or else a token68 (which may end in `=`).
fn first_param_or_token68<'a>(c: &mut Cursor<'a>, challenge: &mut Challenge<'a>) -> Option<()> {
    let start = c.i;
    if let Some(name) = c.token() {
        c.eat_ows();
        if c.eat(b'=') {
            c.eat_ows();
            if let Some(value) = c.value() {
                challenge.params.push((name, value));
                return Some(());
            }
        }
    }
    c.i = start;
    let token68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
    let n = c.take_while(token68);
    c.take_while(|b| b == b'=');
    (n > 0).then_some(())
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn at_element_end(&self) -> bool {
        matches!(self.peek(), None | Some(b','))
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    /// Skips spaces and tabs; true when there were some.
    fn eat_ows(&mut self) -> bool {
        self.take_while(|b| b == b' ' || b == b'\t') > 0
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> usize {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        self.i - start
    }

    /// RFC 9110 §5.6.2 `token`.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.i;
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        (self.take_while(tchar) > 0).then(|| &self.s[start..self.i])
    }

    /// A parameter's value: a token or a quoted-string (RFC 9110 §5.6.4), unquoted.
    fn value(&mut self) -> Option<Cow<'a, str>> {
        if !self.eat(b'"') {
            return self.token().map(Cow::Borrowed);
        }
        let start = self.i;
        // Unescaped text so far, and where the text not yet copied into it starts: cuts
        // fall only next to a backslash or a quote, which are ASCII, so always between
        // characters.
        let mut unescaped: Option<String> = None;
        let mut copied_to = start;
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => {
                    let rest = &self.s[copied_to..self.i - 1];
                    return Some(match unescaped {
                        Some(mut s) => {
                            s.push_str(rest);
                            Cow::Owned(s)
                        }
                        None => Cow::Borrowed(rest),
                    });
                }
                b'\\' => {
                    let escaped = self.peek()?;
                    if !(escaped == b'\t' || (0x20..=0x7e).contains(&escaped)) {
                        return None;
                    }
                    let s = unescaped.get_or_insert_with(String::new);
                    s.push_str(&self.s[copied_to..self.i - 1]);
                    s.push(char::from(escaped));
                    self.i += 1;
                    copied_to = self.i;
                }
                // qdtext: no controls but HTAB (obs-text, non-ASCII, is kept as is).
                b if (b < 0x20 && b != b'\t') || b == 0x7f => return None,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A challenge as owned strings: its scheme and its parameters.
    type Owned = (String, Vec<(String, String)>);

    fn schemes_and_params(v: &str) -> Option<Vec<Owned>> {
        Some(
            parse(v)?
                .into_iter()
                .map(|c| {
                    let params = c
                        .params
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect();
                    (c.scheme.to_string(), params)
                })
                .collect(),
        )
    }

    fn p(n: &str, v: &str) -> (String, String) {
        (n.into(), v.into())
    }

    #[test]
    fn challenges_and_params_are_told_apart() {
        let dpop = |params: Vec<(String, String)>| vec![("DPoP".to_string(), params)];
        assert_eq!(
            schemes_and_params(r#"DPoP error="use_dpop_nonce""#),
            Some(dpop(vec![p("error", "use_dpop_nonce")]))
        );
        // BWS around `=` (RFC 9110 §11.2), a token value, tabs.
        assert_eq!(
            schemes_and_params("DPoP error = use_dpop_nonce ,\talgs=\"ES256 PS256\""),
            Some(dpop(vec![
                p("error", "use_dpop_nonce"),
                p("algs", "ES256 PS256")
            ]))
        );
        // Two challenges in one value; a quoted realm holding what looks like another.
        let v = r#"Bearer realm="x, DPoP error=\"use_dpop_nonce\"", error="invalid_token", DPoP algs="ES256""#;
        assert_eq!(
            schemes_and_params(v),
            Some(vec![
                (
                    "Bearer".into(),
                    vec![
                        p("realm", r#"x, DPoP error="use_dpop_nonce""#),
                        p("error", "invalid_token")
                    ]
                ),
                ("DPoP".into(), vec![p("algs", "ES256")]),
            ])
        );
        // A bare scheme, a token68 (ending in `=`), empty list elements.
        assert_eq!(
            schemes_and_params("Negotiate, , Basic YWxhZGRpbjpvcGVu==, DPoP"),
            Some(vec![
                ("Negotiate".into(), vec![]),
                ("Basic".into(), vec![]),
                ("DPoP".into(), vec![]),
            ])
        );
    }

    #[test]
    fn a_value_off_the_grammar_holds_no_challenge() {
        for bad in [
            r#"DPoP error="use_dpop_nonce"#,
            "error=use_dpop_nonce",
            "DPoP error=\"a\"b",
            "DPoP a b c",
            "DPoP error=\"bell\u{7}\"",
            "=x",
            "DPoP realm=\"\\é\"",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse(""), Some(vec![]));
        // No input panics: every prefix of a value with escapes and non-ASCII text.
        let tricky = "Bearer realm=\"é\\\"ü\\\\\", DPoP error = \"use_dpop_nonce\", x=\"\\é\"";
        for (i, _) in tricky.char_indices() {
            let _ = parse(&tricky[..i]);
        }
        // `error=` alone is a token68 (it may end in `=`), not an empty parameter.
        assert_eq!(parse("DPoP error=").unwrap()[0].params, vec![]);
        // Non-ASCII text in a quoted string is kept, escapes or not, and never split.
        let c = parse("DPoP realm=\"é\\\"ü\\\\\", error=x").unwrap();
        assert_eq!(c[0].param("realm"), Some("é\"ü\\"));
        assert_eq!(c[0].param("ERROR"), Some("x"));
    }
}
