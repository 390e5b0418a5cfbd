//! What the corpus tests share: a folder of captured logs under `tests/data/`, and an
//! `expected.txt` there that must list every one of them.

use std::path::PathBuf;

/// `tests/data/<name>`.
pub fn data_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Fails unless the `.log` files of `dir` are exactly `listed` (sorted), so that a log added
/// without its expectations, or an expectation left behind, cannot go unnoticed.
pub fn assert_every_log_listed(dir: &std::path::Path, listed: Vec<String>) {
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .expect("data dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".log"))
        .collect();
    logs.sort();
    assert_eq!(
        logs, listed,
        "every log listed in expected.txt, and only those"
    );
}
