//! Scrubbing (SPEC §8): the one way a text the proxy did not write reaches a log line,
//! `/status` or an error body. Such texts are an IdP's `error` and `error_description`,
//! a `token_type` it sent, and transport errors (which may echo a URL). [`scrub`] drops
//! control characters, cuts out every form of every secret the request used, and only
//! then shortens the text, on a character boundary: shortening first could leave the
//! start of a secret at the end of a long text.
//!
//! Forms, each replaced by `[redacted]` wherever it starts:
//! - the raw value;
//! - its form-URL-encoded and percent-encoded forms, in any mix of encoded and plain
//!   characters, `+` or `%20` for a space, either hex case. These are found by searching
//!   decoded views of the text for the other forms, so no encoding variant is listed;
//! - base64 (standard or URL-safe, padded or not) of the value alone, and of the value
//!   inside a longer encoded text at any alignment (which covers the HTTP Basic
//!   credentials `base64(client_id:secret)` with any client id), both for the value
//!   and for its form-URL-encoded form (RFC 6749 §2.3.1 encodes before base64); the full
//!   Basic credentials are cut as a whole as well.
//!
//! Short values: a form shorter than [`MIN_ANYWHERE`] characters would match inside
//! ordinary words (a test secret `s` would blank out every `s` of every message), so it
//! is cut only where it stands as a word of its own: no letter or digit right before or
//! after it. A secret that short protects nothing, but a message stays readable.
//!
//! Pure functions: no IO, no state. Never log a [`Secrets`]: it holds the secrets.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use std::borrow::Cow;
use std::fmt;

/// At most this many characters of an outside text are kept.
pub(super) const MAX_CHARS: usize = 200;
/// Forms at least this many characters long are cut wherever they occur; shorter ones
/// only as words of their own.
pub(super) const MIN_ANYWHERE: usize = 4;
/// Base64 of a secret inside a longer encoded text is recognised by the characters that
/// depend on the secret alone; fewer than this many could match by chance.
const MIN_BASE64_CORE: usize = 8;
/// Only this many bytes of a text are searched; the rest could never be shown anyway.
const MAX_SCANNED: usize = 16 * 1024;
const REDACTED: &str = "[redacted]";

/// Every secret a token request used, each in every form it may come back in.
#[derive(Clone, Default)]
pub(super) struct Secrets {
    /// The forms to cut; `true`: only as a word of its own.
    needles: Vec<(String, bool)>,
}

impl Secrets {
    /// A credential the request carried (a client secret, an assertion, a refresh,
    /// subject, actor or access token): its raw value and its base64 forms. The
    /// form-URL-encoded forms need no entry of their own (see the module docs).
    pub(super) fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        self.push(secret.to_string());
        let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for value in [secret, &encoded] {
            for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
                self.push(engine.encode(value));
                for core in base64_cores(&engine, value.as_bytes()) {
                    self.push(core);
                }
            }
        }
    }

    /// HTTP Basic credentials: `base64(id:secret)`, with id and secret form-URL-encoded
    /// first (RFC 6749 §2.3.1, as `wire::basic_auth` sends them) and as they are.
    pub(super) fn add_basic(&mut self, id: &str, secret: &str) {
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        for pair in [
            format!("{}:{}", encode(id), encode(secret)),
            format!("{id}:{secret}"),
        ] {
            self.push(STANDARD_NO_PAD.encode(&pair));
            self.push(URL_SAFE_NO_PAD.encode(&pair));
        }
        self.add(secret);
    }

    fn push(&mut self, needle: String) {
        let short = needle.chars().count() < MIN_ANYWHERE;
        if !needle.is_empty() && !self.needles.iter().any(|(n, _)| *n == needle) {
            self.needles.push((needle, short));
        }
    }

    /// The longest form, in bytes.
    fn longest(&self) -> usize {
        self.needles.iter().map(|(n, _)| n.len()).max().unwrap_or(0)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets([redacted])")
    }
}

/// `text`, from outside, made fit for a message: without control characters, every form
/// of every one of `secrets` replaced by `[redacted]`, then cut to [`MAX_CHARS`]
/// characters. Should a form still be found in the result (a secret that overlaps the
/// marker), nothing of the text is shown.
pub(super) fn scrub(text: &str, secrets: &Secrets) -> String {
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    let mut hidden = Vec::new();
    if text.len() > MAX_SCANNED {
        // What lies beyond is never searched, so the end of what is kept may be the start
        // of a secret (percent-encoded: three bytes per byte of it).
        let cut = floor_char_boundary(&text, MAX_SCANNED);
        text.truncate(cut);
        let tail = (3 * secrets.longest()).saturating_sub(1);
        if tail > 0 {
            hidden.push((cut.saturating_sub(tail), cut));
        }
    }
    hidden.extend(occurrences(&text, secrets));
    let mut out = text;
    if !hidden.is_empty() {
        out = replace(&out, hidden);
        if !occurrences(&out, secrets).is_empty() {
            out = REDACTED.to_string();
        }
    }
    if let Some((at, _)) = out.char_indices().nth(MAX_CHARS) {
        out.truncate(at);
    }
    out
}

/// The byte ranges of `text` where some form of a secret occurs, in the text itself and
/// in its percent-decoded and form-decoded views. One pass per view: at each byte only
/// the forms that start with it are compared.
fn occurrences(text: &str, secrets: &Secrets) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    if secrets.needles.is_empty() {
        return found;
    }
    let mut by_first = vec![Vec::new(); 256];
    for (needle, word) in &secrets.needles {
        by_first[usize::from(needle.as_bytes()[0])].push((needle.as_bytes(), *word));
    }
    // The form-decoded view differs from the percent-decoded one only where a `+` is.
    let (percent, plus) = (text.contains('%'), text.contains('+'));
    let mut views = vec![View::raw(text)];
    if percent {
        views.push(View::decoded(text, false));
    }
    if plus {
        views.push(View::decoded(text, true));
    }
    for view in &views {
        for (at, &byte) in view.bytes.iter().enumerate() {
            for &(needle, word) in &by_first[usize::from(byte)] {
                if !view.bytes[at..].starts_with(needle) {
                    continue;
                }
                let (start, end) = (view.start(at), view.end(at + needle.len() - 1));
                if !word || stands_alone(text, start, end) {
                    found.push((start, end));
                }
            }
        }
    }
    found
}

/// `text` with each of `ranges` (widened to character boundaries, merged where they
/// overlap or touch) replaced by the marker.
fn replace(text: &str, ranges: Vec<(usize, usize)>) -> String {
    let mut ranges: Vec<_> = ranges
        .into_iter()
        .map(|(s, e)| (floor_char_boundary(text, s), ceil_char_boundary(text, e)))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end) in merged {
        out.push_str(&text[pos..start]);
        out.push_str(REDACTED);
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// The text as searched: its bytes, and for each the byte range of the text it came
/// from (three bytes for a decoded `%XX`; none listed: the text itself).
struct View<'a> {
    bytes: Cow<'a, [u8]>,
    origin: Option<Vec<(usize, usize)>>,
}

impl<'a> View<'a> {
    fn raw(text: &'a str) -> Self {
        Self {
            bytes: Cow::Borrowed(text.as_bytes()),
            origin: None,
        }
    }

    /// `%XX` decoded (either hex case); with `plus_is_space`, `+` read as a space
    /// (`application/x-www-form-urlencoded`).
    fn decoded(text: &str, plus_is_space: bool) -> Self {
        let b = text.as_bytes();
        let mut bytes = Vec::with_capacity(b.len());
        let mut origin = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
            let (byte, len) = match (b[i], hex(i + 1), hex(i + 2)) {
                (b'%', Some(hi), Some(lo)) => ((hi * 16 + lo) as u8, 3),
                (b'+', _, _) if plus_is_space => (b' ', 1),
                (c, _, _) => (c, 1),
            };
            bytes.push(byte);
            origin.push((i, i + len));
            i += len;
        }
        Self {
            bytes: Cow::Owned(bytes),
            origin: Some(origin),
        }
    }

    /// Where in the text the byte at `i` starts.
    fn start(&self, i: usize) -> usize {
        self.origin.as_ref().map_or(i, |o| o[i].0)
    }

    /// Where in the text the byte at `i` ends.
    fn end(&self, i: usize) -> usize {
        self.origin.as_ref().map_or(i + 1, |o| o[i].1)
    }
}

/// No letter or digit right before `start` or right after `end`.
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let before = text.get(..start).and_then(|t| t.chars().next_back());
    let after = text.get(end..).and_then(|t| t.chars().next());
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

/// The base64 characters that depend on `value` alone when it is encoded after 0, 1 or
/// 2 other bytes: the secret inside a longer base64 text, whatever precedes it.
fn base64_cores(engine: &impl Engine, value: &[u8]) -> Vec<String> {
    (0..3)
        .filter_map(|k| {
            let mut bytes = vec![0u8; k];
            bytes.extend_from_slice(value);
            let encoded = engine.encode(&bytes);
            let (start, end) = ((8 * k).div_ceil(6), 8 * (k + value.len()) / 6);
            encoded
                .get(start..end)
                .filter(|core| core.len() >= MIN_BASE64_CORE)
                .map(str::to_string)
        })
        .collect()
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
#[path = "tests_scrub.rs"]
mod tests;
