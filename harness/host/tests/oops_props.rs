//! Properties of crash scanning: arbitrary input never panics; a real report cut short or mixed
//! with other kernel messages is still found, as the same kind of crash.

use kmodlab::judge::oops::{first, scan, CrashClass};
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The crash logs of `tests/data/oops/`, read once.
fn corpus() -> &'static Vec<Vec<String>> {
    static LOGS: OnceLock<Vec<Vec<String>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/oops");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("data dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .expect("log")
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    })
}

fn classes(lines: &[&str]) -> Vec<CrashClass> {
    scan(lines).into_iter().map(|c| c.class).collect()
}

/// Lines near the markers' vocabulary, so the matching code is really exercised.
fn crash_ish_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "(BUG|WARNING|INFO|Oops|Kernel panic - not syncing|kernel BUG at|UBSAN|RIP|pc) ?:? ?.{0,20}",
        "WARNING: CPU: [0-9] PID: [0-9]{1,3} at [a-z.:0-9]{0,8} ?[a-z_]{0,6}(\\+0x[0-9a-f]{1,3}/0x[0-9a-f]{1,3})?",
        " (\\? )?[a-z_.]{0,8}\\+0x[0-9a-f]{0,3}/0x[0-9a-f]{0,3}( \\[[a-z]{0,4}\\]?)?",
        "---\\[ end (trace|Kernel panic).{0,10}",
        "={0,30}",
        "[a-z_]{0,8}: panicked at .{0,12}",
        ".{0,40}",
        any::<String>(),
    ]
}

/// Kernel messages that are not markers.
fn noise() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "random: crng init done",
        "[    9.000000] demo: still running",
        "ok 1 - unrelated_result",
        "    # diagnostic line",
        "",
        "virtio_blk virtio0: [vda] 2048 512-byte logical blocks",
    ])
    .prop_map(str::to_string)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn nothing_panics_on_arbitrary_lines(lines in prop::collection::vec(crash_ish_line(), 0..50)) {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let all = scan(&lines);
        prop_assert_eq!(first(&lines), all.first().cloned());
        for crash in &all {
            prop_assert!(crash.line < lines.len());
            prop_assert!(!crash.title.is_empty());
        }
    }

    #[test]
    fn a_cut_report_keeps_its_class(pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let logs = corpus();
        let log: Vec<&str> = pick.get(logs).iter().map(String::as_str).collect();
        let whole = scan(&log);
        let cut = cut.index(log.len() + 1);
        let part = scan(&log[..cut]);
        match whole.first() {
            Some(crash) if cut > crash.line => {
                prop_assert_eq!(part.first().map(|c| c.class), Some(crash.class));
                prop_assert_eq!(part.first().map(|c| c.line), Some(crash.line));
            }
            // Nothing before the first marker is a crash.
            _ => prop_assert!(part.is_empty()),
        }
    }

    #[test]
    fn noise_between_lines_changes_no_class(
        pick in any::<prop::sample::Index>(),
        inserts in prop::collection::vec((any::<prop::sample::Index>(), noise()), 0..10),
    ) {
        let logs = corpus();
        let log = pick.get(logs);
        let mut mixed: Vec<String> = log.clone();
        let mut inserts = inserts;
        // Insert from the end so earlier positions stay meaningful.
        inserts.sort_by_key(|(at, _)| std::cmp::Reverse(at.index(log.len() + 1)));
        for (at, line) in inserts {
            mixed.insert(at.index(log.len() + 1), line);
        }
        let original: Vec<&str> = log.iter().map(String::as_str).collect();
        let mixed: Vec<&str> = mixed.iter().map(String::as_str).collect();
        prop_assert_eq!(classes(&mixed), classes(&original));
    }
}
