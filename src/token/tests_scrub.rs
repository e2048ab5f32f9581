//! Table-driven tests of scrubbing: every form, offset and length that went wrong before.

use super::{scrub, Secrets, MAX_CHARS};
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;

const ID: &str = "svc";
const SECRET: &str = "p+s/s=w%rd&x:y é";

fn secrets() -> Secrets {
    let mut s = Secrets::default();
    s.add_basic(ID, SECRET);
    s
}

fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Every form of [`SECRET`] an IdP might echo.
fn forms() -> Vec<(&'static str, String)> {
    let percent_lower = SECRET
        .bytes()
        .map(|b| format!("%{b:02x}"))
        .collect::<String>();
    vec![
        ("raw", SECRET.to_string()),
        ("form", form(SECRET)),
        ("form, %20 for space", form(SECRET).replace('+', "%20")),
        ("percent, lower hex", percent_lower),
        (
            "basic, form-encoded first",
            STANDARD.encode(format!("{ID}:{}", form(SECRET))),
        ),
        ("basic, as is", STANDARD.encode(format!("{ID}:{SECRET}"))),
        ("basic, url-safe", URL_SAFE.encode(format!("{ID}:{SECRET}"))),
        (
            "basic, form-encoded again",
            form(&STANDARD.encode(format!("{ID}:{SECRET}"))),
        ),
        ("base64 alone", STANDARD.encode(SECRET)),
        ("base64 after 1 byte", STANDARD.encode(format!("x{SECRET}"))),
        (
            "base64 after 2 bytes",
            STANDARD.encode(format!("xy{SECRET}")),
        ),
        (
            "base64 of client_secret=…",
            STANDARD.encode(format!("client_secret={}", form(SECRET))),
        ),
    ]
}

/// No form of the secret, nor a telling piece of one, is in `out`.
fn assert_clean(out: &str, what: &str) {
    for (name, f) in forms() {
        assert!(!out.contains(&f), "{what}: the {name} form survived: {out}");
    }
    for piece in ["w%rd", "s/s=", "p+s"] {
        assert!(!out.contains(piece), "{what}: {piece:?} survived: {out}");
    }
}

#[test]
fn every_form_at_every_offset_is_cut() {
    let s = secrets();
    for (name, f) in forms() {
        for (before, after) in [("", ""), ("error: ", " was sent"), ("x", "y"), ("é", "ü")] {
            let text = format!("{before}{f}{after}");
            let out = scrub(&text, &s);
            assert_clean(&out, name);
            assert!(out.contains("[redacted]"), "{name}: {out}");
            assert!(out.starts_with(before), "{name}: {out}");
        }
    }
}

#[test]
fn a_long_text_is_scrubbed_before_it_is_shortened() {
    let s = secrets();
    for (name, f) in forms() {
        // Before the fix, 15 characters of a secret at the end of a 200+ text survived.
        for pad in [
            MAX_CHARS - 15,
            MAX_CHARS - 1,
            MAX_CHARS,
            MAX_CHARS + 10,
            20_000,
        ] {
            let text = format!("{}{f}", "d".repeat(pad));
            let out = scrub(&text, &s);
            assert_clean(&out, name);
            assert!(out.chars().count() <= MAX_CHARS, "{name}: {}", out.len());
        }
    }
}

#[test]
fn text_without_secrets_is_kept_without_control_characters_and_cut_on_a_char_boundary() {
    let s = secrets();
    assert_eq!(
        scrub("invalid_client: Client authentication failed", &s),
        "invalid_client: Client authentication failed"
    );
    assert_eq!(scrub("a\nb\u{0}c\td", &s), "abcd");
    let long = "é".repeat(300);
    assert_eq!(scrub(&long, &s), "é".repeat(MAX_CHARS));
    // Control characters go first, so they cannot split a secret to smuggle it past.
    let split = format!("{}\u{1}{}", &SECRET[..4], &SECRET[4..]);
    assert_eq!(scrub(&split, &s), "[redacted]");
}

#[test]
fn short_secrets_are_cut_only_as_words_of_their_own() {
    let mut s = Secrets::default();
    s.add_basic("c", "s");
    s.add("ab1");
    let text = "invalid_client: Client authentication failed for s (ab1, ab12)";
    assert_eq!(
        scrub(text, &s),
        "invalid_client: Client authentication failed for [redacted] ([redacted], ab12)"
    );
    // Their Basic credentials are long enough to be cut anywhere.
    let basic = STANDARD.encode("c:s");
    assert_eq!(
        scrub(&format!("header=Basic{basic}"), &s),
        "header=Basic[redacted]"
    );
    // Four characters and more: anywhere.
    let mut s = Secrets::default();
    s.add("test");
    assert_eq!(scrub("latest tests", &s), "la[redacted] [redacted]s");
}

#[test]
fn every_secret_of_a_request_is_cut() {
    let mut s = Secrets::default();
    for secret in [
        "assertion-ey.J0",
        "refresh-0123",
        "subject-0123",
        "actor-0123",
    ] {
        s.add(secret);
    }
    let text = "assertion-ey.J0 refresh-0123 subject%2D0123 YWN0b3ItMDEyMw";
    assert_eq!(
        scrub(text, &s),
        "[redacted] [redacted] [redacted] [redacted]"
    );
}

#[test]
fn a_secret_that_overlaps_the_marker_withholds_the_whole_text() {
    let mut s = Secrets::default();
    s.add("ed]tail");
    // Cutting "ed]tail" out of "… ed]tailtail" would leave "[redacted]tail".
    assert_eq!(scrub("x ed]tailtail", &s), "[redacted]");
    assert_eq!(format!("{s:?}"), "Secrets([redacted])");
}
