//! Crash titles over the logs in `tests/data/oops/`, checked against `expected.txt` there.
//! Adding a captured log is one file plus one line per crash it holds.

use kmodlab::judge::oops::{first, scan};
use kmodlab_protocol::ktap::strip_timestamp;
use std::collections::BTreeMap;
use std::path::PathBuf;

mod corpus;

fn data_dir() -> PathBuf {
    corpus::data_dir("oops")
}

/// file -> [(class, title)], from `expected.txt`.
fn expectations() -> BTreeMap<String, Vec<(String, String)>> {
    let text = std::fs::read_to_string(data_dir().join("expected.txt")).expect("expected.txt");
    let mut map: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(3, '|').map(str::trim).collect();
        assert_eq!(
            fields.len(),
            3,
            "expected.txt:{}: want `file | class | title`",
            n + 1
        );
        let crashes = map.entry(fields[0].to_string()).or_default();
        if fields[1] != "none" {
            crashes.push((fields[1].to_string(), fields[2].to_string()));
        }
    }
    map
}

#[test]
fn every_log_has_its_expected_crashes() {
    let expected = expectations();
    corpus::assert_every_log_listed(&data_dir(), expected.keys().cloned().collect());

    for (file, want) in &expected {
        let text = std::fs::read_to_string(data_dir().join(file)).expect("log");
        let lines: Vec<&str> = text.lines().collect();
        let crashes = scan(&lines);
        let got: Vec<(String, String)> = crashes
            .iter()
            .map(|c| (c.class.to_string(), c.title.clone()))
            .collect();
        assert_eq!(&got, want, "{file}");
        assert_eq!(
            first(&lines),
            crashes.first().cloned(),
            "{file}: first() agrees with scan()"
        );
        for crash in &crashes {
            let marker = strip_timestamp(lines[crash.line]).trim_end();
            assert!(
                crash.report.iter().any(|l| l == marker),
                "{file}: report holds its marker line"
            );
            assert!(
                crash.report.len() <= kmodlab::judge::oops::REPORT_LINES + 4,
                "{file}: report is bounded"
            );
        }
    }
}

#[test]
fn titles_do_not_depend_on_timestamps() {
    // The agent's kmsg records carry no timestamp; the console does. Both must give one title.
    for (file, want) in expectations() {
        let text = std::fs::read_to_string(data_dir().join(&file)).expect("log");
        let bare: Vec<&str> = text.lines().map(strip_timestamp).collect();
        let got: Vec<(String, String)> = scan(&bare)
            .into_iter()
            .map(|c| (c.class.to_string(), c.title))
            .collect();
        assert_eq!(got, want, "{file} without timestamps");
    }
}

/// A module's own functions are never mistaken for kernel plumbing, whatever they are called: the
/// lockdep capture again, with the module renamed so that its functions look like lockdep's own.
#[test]
fn module_frames_are_never_skipped_as_infrastructure() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/oops");
    let log = std::fs::read_to_string(dir.join("captured_lock_order.log")).expect("capture");
    let renamed = log.replace("lock_order", "lockdep_abba");
    let lines: Vec<&str> = renamed.lines().collect();
    let crash = kmodlab::judge::oops::first(&lines).expect("the deadlock report");
    assert_eq!(crash.title, "possible deadlock in lockdep_abba_take_ba");
}
