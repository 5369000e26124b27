//! docs/architecture.md is the map of the source tree: every file under src/ is named there, and
//! every `src/….rs` it names exists. (No root, no Docker.)

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, as `src/…` paths.
fn sources(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root()).unwrap();
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
}

/// Every `src/….rs` the text names.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("src/") {
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '/' || c == '.'))
            .unwrap_or(tail.len());
        let word = tail[..len].trim_end_matches('.');
        if word.ends_with(".rs") {
            out.insert(word.to_string());
        }
        rest = &tail[len.max(4)..];
    }
    out
}

#[test]
fn the_architecture_map_names_every_source_file_and_no_other() {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md"))
        .expect("docs/architecture.md is the map of src/");
    let mut files = BTreeSet::new();
    sources(&root().join("src"), &mut files);
    let mentioned = named(&doc);
    let missing: Vec<_> = files.difference(&mentioned).collect();
    let stale: Vec<_> = mentioned.difference(&files).collect();
    assert!(
        missing.is_empty(),
        "docs/architecture.md does not mention {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/architecture.md names files that do not exist: {stale:?}"
    );
}

#[test]
fn names_are_read_out_of_prose_and_tables() {
    let text = "`src/main.rs` parses; src/watch/http.rs. and (src/lease/disk.rs) | src/ alone";
    let got: Vec<_> = named(text).into_iter().collect();
    assert_eq!(
        got,
        ["src/lease/disk.rs", "src/main.rs", "src/watch/http.rs"]
    );
}
