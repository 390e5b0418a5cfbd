//! The kernel's own detectors, through kmodlab: fixtures broken on purpose in the ways the debug
//! kernel (`rust,debug`) and the KASAN kernel (`kasan`) catch each get a CRASH with the exact
//! title (a leak found by kmemleak a FAIL), a fixture that needs the other kernel SKIPs, and the passing `hello` example run after
//! them still passes: every crash costs one VM, never a verdict.

use kmodlab::cli::KernelOpts;
use kmodlab::judge::verdict::Outcome;
use kmodlab::run::RunReport;
use kmodlab_e2e::{assert_outcome, fixture, run_selection, selection, verdict};

/// Runs modules (names under modules/, or fixture paths) on the kernel built from `base` plus
/// `fragments`, as `cargo xtask test --kernel-config ...` does.
fn run_on_kernel(fragments: &[&str], names: &[String]) -> RunReport {
    let selection = selection(names);
    let kernel = KernelOpts {
        kernel_config: fragments.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    run_selection(selection, &kernel)
}

/// Asserts a CRASH whose title is exactly `title`.
fn assert_crash(report: &RunReport, id: &str, title: &str) {
    let v = verdict(report, id);
    assert_outcome(v, Outcome::Crash);
    assert_eq!(
        v.reason,
        title,
        "{id}: crash title\nkernel log:\n{}",
        v.log.join("\n")
    );
}

/// What each fixture is expected to give: (fixture, test, title).
const DEBUG_CRASHES: &[(&str, &str, &str)] = &[
    (
        "sleep_atomic",
        "allocates_under_lock",
        "BUG: sleeping function called from invalid context in sleep_atomic_alloc_locked",
    ),
    (
        "null_init",
        "dereferences_null",
        "BUG: kernel NULL pointer dereference in null_init_store",
    ),
    (
        "lock_order",
        "inverts_lock_order",
        "possible deadlock in lock_order_take_ba",
    ),
    (
        "exit_pending_work",
        "frees_pending_work",
        "WARNING: ODEBUG bug in exit_pending_work_free",
    ),
    (
        "ktap_crash",
        "crashes_mid_document",
        "BUG: kernel NULL pointer dereference in ktap_crash_case3",
    ),
    // These two need the watchdog thresholds on the kernel command line (docs/RELIABILITY.md):
    // with the defaults the RCU stall can win the race against the soft lockup, and the hung
    // task is only reported after 120 s.
    (
        "soft_lockup",
        "spins",
        "BUG: soft lockup in soft_lockup_spin",
    ),
    (
        "hung_task",
        "blocks_in_d_state",
        "INFO: task hung in hung_task_wait_ready",
    ),
];

#[test]
fn debug_kernel_detectors_each_give_their_crash_and_the_run_recovers() {
    let mut names: Vec<String> = DEBUG_CRASHES.iter().map(|(f, _, _)| fixture(f)).collect();
    names.push(fixture("kasan_uaf"));
    // kmemleak: a FAIL that does not end the VM, found by the scan after the last test.
    names.push(fixture("leak_init"));
    names.push("hello".to_string());
    let report = run_on_kernel(&["rust", "debug"], &names);
    let leak = verdict(&report, "leak_init/leaks_init_buffer");
    assert_outcome(leak, Outcome::Fail);
    assert_eq!(leak.reason, "memory leak in leak_init_alloc");

    for (module, test, title) in DEBUG_CRASHES {
        assert_crash(&report, &format!("{module}/{test}"), title);
    }
    // The KASAN fixture needs the other kernel: a SKIP that names the option.
    let kasan = verdict(&report, "kasan_uaf/reads_freed_object");
    assert_outcome(kasan, Outcome::Skip);
    assert!(
        kasan.reason.contains("CONFIG_KASAN_GENERIC"),
        "the missing option is named: {}",
        kasan.reason
    );
    // Recovery: the example after the crashes still passes.
    assert_outcome(verdict(&report, "hello/greets"), Outcome::Pass);
    // Exactly one verdict per requested test; every crash ends its VM and the next test gets
    // a fresh one, so hello runs in VM number crashes + 1.
    assert_eq!(report.verdicts.len(), names.len(), "one verdict per test");
    assert!(
        report.vms as usize > DEBUG_CRASHES.len(),
        "each crash ends its VM and hello gets a fresh one: {} VMs",
        report.vms
    );
}

#[test]
fn kasan_kernel_reports_a_use_after_free_and_the_run_recovers() {
    // `kasan` alone: Rust and KASAN exclude each other in a GCC-built 6.12 (kasan.config).
    let names = [
        fixture("kasan_uaf"),
        fixture("lock_order"),
        fixture("null_init"),
        "hello".to_string(),
    ];
    let report = run_on_kernel(&["kasan"], &names);

    assert_crash(
        &report,
        "kasan_uaf/reads_freed_object",
        "KASAN: slab-use-after-free Read in kasan_uaf_read_late",
    );
    // With KASAN's inline checks, the shadow lookup for address 8 faults first, on a
    // non-canonical address: the same bug is a general protection fault on this kernel.
    assert_crash(
        &report,
        "null_init/dereferences_null",
        "general protection fault in null_init_store",
    );
    let lockdep = verdict(&report, "lock_order/inverts_lock_order");
    assert_outcome(lockdep, Outcome::Skip);
    assert!(
        lockdep.reason.contains("CONFIG_PROVE_LOCKING"),
        "the missing option is named: {}",
        lockdep.reason
    );
    assert_outcome(verdict(&report, "hello/greets"), Outcome::Pass);
    assert_eq!(report.verdicts.len(), names.len(), "one verdict per test");
    assert!(
        report.vms >= 3,
        "each crash ends its VM: {} VMs",
        report.vms
    );
}
