//! The machine-readable reports of a real run, read by readers that share no code with kmodlab
//! (Python's xml.etree and json, junitparser when installed, the kernel's own kunit.py), and
//! `parse` on the run folder the run left, which must judge it the same way.

use kmodlab::cli::EXIT_FAIL;
use kmodlab_e2e::{context, fixture, kmodlab, root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One of the Python readers in harness/host/tests/data/readers; its stdout.
fn python(reader: &str, file: &Path) -> String {
    let script = root().join("harness/host/tests/data/readers").join(reader);
    let out = Command::new("python3")
        .arg(script)
        .arg(file)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{reader} rejected {}:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `id OUTCOME reason` per verdict, and the counts line, as Python's json module read them.
fn json_lines(file: &Path) -> Vec<String> {
    python("json_read.py", file)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn junit_json_and_parse_tell_the_same_story_as_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("run.xml");
    let json = dir.path().join("run.json");
    let runs = dir.path().join("runs");
    let (ktap_fail, warn_init) = (fixture("ktap_fail"), fixture("warn_init"));
    let path = |p: &Path| p.display().to_string();
    let code = kmodlab(&[
        "test",
        "hello",
        &ktap_fail,
        &warn_init,
        "--no-setup",
        // The KTAP view's wiring in `test`; the document itself is read back in
        // harness/host/tests/report_formats.rs, where stdout can be captured.
        "--format",
        "ktap",
        "--junit",
        &path(&junit),
        "--json",
        &path(&json),
        "--runs-dir",
        &path(&runs),
    ]);
    assert_eq!(code, EXIT_FAIL);

    let from_json = json_lines(&json);
    assert_eq!(
        from_json,
        [
            "hello/greets PASS",
            "ktap_fail/reports_not_ok FAIL not ok 2 arithmetic_is_broken: check failed: 2 + delta == 4 (ktap_fail.c:21)",
            "warn_init/warns CRASH WARNING in warn_init_trigger",
            "counts: 1 2 0",
        ]
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON")).expect("JSON");
    let run_folder = PathBuf::from(report["run_folder"].as_str().expect("run folder"));
    assert!(run_folder.starts_with(&runs), "{}", run_folder.display());
    assert!(report["kernel_release"]
        .as_str()
        .is_some_and(|r| r.starts_with("6.12")));
    assert!(report["vms"].as_u64().is_some_and(|n| n >= 1));

    let read: serde_json::Value =
        serde_json::from_str(&python("junit_read.py", &junit)).expect("reader's JSON");
    let from_junit: Vec<String> = read["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c["id"].as_str().unwrap_or(""),
                c["outcome"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
            .trim_end()
            .to_string()
        })
        .collect();
    assert_eq!(from_junit, from_json[..3]);
    assert_eq!(
        read["totals"],
        serde_json::json!({"tests": 3, "failures": 2, "errors": 0, "skipped": 0})
    );
    if let Some(other) = read["junitparser"].as_array() {
        assert_eq!(other.len(), 3);
        assert_eq!(other[2]["outcome"], "CRASH");
    }

    // `parse` on the run folder judges the recorded events again, to the same verdicts.
    let parsed = kmodlab::run::replay::run_folder(&run_folder).expect("the run folder parses");
    let again: Vec<String> = parsed
        .verdicts
        .iter()
        .map(|v| {
            format!("{} {} {}", v.id(), v.outcome.label(), v.reason)
                .trim_end()
                .to_string()
        })
        .collect();
    assert_eq!(again, from_json[..3]);
    let json_again = dir.path().join("parsed.json");
    assert_eq!(
        kmodlab(&["parse", &path(&run_folder), "--json", &path(&json_again)]),
        EXIT_FAIL
    );
    assert_eq!(json_lines(&json_again), from_json);

    // The kernel's own KTAP reader, from the source tree this kernel was built from.
    let request = kmodlab::cli::kernel_request(&Default::default(), &context()).expect("request");
    let kernel = kmodlab::kernel::cached(&request)
        .expect("kernel cache")
        .expect("the run built the kernel");
    let kunit = kernel.source_dir.join("tools/testing/kunit/kunit.py");
    let ktap = dir.path().join("run.ktap");
    std::fs::write(
        &ktap,
        kmodlab::report::ktap::document(&parsed.verdicts, false),
    )
    .expect("write KTAP");
    let out = Command::new("python3")
        .arg(&kunit)
        .arg("parse")
        .arg(&ktap)
        .current_dir(dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("kunit.py runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Ran 3 tests: passed: 1, failed: 2"),
        "kunit.py parse said:\n{said}"
    );
}

/// The three ways to judge one run must agree: the verdicts `test` gave live, `parse` of the run
/// folder (the recorded events, replayed through the same session loop), and `parse` of each VM's
/// console log alone (no events, no spec), which must find every crash with the same title.
#[test]
fn live_verdicts_a_replayed_folder_and_the_console_logs_give_the_same_titles() {
    let (warn_init, null_init) = (fixture("warn_init"), fixture("null_init"));
    let report = kmodlab_e2e::run_modules(&["hello", &warn_init, &null_init]);
    let live: Vec<(String, String, String)> = report
        .verdicts
        .iter()
        .map(|v| (v.id(), v.outcome.label().to_string(), v.reason.clone()))
        .collect();
    let crash_titles = |verdicts: &[kmodlab::judge::verdict::Verdict]| {
        let mut titles: Vec<String> = verdicts
            .iter()
            .filter(|v| v.outcome == kmodlab::judge::verdict::Outcome::Crash)
            .map(|v| v.reason.clone())
            .collect();
        titles.sort();
        titles
    };
    let live_titles = crash_titles(&report.verdicts);
    assert_eq!(
        live_titles,
        [
            "BUG: kernel NULL pointer dereference in null_init_store",
            "WARNING in warn_init_trigger"
        ],
        "{live:#?}"
    );

    let replayed =
        kmodlab::run::replay::run_folder(&report.run_dir).expect("the run folder parses");
    let again: Vec<(String, String, String)> = replayed
        .verdicts
        .iter()
        .map(|v| (v.id(), v.outcome.label().to_string(), v.reason.clone()))
        .collect();
    assert_eq!(again, live);

    let mut from_consoles = Vec::new();
    for vm in 1..=report.vms {
        let console = report.run_dir.join(format!("vm{vm}.console.log"));
        let parsed = kmodlab::run::parse::parse_path(&console).expect("the console log parses");
        from_consoles.extend(parsed.verdicts);
    }
    assert_eq!(crash_titles(&from_consoles), live_titles);
}
