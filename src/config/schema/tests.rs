use super::*;
use std::collections::{BTreeMap, BTreeSet};

/// `docs/config.md`, the configuration reference.
const REFERENCE: &str = include_str!("../../../docs/config.md");

#[test]
fn field_lists_come_from_serde() {
    assert!(fields_of::<RawRoute>().contains(&"match"));
    assert!(fields_of::<RawProvider>().contains(&"client_secret"));
    assert_eq!(fields_of::<RawLog>(), &["format", "level"]);
    assert!(
        blocks().iter().all(|b| !b.fields.is_empty()),
        "every block probed"
    );
    assert_eq!(
        block_named("routes[].match").fields,
        fields_of::<RawMatch>()
    );
}

#[test]
fn restart_only_keys_exist() {
    for key in RESTART_ONLY {
        let (block, field) = key.rsplit_once('.').unwrap_or((TOP, key));
        assert!(block_named(block).fields.contains(&field), "{key}");
    }
}

/// One row of the reference: `| `key` | type | default | reload | meaning |`.
struct Row {
    key: String,
    reload: String,
    cells: usize,
}

/// The reference's key tables, by block: a `##`/`###` heading names the block (`Top
/// level`, or a block name in backticks); other headings end it.
fn reference_tables() -> BTreeMap<String, Vec<Row>> {
    let mut tables: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut block: Option<String> = None;
    for line in REFERENCE.lines() {
        if let Some(heading) = line.strip_prefix("## ").or(line.strip_prefix("### ")) {
            block = match heading.trim() {
                "Top level" => Some(TOP.to_string()),
                h if h.starts_with('`') && h.ends_with('`') => {
                    Some(h.trim_matches('`').to_string())
                }
                _ => None,
            };
            continue;
        }
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let block = block
            .clone()
            .unwrap_or_else(|| panic!("a key row outside a block section: {line}"));
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        let key = rest.split('`').next().unwrap_or_default().to_string();
        tables.entry(block).or_default().push(Row {
            key,
            reload: cells.get(3).map_or("", |c| c.trim()).to_string(),
            cells: cells.len(),
        });
    }
    tables
}

#[test]
fn the_reference_documents_every_key_the_parser_reads_and_no_other() {
    let tables = reference_tables();
    let documented: BTreeSet<&str> = tables.keys().map(String::as_str).collect();
    let parsed: BTreeSet<&str> = blocks().iter().map(|b| b.name).collect();
    assert_eq!(documented, parsed, "blocks in docs/config.md vs the parser");
    for block in blocks() {
        let rows = &tables[block.name];
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let mut want: Vec<&str> = block.fields.to_vec();
        let mut got = keys.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(
            got, want,
            "keys of {} in docs/config.md vs the parser",
            block.name
        );
        for row in rows {
            assert_eq!(
                row.cells, 5,
                "{}.{}: key | type | default | reload | meaning",
                block.name, row.key
            );
        }
    }
}

#[test]
fn the_reference_says_which_keys_need_a_restart() {
    let mut restart = BTreeSet::new();
    for (block, rows) in reference_tables() {
        for row in rows {
            let key = match block.as_str() {
                TOP => row.key.clone(),
                b => format!("{b}.{}", row.key),
            };
            match row.reload.as_str() {
                "restart" => {
                    restart.insert(key);
                }
                // A block whose keys differ says so in its own table.
                r if r.starts_with("yes") || r.starts_with("see `") => {}
                other => panic!("{key}: reload is {other:?}, expected yes or restart"),
            }
        }
    }
    let want: BTreeSet<String> = RESTART_ONLY.iter().map(|k| k.to_string()).collect();
    assert_eq!(restart, want);
}
