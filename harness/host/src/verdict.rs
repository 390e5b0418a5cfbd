//! Judging one test from what was recorded about it. Pure functions over recorded data, so every
//! rule can be tested with saved logs and no VM.
//!
//! A test passes only when its modules loaded, its KTAP document (if any) is complete and all ok,
//! every `expect` matched and no `forbid` did, no kernel failure marker appeared in its window,
//! no new taint beyond the out-of-tree ones was set, and it unloaded cleanly. Otherwise the verdict
//! names the first reason, most severe first: a crash explains everything after it.

use crate::spec::TestSpec;
use crate::{ktap, oops, taint};
use kmodlab_protocol::{Event, KmsgRecord, OpResult, WaitEnd};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Pass,
    Fail,
    Error,
    Crash,
    Timeout,
    Skip,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Error => "ERROR",
            Outcome::Crash => "CRASH",
            Outcome::Timeout => "TIMEOUT",
            Outcome::Skip => "SKIP",
        }
    }

    /// Whether this outcome makes the run fail.
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Pass | Outcome::Skip)
    }
}

/// The judgement of one test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub module: String,
    pub test: String,
    pub outcome: Outcome,
    /// One line: the crash title, the failed case, the errno, the skip reason. Empty for a pass.
    pub reason: String,
    /// Supporting lines: the crash report, the KTAP failures.
    pub details: Vec<String>,
    pub errno: Option<i32>,
    #[serde(with = "seconds")]
    pub duration: Duration,
    /// The test's kernel log window (kmsg records, else console lines).
    pub log: Vec<String>,
}

impl Verdict {
    pub fn id(&self) -> String {
        format!("{}/{}", self.module, self.test)
    }

    pub fn skipped(module: &str, test: &str, reason: String) -> Verdict {
        Verdict {
            module: module.into(),
            test: test.into(),
            outcome: Outcome::Skip,
            reason,
            details: vec![],
            errno: None,
            duration: Duration::ZERO,
            log: vec![],
        }
    }
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Why the host stopped waiting for a test that never finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interruption {
    /// The test's time limit (plus the agent's grace) passed on the host's clock.
    HostTimeout,
    /// QEMU exited, or its channels closed, while the test ran.
    VmEnded,
    /// The whole run's time limit passed while the test ran.
    RunTimeLimit,
}

/// Everything recorded about one test, assembled from agent events and console lines.
#[derive(Debug, Clone, Default)]
pub struct TestRecord {
    pub id: u32,
    pub started: bool,
    pub finished: bool,
    pub taint_before: Option<u64>,
    pub taint_after: Option<u64>,
    pub loads: Vec<(String, OpResult)>,
    pub wait: Option<WaitEnd>,
    pub unloads: Vec<(String, OpResult)>,
    pub kmsg: Vec<KmsgRecord>,
    pub console: Vec<String>,
    pub interrupted: Option<Interruption>,
    pub duration: Duration,
}

impl TestRecord {
    pub fn new(id: u32) -> Self {
        TestRecord {
            id,
            ..Default::default()
        }
    }

    /// Takes in an event about this test (or a kmsg record while it runs).
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::TestStarted { taint, .. } => {
                self.started = true;
                self.taint_before = Some(*taint);
            }
            Event::ModuleLoaded { module, result, .. } => {
                self.loads.push((module.clone(), result.clone()))
            }
            Event::WaitEnded { end, .. } => self.wait = Some(*end),
            Event::ModuleUnloaded { module, result, .. } => {
                self.unloads.push((module.clone(), result.clone()))
            }
            Event::Kmsg(record) => self.kmsg.push(record.clone()),
            Event::TestFinished {
                taint, duration_us, ..
            } => {
                self.finished = true;
                self.taint_after = Some(*taint);
                self.duration = Duration::from_micros(*duration_us);
            }
            Event::Hello { .. } | Event::AgentError { .. } | Event::Done => {}
        }
    }

    fn kmsg_lines(&self) -> Vec<&str> {
        self.kmsg.iter().flat_map(|r| r.lines()).collect()
    }
}

/// Judges one test.
pub fn judge(module: &str, spec: &TestSpec, record: &TestRecord) -> Verdict {
    let kmsg = record.kmsg_lines();
    let console: Vec<&str> = record.console.iter().map(String::as_str).collect();
    let (outcome, reason, details, errno) = decide(spec, record, &kmsg, &console);
    let log = if record.kmsg.is_empty() {
        record.console.clone()
    } else {
        let stamp = |us: u64| format!("[{:>5}.{:06}]", us / 1_000_000, us % 1_000_000);
        record
            .kmsg
            .iter()
            .flat_map(|r| {
                r.lines()
                    .map(move |line| format!("{} {line}", stamp(r.ts_us)))
            })
            .collect()
    };
    Verdict {
        module: module.into(),
        test: spec.name.clone(),
        outcome,
        reason,
        details,
        errno,
        duration: record.duration,
        log,
    }
}

type Decision = (Outcome, String, Vec<String>, Option<i32>);

fn decide(spec: &TestSpec, record: &TestRecord, kmsg: &[&str], console: &[&str]) -> Decision {
    // 1. A kernel failure marker anywhere in the window: the agent's records first (complete and in
    //    order), the console when the agent could not send them (the kernel was dying).
    // The console is only consulted for a test the agent could not finish: the guest sends the
    // agent's events by interrupt while console output is synchronous, so console lines can overtake
    // the event that ended the previous test and cannot be attributed by arrival.
    let console_crash = || {
        if record.finished {
            None
        } else {
            oops::first(console)
        }
    };
    if let Some(crash) = oops::first(kmsg).or_else(console_crash) {
        return (Outcome::Crash, crash.title, crash.report, None);
    }
    for (module, result) in &record.loads {
        match result {
            OpResult::Ok => {}
            OpResult::TimedOut => {
                return (
                    Outcome::Timeout,
                    format!(
                        "load: {module}'s init did not return within {}s",
                        spec.timeout.as_secs()
                    ),
                    vec![],
                    None,
                );
            }
            OpResult::Died { signal } => {
                return (
                    Outcome::Crash,
                    format!("load: the task loading {module} was killed ({signal})"),
                    vec![],
                    None,
                );
            }
            OpResult::Failed {
                errno,
                name,
                message,
            } => {
                let kernel_says = kernel_reason(kmsg, module);
                let reason = match &kernel_says {
                    Some(line) => format!("load {module}: {name} ({message}); kernel: {line}"),
                    None => format!("load {module}: {name} ({message})"),
                };
                return (Outcome::Error, reason, vec![], Some(*errno));
            }
        }
    }
    if record.wait == Some(WaitEnd::TimedOut) {
        let progress = ktap_progress(kmsg);
        return (
            Outcome::Timeout,
            format!(
                "test: no complete KTAP result within {}s{progress}",
                spec.timeout.as_secs()
            ),
            vec![],
            None,
        );
    }
    for (module, result) in &record.unloads {
        match result {
            OpResult::TimedOut => {
                return (
                    Outcome::Timeout,
                    format!("unload: {module}'s exit did not return in time"),
                    vec![],
                    None,
                );
            }
            OpResult::Died { signal } => {
                return (
                    Outcome::Crash,
                    format!("unload: the task unloading {module} was killed ({signal})"),
                    vec![],
                    None,
                );
            }
            OpResult::Ok | OpResult::Failed { .. } => {}
        }
    }
    if let Some(interruption) = &record.interrupted {
        return match interruption {
            Interruption::HostTimeout => (
                Outcome::Timeout,
                format!(
                    "the guest stopped answering within {}s{}",
                    spec.timeout.as_secs(),
                    ktap_progress(kmsg)
                ),
                vec![],
                None,
            ),
            Interruption::RunTimeLimit => (
                Outcome::Timeout,
                format!(
                    "the run's time limit was reached during this test{}",
                    ktap_progress(kmsg)
                ),
                vec![],
                None,
            ),
            Interruption::VmEnded => (
                Outcome::Crash,
                "the VM ended during the test".into(),
                tail(console, 20),
                None,
            ),
        };
    }
    if spec.ktap {
        let documents = ktap::parse(kmsg.iter().copied());
        let with_results: Vec<&ktap::Document> = documents
            .iter()
            .filter(|d| d.plan.is_some() || !d.cases.is_empty())
            .collect();
        if with_results.is_empty() {
            return (
                Outcome::Fail,
                "no KTAP output (the spec says ktap = true)".into(),
                vec![],
                None,
            );
        }
        let failures: Vec<ktap::Failure> = with_results.iter().flat_map(|d| d.failures()).collect();
        if let Some(first) = failures.first() {
            let details = failures.iter().skip(1).map(describe_failure).collect();
            return (Outcome::Fail, describe_failure(first), details, None);
        }
    }
    for pattern in &spec.expect {
        if !kmsg.iter().any(|line| pattern.is_match(line)) {
            return (
                Outcome::Fail,
                format!(
                    "expected /{}/ in the kernel log; it never appeared",
                    pattern.as_str()
                ),
                vec![],
                None,
            );
        }
    }
    for pattern in &spec.forbid {
        if let Some(line) = kmsg.iter().find(|line| pattern.is_match(line)) {
            return (
                Outcome::Fail,
                format!("forbidden /{}/ appeared: {}", pattern.as_str(), line.trim()),
                vec![],
                None,
            );
        }
    }
    if let (Some(before), Some(after)) = (record.taint_before, record.taint_after) {
        let new = taint::unexpected_new(before, after);
        if !new.is_empty() {
            return (
                Outcome::Fail,
                format!("the kernel was tainted: {}", taint::describe(&new)),
                vec![],
                None,
            );
        }
    }
    for (module, result) in &record.unloads {
        if let OpResult::Failed {
            errno,
            name,
            message,
        } = result
        {
            return (
                Outcome::Error,
                format!("unload {module}: {name} ({message})"),
                vec![],
                Some(*errno),
            );
        }
    }
    (Outcome::Pass, String::new(), vec![], None)
}

/// `not ok 2 arithmetic_is_broken: check failed: 2 + delta == 4 (ktap_fail.c:21)`
fn describe_failure(failure: &ktap::Failure) -> String {
    // Module diagnostics often repeat the case name; say it once.
    let reason = failure.reason.trim();
    let reason = reason
        .strip_prefix(&format!("{}:", failure.path))
        .map_or(reason, str::trim);
    if reason.is_empty() {
        format!("not ok {} {}", failure.number, failure.path)
    } else {
        format!("not ok {} {}: {reason}", failure.number, failure.path)
    }
}

/// The kernel's own explanation of a refused load, e.g. `hello: Unknown symbol foo (err -2)`.
fn kernel_reason<'a>(kmsg: &[&'a str], module: &str) -> Option<&'a str> {
    let prefix = format!("{module}: ");
    kmsg.iter()
        .rev()
        .find(|line| line.starts_with(&prefix) && !line.contains("loading out-of-tree module"))
        .copied()
}

/// ` (KTAP: 3 of 5 results)` when a document was under way.
fn ktap_progress(kmsg: &[&str]) -> String {
    ktap::parse(kmsg.iter().copied())
        .iter()
        .rev()
        .find(|d| d.plan.is_some() || !d.cases.is_empty())
        .map(|d| match d.plan {
            Some(plan) => format!(" (KTAP: {} of {plan} results)", d.cases.len()),
            None => format!(" (KTAP: {} results, no plan)", d.cases.len()),
        })
        .unwrap_or_default()
}

fn tail(lines: &[&str], n: usize) -> Vec<String> {
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}
