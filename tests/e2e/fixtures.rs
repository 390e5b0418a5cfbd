//! Modules broken on purpose get the verdict their fault deserves, and a passing module run after
//! them still passes: one crash or timeout costs one VM, never the rest of the run.

use kmodlab::judge::verdict::Outcome;
use kmodlab_e2e::{assert_outcome, fixture, run_modules, verdict};

#[test]
fn each_fault_gets_its_verdict_and_the_run_recovers() {
    let names = [
        fixture("ktap_fail"),
        fixture("warn_init"),
        fixture("init_hang"),
        fixture("init_enodev"),
        fixture("log_flood"),
        "hello".to_string(),
    ];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let report = run_modules(&names);

    let ktap = report
        .verdicts
        .iter()
        .find(|v| v.module == "ktap_fail")
        .expect("ktap_fail verdict");
    assert_outcome(ktap, Outcome::Fail);
    assert!(
        ktap.reason.contains("arithmetic_is_broken"),
        "the failed case is named: {}",
        ktap.reason
    );

    let warn = report
        .verdicts
        .iter()
        .find(|v| v.module == "warn_init")
        .expect("warn_init verdict");
    assert_outcome(warn, Outcome::Crash);
    assert_eq!(warn.reason, "WARNING in warn_init_trigger");

    let hang = report
        .verdicts
        .iter()
        .find(|v| v.module == "init_hang")
        .expect("init_hang verdict");
    assert_outcome(hang, Outcome::Timeout);
    assert!(
        hang.reason.starts_with("load:"),
        "the phase is named: {}",
        hang.reason
    );

    let enodev = report
        .verdicts
        .iter()
        .find(|v| v.module == "init_enodev")
        .expect("init_enodev verdict");
    assert_outcome(enodev, Outcome::Error);
    assert_eq!(enodev.errno, Some(19), "ENODEV: {}", enodev.reason);
    assert!(enodev.reason.contains("ENODEV"), "{}", enodev.reason);

    // A log that outruns the serial line must not keep a finished load or unload from ending.
    let flood = verdict(&report, "log_flood/loud_but_correct");
    assert_outcome(flood, Outcome::Pass);

    for v in report.verdicts.iter().filter(|v| v.module == "hello") {
        assert_outcome(v, Outcome::Pass);
    }
    let _ = verdict(&report, "hello/greets");
    // Exactly one verdict per requested test, and the crash and the timeout each cost a VM.
    assert_eq!(report.verdicts.len(), 6);
    assert!(
        report.vms >= 3,
        "crash and timeout end their VMs: {} VMs",
        report.vms
    );
}

/// An init that returns a positive value is loaded anyway by a kernel that warns about it: a FAIL
/// with its own title, and the kernel, unharmed, judges the next test in the same VM.
#[test]
fn a_positive_init_return_fails_and_the_vm_goes_on() {
    let init_positive = fixture("init_positive");
    let report = run_modules(&[&init_positive, "hello"]);

    let positive = verdict(&report, "init_positive/returns_one");
    assert_outcome(positive, Outcome::Fail);
    assert_eq!(
        positive.reason,
        "init returned 1 (positive; the kernel expects 0 or -errno) in init_positive"
    );
    for v in report.verdicts.iter().filter(|v| v.module == "hello") {
        assert_outcome(v, Outcome::Pass);
    }
    assert_eq!(report.vms, 1, "a FAIL does not cost a VM");
    println!("run folder: {}", report.run_dir.display());
}

/// What each module leaves behind at unload, and what it gets: (fixture, test, title).
const LEFT_BEHIND: &[(&str, &str, &str)] = &[
    (
        "unload_timer",
        "leaves_timer_armed",
        "use after unload in unload_timer: timer callback unload_timer_tick",
    ),
    (
        "unload_delayed_work",
        "leaves_work_queued",
        "use after unload in unload_delayed_work: work item unload_delayed_work_poll",
    ),
    (
        "unload_tasklet",
        "leaves_tasklet_scheduled",
        "use after unload in unload_tasklet: tasklet unload_tasklet_run",
    ),
    ("proc_left", "leaves_proc_entry", "WARNING in proc_register"),
    (
        "double_destroy_wq",
        "destroys_wq_twice",
        "general protection fault in double_destroy_wq_teardown",
    ),
];

/// A timer, work item or tasklet left behind fires into freed code after the unload, within the
/// after-unload watch: a CRASH for the test that loaded the module, titled as the use after
/// unload it is, never for the correct example run right after it (each one gets a fresh VM and
/// passes). A /proc entry left behind collides with the second load.
#[test]
fn what_a_module_leaves_behind_is_its_own_crash_and_the_next_test_passes() {
    let correct = ["hello", "timer", "tasklet", "workqueue", "delayed_work"];
    let mut names = Vec::new();
    for ((name, _, _), next) in LEFT_BEHIND.iter().zip(correct) {
        names.push(fixture(name));
        names.push(next.to_string());
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let report = run_modules(&names);

    for (name, test, title) in LEFT_BEHIND {
        let v = verdict(&report, &format!("{name}/{test}"));
        assert_outcome(v, Outcome::Crash);
        assert_eq!(
            v.reason,
            *title,
            "{name}: kernel log:\n{}",
            v.log.join("\n")
        );
    }
    let proc_left = verdict(&report, "proc_left/leaves_proc_entry");
    assert!(
        proc_left
            .details
            .iter()
            .any(|d| d.contains("the first unload left something behind")),
        "the reload is named: {:?}",
        proc_left.details
    );
    for name in correct {
        for v in report.verdicts.iter().filter(|v| v.module == name) {
            assert_outcome(v, Outcome::Pass);
        }
    }
    assert_eq!(report.verdicts.len(), names.len(), "one verdict per test");
    // `parse` of the run folder titles each one as the run did.
    let parsed = kmodlab::run::parse::parse_path(&report.run_dir).expect("parse the run folder");
    let told = |verdicts: &[kmodlab::judge::verdict::Verdict]| -> Vec<(String, Outcome, String)> {
        verdicts
            .iter()
            .map(|v| (v.id(), v.outcome, v.reason.clone()))
            .collect()
    };
    assert_eq!(told(&parsed.verdicts), told(&report.verdicts));
    println!("run folder: {}", report.run_dir.display());
}
