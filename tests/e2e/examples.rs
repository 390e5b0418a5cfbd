//! The example modules pass, each test of each spec: every folder under modules/, in one run, as
//! `cargo xtask test` runs them (by default, each test in a VM restored from the kernel's snapshot).

use kmodlab::judge::verdict::Outcome;
use kmodlab::spec;
use kmodlab_e2e::{assert_outcome, root, run_modules_isolated};

#[test]
fn every_example_passes_in_one_run() {
    let examples = spec::discover(&root().join("modules")).expect("modules");
    assert!(examples.len() >= 3, "the examples are found");
    let report = run_modules_isolated(&[], None);
    let expected: usize = examples
        .iter()
        .map(|dir| spec::load(dir).map_or(0, |s| s.tests.len()))
        .sum();
    assert!(
        expected >= examples.len(),
        "each example has at least one test"
    );
    assert_eq!(report.verdicts.len(), expected, "one verdict per test");
    for verdict in &report.verdicts {
        assert_outcome(verdict, Outcome::Pass);
    }
    // The console log, the agent's events and the QEMU command line are kept.
    for file in [
        "vm1.console.log",
        "vm1.events.jsonl",
        "vm1.qemu.txt",
        "verdicts.json",
    ] {
        let path = report.run_dir.join(file);
        assert!(path.is_file(), "{} is missing", path.display());
    }
    let events = std::fs::read_to_string(report.run_dir.join("vm1.events.jsonl")).expect("events");
    for line in events.lines() {
        assert!(
            kmodlab_protocol::Event::from_line(line).is_ok(),
            "not an agent event: {line}"
        );
    }
}
