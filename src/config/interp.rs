//! `${NAME}`, `${NAME:-default}` and `${file:/path}` in config values.
//!
//! Expansion happens once per value, never recursively: the content of a variable or a
//! file is taken as it is, so a secret containing `${` stays intact. `$$` stands for a
//! literal `$`. Errors name the variable or file, never a value.

pub use crate::file::io_reason;
use std::path::Path;

/// Expands the references in `input`, reading variables through `env` (so tests need not
/// touch the process environment) and files from disk.
pub fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${`: expected `}`".to_string())?;
            out.push_str(&resolve(&body[..end], env)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(reference: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if let Some(path) = reference.strip_prefix("file:") {
        return read_secret_file(Path::new(path.trim()));
    }
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`${{{name}}}` is not a valid variable name (letters, digits and _)"
        ));
    }
    // As in the shell (and envsubst, compose): `:-` takes the default when the variable
    // is unset or empty; a plain `${NAME}` may be set to the empty string.
    match (env(name), default) {
        (Some(v), Some(d)) if v.is_empty() => Ok(d.to_string()),
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(format!("environment variable {name} is not set")),
    }
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) => Err(format!(
            "cannot read file {}: {}",
            path.display(),
            io_reason(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "ID" => Some("svc".into()),
            "EMPTY" => Some(String::new()),
            "TRICKY" => Some("a${B}c".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        let cases = [
            ("plain", "plain"),
            ("${ID}", "svc"),
            ("x-${ID}-y", "x-svc-y"),
            ("${MISSING:-fallback}", "fallback"),
            ("${ID:-fallback}", "svc"),
            // As in the shell: `:-` also replaces an empty value; `${EMPTY}` stays empty.
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY}", ""),
            ("${MISSING:-}", ""),
            ("cost $$5", "cost $5"),
            ("$${ID}", "${ID}"),
            ("a$b", "a$b"),
            ("${TRICKY}", "a${B}c"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &env).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn errors_name_the_variable_or_file_but_no_value() {
        assert_eq!(
            expand("${NOPE}", &env),
            Err("environment variable NOPE is not set".into())
        );
        assert!(expand("${ID", &env).unwrap_err().contains("unterminated"));
        assert!(expand("${a b}", &env)
            .unwrap_err()
            .contains("not a valid variable name"));
        let err = expand("${file:/nonexistent/secret}", &env).unwrap_err();
        assert_eq!(err, "cannot read file /nonexistent/secret: no such file");
    }

    #[test]
    fn file_content_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "  s3cret\n").unwrap();
        assert_eq!(
            expand(&format!("${{file:{}}}", path.display()), &env).unwrap(),
            "s3cret"
        );
    }
}
