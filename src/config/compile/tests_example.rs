//! `proxy.yaml.example` says what it means: it compiles without a warning, and every
//! uncommented line not marked "required" is a default, so deleting it changes nothing.

use super::{Config, Path};

const EXAMPLE: &str = include_str!("../../../proxy.yaml.example");

/// The example compiled as `tests/it/binary.rs` runs it: the client secret in a file.
fn compile(text: &str, secret: &Path) -> Result<Config, Vec<String>> {
    let text = text.replace(
        "/var/run/secrets/crm/client_secret",
        secret.to_str().unwrap(),
    );
    let env = |name: &str| (name == "CRM_CLIENT_ID").then(|| "crm".to_string());
    Config::from_text(Path::new("proxy.yaml.example"), &text, &env).map_err(|e| e.problems)
}

fn secret_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, "example-secret\n").unwrap();
    (dir, secret)
}

#[test]
fn the_example_compiles_without_warnings() {
    let (_dir, secret) = secret_file();
    let c = compile(EXAMPLE, &secret).unwrap();
    assert_eq!((c.providers.len(), c.routes.len()), (1, 2));
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
}

#[test]
fn every_uncommented_line_of_the_example_is_a_default_or_required() {
    let (_dir, secret) = secret_file();
    let whole = format!("{:?}", compile(EXAMPLE, &secret).unwrap());
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    let mut defaults = 0;
    for (i, line) in lines.iter().enumerate() {
        let code = line.split(" #").next().unwrap_or_default().trim();
        let comment = line[line.len().min(line.find(" #").unwrap_or(line.len()))..]
            .trim_start_matches([' ', '#']);
        let value = code.split_once(':').map(|(_, v)| v.trim());
        // Comments, list items (`- `), block openers (`key:`) and required keys stay.
        if code.starts_with('#') || code.starts_with("- ") || comment.starts_with("required") {
            continue;
        }
        if value.is_none_or(str::is_empty) {
            continue;
        }
        let without: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, l)| *l)
            .collect();
        let got = compile(&without.join("\n"), &secret).map(|c| format!("{c:?}"));
        assert_eq!(
            got.as_ref(),
            Ok(&whole),
            "line {} is neither a default nor marked required: {line}",
            i + 1
        );
        defaults += 1;
    }
    assert!(defaults >= 30, "only {defaults} default lines found");
}
