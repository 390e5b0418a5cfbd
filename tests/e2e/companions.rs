//! User-space companions run in the guest: chardev's C and Rust programs drive its device and pass,
//! a companion that exits 1 fails with its output as details, and one that hangs is killed at its
//! limit and reported as a TIMEOUT, while the module is still unloaded. `parse` judges the run
//! folder again to the same verdicts.

use kmodlab::judge::verdict::Outcome;
use kmodlab_e2e::{assert_outcome, fixture, run_modules, verdict};

#[test]
fn companions_run_in_the_guest_and_are_judged() {
    let faults = fixture("companion_faults");
    let report = run_modules(&["chardev", &faults]);
    assert_eq!(report.verdicts.len(), 3);

    let chardev = verdict(&report, "chardev/read_write_ioctl");
    assert_outcome(chardev, Outcome::Pass);
    for program in ["chardev_test", "chardev_rs"] {
        for line in [
            format!("[{program}] read back: hello"),
            format!("[{program}] unknown ioctl: ENOTTY"),
            format!("[{program}] all checks passed"),
        ] {
            assert!(chardev.log.contains(&line), "{line} in {:#?}", chardev.log);
        }
        assert!(
            chardev
                .log
                .iter()
                .any(|l| l.starts_with(&format!("[program {program}] exited 0 after "))),
            "{:#?}",
            chardev.log
        );
    }

    let exits = verdict(&report, "companion_faults/exits_nonzero");
    assert_outcome(exits, Outcome::Fail);
    assert_eq!(exits.reason, "exit_one exited 1, expected 0");
    assert_eq!(
        exits.details,
        [
            "exit_one: exit_one: 2 arguments, first first",
            "exit_one: exit_one: something went wrong",
        ]
    );

    let hangs = verdict(&report, "companion_faults/hangs");
    assert_outcome(hangs, Outcome::Timeout);
    assert_eq!(hangs.reason, "program hang did not finish within 2s");
    assert!(
        hangs
            .details
            .contains(&"hang: hang: waiting forever".to_string()),
        "{:?}",
        hangs.details
    );
    // Killed, and the module still unloaded cleanly afterwards.
    assert!(
        hangs
            .log
            .iter()
            .any(|l| l.ends_with("companion_faults: unloaded")),
        "{:#?}",
        hangs.log
    );

    let parsed = kmodlab::run::parse::parse_path(&report.run_dir).expect("parse the run folder");
    let again: Vec<(String, Outcome, String)> = parsed
        .verdicts
        .iter()
        .map(|v| (v.id(), v.outcome, v.reason.clone()))
        .collect();
    let live: Vec<(String, Outcome, String)> = report
        .verdicts
        .iter()
        .map(|v| (v.id(), v.outcome, v.reason.clone()))
        .collect();
    assert_eq!(again, live);
}

/// The inline-assembly example's user-space demos (`modules/inline_asm/companions/asm_user.c`) run
/// on the host too: the same instructions must print the same results outside the guest. The
/// patterns are the spec's own `[[test.run]]` ones for `asm_user` when it has them.
#[test]
fn inline_asm_user_demos_agree_on_the_host_too() {
    let dir = kmodlab_e2e::root().join("modules/inline_asm");
    if !dir.join("companions/asm_user.c").is_file() {
        eprintln!("modules/inline_asm has no asm_user companion; nothing to run");
        return;
    }
    let spec = kmodlab::spec::load(&dir).unwrap_or_else(|e| panic!("{e:#}"));
    let built = kmodlab::build::companion::build(&spec).unwrap_or_else(|e| panic!("{e:#}"));
    let program = built
        .programs
        .iter()
        .find(|(name, _)| name == "asm_user")
        .map(|(_, path)| path.clone())
        .expect("asm_user was built");
    let output = std::process::Command::new(&program)
        .output()
        .expect("asm_user runs on the host");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "asm_user failed:\n{text}");
    let mut expect: Vec<regex::Regex> = vec![regex::Regex::new("^all demos agree$").expect("re")];
    let mut forbid: Vec<regex::Regex> = vec![regex::Regex::new("FAILED").expect("re")];
    for run in spec
        .tests
        .iter()
        .flat_map(|t| &t.run)
        .filter(|r| r.program == "asm_user")
    {
        expect.extend(run.expect.iter().cloned());
        forbid.extend(run.forbid.iter().cloned());
    }
    for pattern in &expect {
        assert!(
            text.lines().any(|l| pattern.is_match(l)),
            "/{pattern}/ not in:\n{text}"
        );
    }
    for pattern in &forbid {
        assert!(
            !text.lines().any(|l| pattern.is_match(l)),
            "/{pattern}/ in:\n{text}"
        );
    }
}
