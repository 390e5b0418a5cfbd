//! The report formats, read back by readers that share no code with kmodlab: Python's
//! `xml.etree` (plus `junitparser` when installed) for JUnit, Python's `json` for JSON, the
//! kernel's own `kunit.py parse` (when a kernel source tree is in the cache) and our KTAP parser
//! for `--format ktap`. Every reader must tell the same story as the human lines: the same tests,
//! the same outcomes, the same counts.
//!
//! Inputs are real: a run folder saved from a real run, captured kernel logs, and one log made
//! hostile on purpose (control bytes, markup characters).

use kmodlab::judge::ktap;
use kmodlab_protocol::ktap::{classify, Line};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn kmodlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args(args)
        .output()
        .expect("kmodlab runs")
}

/// Runs one of the Python readers in tests/data/readers; its stdout.
fn python(reader: &str, file: &Path) -> String {
    let out = Command::new("python3")
        .arg(data("readers").join(reader))
        .arg(file)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs (it is on every machine kmodlab supports)");
    assert!(
        out.status.success(),
        "{reader} rejected {}:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 from python")
}

/// `(id, OUTCOME)` from the human verdict lines, and the closing `passed failed skipped`.
fn human(stdout: &str) -> (Vec<(String, String)>, (usize, usize, usize)) {
    let labels = ["PASS", "FAIL", "ERROR", "CRASH", "TIMEOUT", "SKIP"];
    let verdicts = stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let label = words.next()?;
            labels
                .contains(&label)
                .then(|| (words.next().unwrap_or("").to_string(), label.to_string()))
        })
        .collect();
    let summary = stdout
        .lines()
        .find(|l| l.contains(" passed, "))
        .expect("a summary line");
    let numbers: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect();
    (verdicts, (numbers[0], numbers[1], numbers[2]))
}

/// A console log with what kernels really print between results: colour escapes, NUL bytes,
/// markup characters in diagnostics, a bell, and a crash in the middle of a case.
const HOSTILE: &str = "\
[    1.000000] hostile: KTAP version 1
[    1.000001] hostile: 1..3
[    1.000002] hostile: # a < b && c > \"d\" \u{1b}[31mred\u{1b}[0m \u{0} \u{7} end
[    1.000003] hostile: not ok 1 markup_in_reason
[    1.000004] hostile: ok 2 skipped_one # SKIP needs <hw> & \"luck\"
[    1.100000] ------------[ cut here ]------------
[    1.100001] WARNING: CPU: 0 PID: 1 at hostile.c:7 hostile_poke+0x1/0x2 [hostile]
[    1.100002] RIP: 0010:hostile_poke+0x1/0x2 [hostile]
[    1.100003] ---[ end trace 0000000000000000 ]---
[    1.200000] hostile: ok 3 warned_but_went_on
";

fn inputs(dir: &Path) -> Vec<String> {
    let hostile = dir.join("hostile.log");
    std::fs::write(&hostile, HOSTILE).expect("write log");
    vec![
        data("runs/hello_ktap_fail_warn_hang").display().to_string(),
        data("ktap/kunit_boot_then_module.log")
            .display()
            .to_string(),
        data("ktap/truncated_by_crash.log").display().to_string(),
        hostile.display().to_string(),
    ]
}

#[test]
fn junit_and_json_agree_with_the_human_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("report.xml");
    let json = dir.path().join("report.json");
    let mut args = vec!["parse".to_string()];
    args.extend(inputs(dir.path()));
    args.extend(["--junit".into(), junit.display().to_string()]);
    args.extend(["--json".into(), json.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kmodlab(&args);
    assert_eq!(out.status.code(), Some(1), "failures exit 1");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    let (verdicts, (passed, failed, skipped)) = human(&stdout);
    assert_eq!(verdicts.len(), 16, "{stdout}");
    assert_eq!((passed, failed, skipped), (6, 8, 2), "{stdout}");

    // JSON, through Python's json module.
    let read = python("json_read.py", &json);
    let mut lines: Vec<&str> = read.lines().collect();
    let counts = lines.pop().expect("counts line");
    assert_eq!(counts, format!("counts: {passed} {failed} {skipped}"));
    let from_json: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let mut words = l.split_whitespace();
            let id = words.next().unwrap_or("").to_string();
            (id, words.next().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(from_json, verdicts);
    assert!(lines.contains(&"hostile/warned_but_went_on CRASH WARNING in hostile_poke"));

    // JUnit, through xml.etree (which refuses any character XML 1.0 forbids).
    let read: serde_json::Value =
        serde_json::from_str(&python("junit_read.py", &junit)).expect("reader's JSON");
    let cases = read["cases"].as_array().expect("cases");
    let from_junit: Vec<(String, String)> = cases
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("").to_string(),
                c["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(from_junit, verdicts);
    assert_eq!(
        read["totals"],
        serde_json::json!({"tests": 16, "failures": failed, "errors": 0, "skipped": skipped})
    );
    let case = |id: &str| {
        cases
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no testcase {id}"))
    };
    let markup = case("hostile/markup_in_reason");
    assert_eq!(
        markup["message"],
        "not ok 1 markup_in_reason: a < b && c > \"d\" \\x1b[31mred\\x1b[0m \\x00 \\x07 end"
    );
    assert!(markup["system_out"]
        .as_str()
        .is_some_and(|s| s.contains("a < b && c > \"d\" \\x1b[31mred")));
    assert_eq!(
        case("hostile/skipped_one")["message"],
        "needs <hw> & \"luck\""
    );
    let crash = case("warn_init/warns");
    assert_eq!(crash["message"], "WARNING in warn_init_trigger");
    assert!(crash["body"]
        .as_str()
        .is_some_and(|b| b.starts_with("------------[ cut here ]")));
    assert!(crash["system_out"]
        .as_str()
        .is_some_and(|s| s.contains("warn_init_init+0x5/0x1000")));
    assert_eq!(case("init_hang/hangs")["time"], 3.0);

    // junitparser, a library CI tools use, when this machine has it.
    match read["junitparser"].as_array() {
        Some(other) => {
            let ours: Vec<serde_json::Value> = cases
                .iter()
                .map(|c| serde_json::json!({"id": c["id"], "outcome": c["outcome"], "message": c["message"]}))
                .collect();
            assert_eq!(other, &ours);
        }
        None => eprintln!("junitparser is not installed: checked with xml.etree only"),
    }
}

/// The kernel's own KTAP reader, from a kernel source tree kmodlab unpacked in its cache.
fn kunit_py() -> Option<PathBuf> {
    let sources = kmodlab::host::cache::root().ok()?.join("sources");
    std::fs::read_dir(sources)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("tools/testing/kunit/kunit.py"))
        .find(|p| p.is_file())
}

#[test]
fn the_ktap_format_is_one_document_that_ktap_readers_agree_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = inputs(dir.path());
    let mut args = vec!["parse"];
    args.extend(inputs.iter().map(String::as_str));
    let (verdicts, counts) = human(&String::from_utf8(kmodlab(&args).stdout).expect("UTF-8"));

    args.extend(["--format", "ktap"]);
    let out = kmodlab(&args);
    assert_eq!(out.status.code(), Some(1));
    let document = String::from_utf8(out.stdout).expect("UTF-8");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(" passed, "),
        "the summary goes to stderr: {stderr}"
    );
    for line in document.lines() {
        assert!(
            !matches!(classify(line), Line::Other),
            "stdout is pure KTAP, but has: {line:?}"
        );
    }

    let docs = ktap::parse_text(&document);
    assert_eq!(docs.len(), 1);
    assert!(docs[0].complete);
    let c = docs[0].counts();
    assert_eq!(
        (c.passed as usize, c.failed as usize, c.skipped as usize),
        counts
    );

    let Some(kunit) = kunit_py() else {
        eprintln!("no kernel source tree in the cache: kunit.py parse not run");
        return;
    };
    let file = dir.path().join("out.ktap");
    let json = dir.path().join("kunit.json");
    std::fs::write(&file, &document).expect("write");
    let out = Command::new("python3")
        .arg(&kunit)
        .arg("parse")
        .arg(format!("--json={}", json.display()))
        .arg(&file)
        .current_dir(dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("kunit.py runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "kunit.py sees failures: {said}");
    assert!(
        said.contains(&format!(
            "Ran {} tests: passed: {}, failed: {}, skipped: {}",
            verdicts.len(),
            counts.0,
            counts.1,
            counts.2
        )),
        "{said}"
    );
    let kunit_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("kunit.py JSON"))
            .expect("JSON");
    let mut from_kunit = Vec::new();
    for group in kunit_json["sub_groups"].as_array().expect("groups") {
        for case in group["test_cases"].as_array().expect("cases") {
            from_kunit.push((
                format!(
                    "{}/{}",
                    group["name"].as_str().unwrap_or(""),
                    case["name"].as_str().unwrap_or("")
                ),
                case["status"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    // KTAP has ok, not ok and SKIP; `#` in names becomes `_`.
    let expected: Vec<(String, String)> = verdicts
        .iter()
        .map(|(id, outcome)| {
            let status = match outcome.as_str() {
                "PASS" => "PASS",
                "SKIP" => "SKIP",
                _ => "FAIL",
            };
            (id.replace('#', "_"), status.to_string())
        })
        .collect();
    assert_eq!(from_kunit, expected);
}

#[test]
fn parse_exits_like_test() {
    let passing = data("ktap/captured_hello.log").display().to_string();
    let out = kmodlab(&["parse", &passing]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.ends_with("3 passed, 0 failed, 0 skipped\n"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let noise = dir.path().join("noise.log");
    std::fs::write(&noise, "random: crng init done\n").expect("write");
    let out = kmodlab(&["parse", &noise.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "nothing to judge");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to judge"));
    let out = kmodlab(&["parse", "/nonexistent/run"]);
    assert_eq!(out.status.code(), Some(2));
}
