//! KTAP parsing over the logs in `tests/data/ktap/`, checked against `expected.txt` there.
//! Adding a captured log is one file plus one line per top-level document it holds.

use kmodlab::judge::ktap::{parse, Document};
use kmodlab_protocol::ktap::{classify, Completion, Line};
use std::collections::BTreeMap;
use std::path::PathBuf;

mod corpus;

fn data_dir() -> PathBuf {
    corpus::data_dir("ktap")
}

/// One document as `expected.txt` writes it.
fn summary(doc: &Document) -> String {
    let state = if doc.complete {
        "complete"
    } else {
        "incomplete"
    };
    let c = doc.counts();
    let failures: Vec<String> = doc
        .failures()
        .iter()
        .map(|f| format!("{}: {}", f.path, f.reason))
        .collect();
    let failures = if failures.is_empty() {
        "-".to_string()
    } else {
        failures.join(" ;; ")
    };
    format!(
        "{state} | {} {} {} | {failures}",
        c.passed, c.failed, c.skipped
    )
}

fn expectations() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(data_dir().join("expected.txt")).expect("expected.txt");
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (file, rest) = line.split_once('|').expect("`file | ...`");
        map.entry(file.trim().to_string())
            .or_default()
            .push(rest.trim().to_string());
    }
    map
}

fn read(file: &str) -> String {
    std::fs::read_to_string(data_dir().join(file)).expect("log")
}

#[test]
fn every_log_parses_as_expected() {
    let expected = expectations();
    corpus::assert_every_log_listed(&data_dir(), expected.keys().cloned().collect());
    for (file, want) in &expected {
        let got: Vec<String> = parse(read(file).lines()).iter().map(summary).collect();
        assert_eq!(&got, want, "{file}");
    }
}

#[test]
fn the_agent_and_the_host_agree_on_completeness() {
    // The agent feeds the lines logged after a load; the last document starts at the last
    // unindented version line.
    for file in expectations().keys() {
        let text = read(file);
        let lines: Vec<&str> = text.lines().collect();
        let start = lines
            .iter()
            .rposition(|l| matches!(classify(l), Line::Version { indent: 0, .. }))
            .expect("a version line");
        let mut completion = Completion::new();
        for line in &lines[start..] {
            completion.feed(line);
        }
        let last = parse(lines.iter().copied()).pop().expect("a document");
        assert_eq!(completion.is_complete(), last.complete, "{file}");
    }
}
