//! Boot once, restore many: a run saves a snapshot when it has none, later runs restore it, and a
//! snapshot that is gone, corrupt, truncated, saved with another agent, or that QEMU cannot load
//! costs a boot, never a verdict, and the run says why it did not restore.
//!
//! The test runs its VMs with 288 MB and a copy of the agent of its own: its snapshot slot is
//! one no other test of this binary uses, so breaking it on purpose disturbs nobody else.

use kmodlab::guest::vm::Accelerator;
use kmodlab::judge::verdict::Outcome;
use kmodlab::run::{self, RunEvent, RunOptions, RunReport};
use kmodlab_e2e::{agent, assert_outcome, context, options_for, print_report, selection, verdict};
use std::path::{Path, PathBuf};

const MEMORY_MB: u32 = 288;

/// What one run of `hello` said: its report, its notices, and how many VMs were restored.
struct Said {
    report: RunReport,
    notices: Vec<String>,
    restored: usize,
    booted: usize,
    accel: Option<Accelerator>,
}

fn run_hello(agent: &Path, snapshots: bool) -> Said {
    let options = RunOptions {
        memory_mb: MEMORY_MB,
        snapshots,
        ..options_for(
            selection(&["hello"]),
            &Default::default(),
            agent.to_path_buf(),
        )
    };
    let (mut notices, mut restored, mut booted, mut accel) = (vec![], 0, 0, None);
    let report = run::run(&options, &mut |event| match event {
        RunEvent::Notice(text) => {
            println!("notice: {text}");
            notices.push(text.clone());
        }
        RunEvent::VmStarted { restored: true, .. } => restored += 1,
        RunEvent::VmStarted {
            restored: false, ..
        } => booted += 1,
        RunEvent::Accelerator { accel: a, .. } => accel = Some(*a),
        _ => {}
    })
    .unwrap_or_else(|e| panic!("running hello: {e:#}"));
    print_report(&report);
    for v in &report.verdicts {
        assert_outcome(v, Outcome::Pass);
    }
    assert_outcome(verdict(&report, "hello/greets"), Outcome::Pass);
    Said {
        report,
        notices,
        restored,
        booted,
        accel,
    }
}

/// The slot this test's VM shape uses with `accel`.
fn slot(accel: Accelerator) -> PathBuf {
    let ctx = context();
    let request =
        kmodlab::cli::kernel_request(&Default::default(), &ctx).unwrap_or_else(|e| panic!("{e:#}"));
    let kernel = kmodlab::kernel::ensure(&request).unwrap_or_else(|e| panic!("{e:#}"));
    kmodlab::guest::snapshot::slot(&kernel, accel, MEMORY_MB, 2).unwrap_or_else(|e| panic!("{e:#}"))
}

fn meta(slot: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(slot.join("meta.json")).expect("meta.json after a save");
    serde_json::from_str(&text).expect("meta.json parses")
}

fn state(slot: &Path) -> PathBuf {
    slot.join(meta(slot)["state"].as_str().expect("a state file name"))
}

fn said(said: &Said, words: &str) -> bool {
    said.notices.iter().any(|n| n.contains(words))
}

#[test]
fn a_missing_broken_or_stale_snapshot_costs_a_boot_and_says_why() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let own_agent = scratch.path().join("kmodlab-agent");
    std::fs::copy(agent(), &own_agent).expect("copying the agent");
    for accel in [Accelerator::Kvm, Accelerator::Tcg] {
        kmodlab::guest::snapshot::remove(&slot(accel));
    }

    // None yet: saved in the background of this run, and this run's VM restores it.
    let first = run_hello(&own_agent, true);
    let slot = slot(first.accel.expect("the run names its accelerator"));
    assert!(
        said(&first, "no snapshot of this kernel and VM shape yet"),
        "{:?}",
        first.notices
    );
    assert_eq!((first.restored, first.booted), (1, 0));

    // Whole and current: restored without a word.
    let second = run_hello(&own_agent, true);
    assert!(
        second.notices.iter().all(|n| !n.contains("snapshot")),
        "{:?}",
        second.notices
    );
    assert_eq!((second.restored, second.booted), (1, 0));

    // Turned off: booted.
    let off = run_hello(&own_agent, false);
    assert_eq!((off.restored, off.booted), (0, 1));

    // A byte changed in the middle of the saved state: found out before QEMU reads it.
    let path = state(&slot);
    let mut bytes = std::fs::read(&path).expect("the state");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&path, &bytes).expect("corrupting the state");
    let corrupt = run_hello(&own_agent, true);
    assert!(
        said(&corrupt, "is corrupt (CRC-32"),
        "{:?}",
        corrupt.notices
    );
    assert_eq!(corrupt.restored, 1, "a new snapshot is saved and restored");

    // Cut short.
    let path = state(&slot);
    let len = std::fs::metadata(&path).expect("the state").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len / 3))
        .expect("truncating the state");
    let truncated = run_hello(&own_agent, true);
    assert!(said(&truncated, "is truncated"), "{:?}", truncated.notices);

    // Deleted.
    std::fs::remove_file(state(&slot)).expect("deleting the state");
    let deleted = run_hello(&own_agent, true);
    assert!(said(&deleted, "cannot be read"), "{:?}", deleted.notices);

    // Another agent.
    let mut grown = std::fs::read(&own_agent).expect("the agent");
    grown.extend_from_slice(b"\0upgraded");
    std::fs::write(&own_agent, grown).expect("changing the agent");
    let upgraded = run_hello(&own_agent, true);
    assert!(
        said(&upgraded, "the agent changed since the snapshot was saved"),
        "{:?}",
        upgraded.notices
    );
    assert_eq!(upgraded.restored, 1);

    // A state that is whole by its checksum but that QEMU cannot load: the VM boots instead,
    // and the snapshot is forgotten so that the next run saves a new one.
    let path = state(&slot);
    let garbage = b"not a migration stream".repeat(1000);
    std::fs::write(&path, &garbage).expect("replacing the state");
    let mut meta = meta(&slot);
    meta["state_len"] = garbage.len().into();
    meta["state_crc32"] = crc32fast::hash(&garbage).into();
    std::fs::write(slot.join("meta.json"), meta.to_string()).expect("rewriting meta.json");
    let unloadable = run_hello(&own_agent, true);
    assert!(
        said(&unloadable, "restoring the snapshot failed")
            && said(&unloadable, "QEMU said: qemu-system-x86_64: "),
        "{:?}",
        unloadable.notices
    );
    assert_eq!((unloadable.restored, unloadable.booted), (1, 1));
    assert!(
        said(&unloadable, "guest did not boot"),
        "{:?}",
        unloadable.notices
    );
    assert!(!slot.join("meta.json").exists());
    let again = run_hello(&own_agent, true);
    assert!(
        said(&again, "no snapshot of this kernel"),
        "{:?}",
        again.notices
    );
    assert_eq!(again.restored, 1);
    drop(again.report);
}
