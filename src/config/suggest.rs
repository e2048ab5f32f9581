//! "Did you mean": the known word nearest to a misspelt key or value, the way rustc
//! suggests a name.
//!
//! Pure string work, no IO. A suggestion is offered only when it is close (at most one
//! edit per three characters, at least one), so a word that merely shares a letter or two
//! with a key is never "corrected" into it.

/// The candidate nearest to `word`, if one is close enough, else the only candidate that
/// `word` begins. Case and `-`/`_` do not count as differences; among equally near
/// candidates the first wins.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = normalize(word);
    let limit = (word.len() / 3).max(1);
    let near = candidates
        .iter()
        .map(|c| (distance(&word, &normalize(c)), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    // A word cut short (`listen` for `listening`, `static` for `static_file`) is far in
    // edits but plain to a reader: the one candidate it begins is meant.
    near.or_else(|| {
        let mut longer = candidates
            .iter()
            .filter(|c| word.len() >= 3 && normalize(c).starts_with(&word));
        match (longer.next(), longer.next()) {
            (Some(c), None) => Some(*c),
            _ => None,
        }
    })
}

/// `word` did not match any of `options`: what was expected, and the nearest option.
/// The word itself is not repeated (the location points at it, and it might be a secret
/// typed into the wrong place).
pub fn unknown_value(word: &str, options: &[&str]) -> String {
    let mut msg = format!("unknown value: expected {}", either(options));
    if let Some(near) = closest(word, options) {
        msg.push_str(&format!("; did you mean `{near}`?"));
    }
    msg
}

/// "`a`", "`a` or `b`", "`a`, `b` or `c`".
pub fn either(options: &[&str]) -> String {
    let quoted: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

fn normalize(word: &str) -> Vec<char> {
    word.trim()
        .chars()
        .map(|c| match c {
            '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`: the
/// optimal string alignment distance.
fn distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_near_words() {
        let keys = [
            "timeout",
            "token_url",
            "token_file",
            "idle_timeout",
            "prefetch",
            "scopes",
        ];
        let cases = [
            ("timout", Some("timeout")),
            ("timeoutt", Some("timeout")),
            ("tiemout", Some("timeout")),
            ("token-url", Some("token_url")),
            ("Token_URL", Some("token_url")),
            ("tokn_url", Some("token_url")),
            ("prefech", Some("prefetch")),
            ("idle", Some("idle_timeout")),
            ("tok", None),
            ("scope", Some("scopes")),
            ("bogus", None),
            ("url", None),
            ("x", None),
        ];
        for (word, want) in cases {
            assert_eq!(closest(word, &keys), want, "{word}");
        }
        assert_eq!(closest("forwrd", &["forward", "deny"]), Some("forward"));
        assert_eq!(closest("jsn", &["text", "json"]), Some("json"));
        assert_eq!(closest("GETT", &["GET", "HEAD", "POST"]), Some("GET"));
        assert_eq!(closest("POTS", &["GET", "POST", "PUT"]), Some("POST"));
    }

    #[test]
    fn unknown_values_name_the_options_and_the_nearest() {
        assert_eq!(
            unknown_value("forwrd", &["forward", "deny"]),
            "unknown value: expected `forward` or `deny`; did you mean `forward`?"
        );
        assert_eq!(
            unknown_value("hunter2", &["text", "json"]),
            "unknown value: expected `text` or `json`"
        );
        assert_eq!(either(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(either(&["a"]), "`a`");
    }
}
