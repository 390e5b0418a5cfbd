//! `kmodlab watch` as a developer uses it: a first verdict, then an edit, then only what changed.
//! Every wait is bounded and the watcher is killed on every path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace")
}

/// Reads lines until one contains `wanted`, or panics after `limit` with everything seen.
fn wait_for(lines: &Receiver<String>, wanted: &str, limit: Duration, seen: &mut Vec<String>) {
    let deadline = Instant::now() + limit;
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let found = line.contains(wanted);
        seen.push(line);
        if found {
            return;
        }
    }
    panic!(
        "no line with {wanted:?} within {limit:?}; output:\n{}",
        seen.join("\n")
    );
}

#[test]
fn an_edit_reruns_the_tests_and_reports_only_the_change() {
    let agent = kmodlab::build::agent::build_in_workspace(&workspace()).expect("agent");
    let modules = tempfile::tempdir().expect("tempdir");
    let module = modules.path().join("hello");
    std::fs::create_dir(&module).expect("mkdir");
    for file in ["hello.c", "Kbuild", "kmodlab.toml"] {
        std::fs::copy(
            workspace().join("modules/hello").join(file),
            module.join(file),
        )
        .expect("copy");
    }
    let report = modules.path().join("report.html");
    let child = Command::new(env!("CARGO_BIN_EXE_kmodlab"))
        .args(["watch", "hello", "--no-setup", "--modules-dir"])
        .arg(modules.path())
        .arg("--html")
        .arg(&report)
        .env("KMODLAB_AGENT", &agent)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kmodlab watch starts");
    let mut watcher = Watcher(child);
    let stdout = watcher.0.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    wait_for(
        &lines,
        "1 passed, 0 failed, 0 skipped (run 1",
        Duration::from_secs(300),
        &mut seen,
    );
    // The report is rewritten before each round's summary is printed.
    let outcome_in_report = || {
        let page = std::fs::read_to_string(&report).expect("watch wrote the HTML report");
        let row = page
            .split("<tr class=\"verdict\"")
            .nth(1)
            .expect("a verdict row");
        row.split("data-outcome=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_string)
            .expect("an outcome")
    };
    assert_eq!(outcome_in_report(), "PASS");

    let spec = module.join("kmodlab.toml");
    let text = std::fs::read_to_string(&spec).expect("spec");
    std::fs::write(
        &spec,
        text.replace(
            "params = \"who=kmodlab\"",
            "params = \"who=kmodlab count=9\"",
        ),
    )
    .expect("edit");
    wait_for(
        &lines,
        "hello/greets: PASS -> FAIL  not ok 3 count_in_range",
        Duration::from_secs(300),
        &mut seen,
    );
    wait_for(
        &lines,
        "0 passed, 1 failed, 0 skipped (run 2",
        Duration::from_secs(30),
        &mut seen,
    );
    assert_eq!(outcome_in_report(), "FAIL");
    assert!(
        !seen
            .iter()
            .any(|l| l.starts_with("PASS ") && l.contains("run 2")),
        "the second round tells only the change: {seen:?}"
    );
}
