//! `--jobs 2`: two VMs at once, and still one verdict per test in the requested order, a crash
//! charged to its own test, VM labels unique across the workers, and no QEMU left behind.

use kmodlab::judge::verdict::Outcome;
use kmodlab::run::{self, Isolation, RunEvent, RunOptions, RunReport};
use kmodlab_e2e::{agent, assert_outcome, fixture, options_for, print_report, selection};

/// Runs `names` with `jobs` VMs at once; the report and the verdicts as the listener heard them.
fn run_parallel(names: &[String], jobs: u32, isolation: Isolation) -> (RunReport, Vec<String>) {
    let options = RunOptions {
        jobs,
        isolation: Some(isolation),
        ..options_for(selection(names), &Default::default(), agent())
    };
    let mut told = Vec::new();
    let report = run::run(&options, &mut |event| match event {
        RunEvent::Verdict(v) => told.push(v.id()),
        RunEvent::Notice(text) => println!("notice: {text}"),
        _ => {}
    })
    .unwrap_or_else(|e| panic!("running {names:?}: {e:#}"));
    print_report(&report);
    (report, told)
}

/// QEMU processes of the run in `run_dir` (their initramfs lies there) that are still there. Other
/// tests of this binary run their own VMs meanwhile, so the run's folder tells ours apart.
fn qemu_left(run_dir: &std::path::Path) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-a", "-f", &format!("qemu-system.*{}/", run_dir.display())])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const REQUESTED: &[&str] = &[
    "hello/greets",
    "params/good_values",
    "params/unknown_param_ignored",
    "params/refuses_a_bad_level",
    "params/refuses_a_long_label",
    "warn_init/warns",
    "workqueue/runs_and_tears_down",
    "timer/fires_and_rearms",
];

fn names() -> Vec<String> {
    vec![
        "hello".to_string(),
        "params".to_string(),
        fixture("warn_init"),
        "workqueue".to_string(),
        "timer".to_string(),
    ]
}

/// Both ways of sharing the work, one after the other (two runs at once would build the same
/// module folders at once).
#[test]
fn two_vms_at_once_keep_the_order_and_charge_the_crash_to_its_test() {
    each_group_to_its_worker();
    workers_share_a_queue_of_fresh_vms();
}

/// `--isolate all`: the tests cut into two groups, one per worker.
fn each_group_to_its_worker() {
    let (report, told) = run_parallel(&names(), 2, Isolation::All);

    // One verdict per requested test, told and kept in the requested order.
    let kept: Vec<String> = report.verdicts.iter().map(|v| v.id()).collect();
    assert_eq!(kept, REQUESTED);
    assert_eq!(told, REQUESTED);

    let warn = &report.verdicts[5];
    assert_outcome(warn, Outcome::Crash);
    assert_eq!(warn.reason, "WARNING in warn_init_trigger");
    for v in report.verdicts.iter().filter(|v| v.module != "warn_init") {
        assert_outcome(v, Outcome::Pass);
    }
    // Two groups of four; the crash ends its VM and the tests after it run in a fresh one.
    assert!(report.vms >= 3, "{} VMs", report.vms);
    for vm in 1..=report.vms {
        let console = report.run_dir.join(format!("vm{vm}.console.log"));
        assert!(console.is_file(), "{} is missing", console.display());
    }
    assert_eq!(qemu_left(&report.run_dir), "", "QEMU left behind");
}

/// `--isolate test`: the workers take the next test from a queue, each in a fresh VM.
fn workers_share_a_queue_of_fresh_vms() {
    let (report, told) = run_parallel(&names(), 2, Isolation::Test);

    let kept: Vec<String> = report.verdicts.iter().map(|v| v.id()).collect();
    assert_eq!(kept, REQUESTED);
    assert_eq!(told, REQUESTED);
    assert_outcome(&report.verdicts[5], Outcome::Crash);
    for v in report.verdicts.iter().filter(|v| v.module != "warn_init") {
        assert_outcome(v, Outcome::Pass);
    }
    // A VM per test, each with its own label and files.
    assert_eq!(report.vms as usize, REQUESTED.len());
    for vm in 1..=report.vms {
        let events = report.run_dir.join(format!("vm{vm}.events.jsonl"));
        assert!(events.is_file(), "{} is missing", events.display());
    }
    assert_eq!(qemu_left(&report.run_dir), "", "QEMU left behind");
}
