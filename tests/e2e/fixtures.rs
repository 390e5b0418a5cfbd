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
