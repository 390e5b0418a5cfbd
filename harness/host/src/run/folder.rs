//! Turning saved logs into verdicts, as `kunit.py parse` does for KUnit: `kmodlab parse LOG...`.
//!
//! Two kinds of input:
//! - a kmodlab run folder: its `vmN.events.jsonl` files are what the agent recorded, so each test
//!   is judged again by [`verdict::judge`], exactly as `test` judged it. The run keeps the tests'
//!   specs in [`PLAN_FILE`] when it can; without that file the names come from `verdicts.json`
//!   and the spec is inferred from the events (see [`inferred_spec`]).
//! - any kernel log (dmesg, a serial console, `kunit.py run --raw_output`): every top-level KTAP
//!   document becomes verdicts, one per case (`suite/case` for KUnit-style suites), and the crash
//!   reports [`oops::scan`] finds are charged to the case that was running when they appeared.

use crate::judge::records::{Interruption, TestRecord};
use crate::judge::rules;
use crate::judge::verdict::{Outcome, Verdict};
use crate::judge::{ktap, oops};
use crate::spec::{ProgramSpec, TestSpec};
use anyhow::{bail, Context, Result};
use kmodlab_protocol::ktap::{classify, strip_prefixes, strip_timestamp, Line};
use kmodlab_protocol::{Event, OpResult, WaitEnd};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file in a run folder that keeps what each planned test was judged against.
pub const PLAN_FILE: &str = "plan.json";
/// The verdicts a run wrote, in test-id order (`run` numbers every requested test, skipped ones too).
const VERDICTS_FILE: &str = "verdicts.json";
/// Longest log window kept for a verdict read from a plain log: a missing result's window runs
/// to the end of the document, which in a boot log can be long.
const WINDOW_MAX: usize = 400;
/// Module name for a KTAP document that names nothing.
const UNNAMED: &str = "ktap";

/// What the logs said.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub verdicts: Vec<Verdict>,
    pub kernel_release: Option<String>,
    /// VMs whose events were read (0 for a plain log).
    pub vms: u32,
    /// Set when the input was a run folder.
    pub run_folder: Option<PathBuf>,
    /// Whether the input had anything to judge: a KTAP document, a crash report, a recorded test.
    pub found_anything: bool,
    /// What the reader had to guess, worth telling the user.
    pub notes: Vec<String>,
}

/// One planned test as the run saw it: enough to judge its recorded events again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTest {
    /// The id the agent's events carry.
    pub id: u32,
    pub module: String,
    pub test: String,
    pub load: Vec<String>,
    pub params: String,
    pub ktap: bool,
    pub settle_ms: u64,
    /// The limit the test ran with (the spec's, or `--timeout`).
    pub timeout_ms: u64,
    pub expect: Vec<String>,
    pub forbid: Vec<String>,
    /// Where the module was built and the folder it came from, so that reports show the user's
    /// paths as `test` did.
    #[serde(default)]
    pub build_copy: Option<PathBuf>,
    #[serde(default)]
    pub source_dir: Option<PathBuf>,
    /// The programs the test ran (`[[test.run]]`); absent in run folders from before companions.
    #[serde(default)]
    pub run: Vec<SavedProgram>,
    /// The errno name the last load had to be refused with (`load_error`); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
}

/// One `[[test.run]]` entry as the run judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedProgram {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub exit: i32,
    #[serde(default)]
    pub expect: Vec<String>,
    #[serde(default)]
    pub forbid: Vec<String>,
    /// Its own limit, when the spec gave one; else the test's.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl SavedTest {
    pub fn new(
        id: u32,
        module: &str,
        spec: &TestSpec,
        source_paths: Option<&(PathBuf, PathBuf)>,
    ) -> SavedTest {
        SavedTest {
            id,
            module: module.to_string(),
            test: spec.name.clone(),
            load: spec.load.clone(),
            params: spec.params.clone(),
            ktap: spec.ktap,
            settle_ms: spec.settle.as_millis() as u64,
            timeout_ms: spec.timeout.as_millis() as u64,
            expect: spec.expect.iter().map(|r| r.as_str().to_string()).collect(),
            forbid: spec.forbid.iter().map(|r| r.as_str().to_string()).collect(),
            build_copy: source_paths.map(|(copy, _)| copy.clone()),
            source_dir: source_paths.map(|(_, original)| original.clone()),
            run: spec
                .run
                .iter()
                .map(|p| SavedProgram {
                    program: p.program.clone(),
                    args: p.args.clone(),
                    exit: p.exit,
                    expect: p.expect.iter().map(|r| r.as_str().to_string()).collect(),
                    forbid: p.forbid.iter().map(|r| r.as_str().to_string()).collect(),
                    timeout_ms: p.timeout.map(|t| t.as_millis() as u64),
                })
                .collect(),
            load_error: spec.load_error.map(|e| format!("{e:?}")),
        }
    }

    fn spec(&self) -> Result<TestSpec> {
        let compile = |patterns: &[String], field: &str| -> Result<Vec<Regex>> {
            patterns
                .iter()
                .map(|p| {
                    Regex::new(p).with_context(|| {
                        format!("{PLAN_FILE}: {}/{} {field} /{p}/", self.module, self.test)
                    })
                })
                .collect()
        };
        Ok(TestSpec {
            name: self.test.clone(),
            load: self.load.clone(),
            params: self.params.clone(),
            ktap: self.ktap,
            settle: Duration::from_millis(self.settle_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            expect: compile(&self.expect, "expect")?,
            forbid: compile(&self.forbid, "forbid")?,
            run: self
                .run
                .iter()
                .map(|p| {
                    let field = |f: &str| format!("run {} {f}", p.program);
                    Ok(ProgramSpec {
                        program: p.program.clone(),
                        args: p.args.clone(),
                        exit: p.exit,
                        expect: compile(&p.expect, &field("expect"))?,
                        forbid: compile(&p.forbid, &field("forbid"))?,
                        timeout: p.timeout_ms.map(Duration::from_millis),
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            load_error: match &self.load_error {
                None => None,
                Some(name) => Some(crate::spec::errno_by_name(name).map_err(|e| {
                    anyhow::anyhow!("{PLAN_FILE}: {}/{} load_error: {e}", self.module, self.test)
                })?),
            },
        })
    }
}

/// Writes [`PLAN_FILE`] into a run folder.
pub fn save_plan(run_dir: &Path, tests: &[SavedTest]) -> Result<()> {
    let path = run_dir.join(PLAN_FILE);
    let text = serde_json::to_string_pretty(tests).context("encoding the test plan")?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Reads a run folder (a directory) or a kernel log (a file, or `-` for stdin).
pub fn parse_path(path: &Path) -> Result<Parsed> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("reading the log from stdin")?;
        return Ok(kernel_log(&String::from_utf8_lossy(&bytes)));
    }
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        return run_folder(path);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // Kernel logs are not always valid UTF-8 (a dying kernel prints what it prints).
    Ok(kernel_log(&String::from_utf8_lossy(&bytes)))
}

// ---------------------------------------------------------------------------------------------
// Run folders

/// A verdict as `verdicts.json` keeps it.
#[derive(Deserialize)]
struct Recorded {
    module: String,
    test: String,
    outcome: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    details: Vec<String>,
    #[serde(default)]
    errno: Option<i32>,
    #[serde(default)]
    duration: f64,
    #[serde(default)]
    log: Vec<String>,
}

impl Recorded {
    fn verdict(self) -> Verdict {
        Verdict::new(
            &self.module,
            &self.test,
            Outcome::from_label(&self.outcome),
            self.reason,
        )
        .with_details(self.details)
        .with_errno(self.errno)
        .with_duration(Duration::try_from_secs_f64(self.duration).unwrap_or_default())
        .with_log(self.log)
    }
}

/// Judges a run folder again from its recorded events.
pub fn run_folder(dir: &Path) -> Result<Parsed> {
    let mut vm_numbers: Vec<u32> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the run folder {}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            name.strip_prefix("vm")?
                .strip_suffix(".events.jsonl")?
                .parse()
                .ok()
        })
        .collect();
    vm_numbers.sort_unstable();
    let plan_path = dir.join(PLAN_FILE);
    let verdicts_path = dir.join(VERDICTS_FILE);
    if vm_numbers.is_empty() && !verdicts_path.is_file() {
        bail!(
            "{} is not a kmodlab run folder: it has no vmN.events.jsonl and no {VERDICTS_FILE}",
            dir.display()
        );
    }
    let mut parsed = Parsed {
        run_folder: Some(dir.to_path_buf()),
        found_anything: true,
        ..Parsed::default()
    };
    let plan: Option<BTreeMap<u32, SavedTest>> = if plan_path.is_file() {
        let text = std::fs::read_to_string(&plan_path)
            .with_context(|| format!("reading {}", plan_path.display()))?;
        let tests: Vec<SavedTest> = serde_json::from_str(&text)
            .with_context(|| format!("reading {}", plan_path.display()))?;
        Some(tests.into_iter().map(|t| (t.id, t)).collect())
    } else {
        None
    };
    let recorded: Vec<Verdict> = if verdicts_path.is_file() {
        let text = std::fs::read_to_string(&verdicts_path)
            .with_context(|| format!("reading {}", verdicts_path.display()))?;
        let list: Vec<Recorded> = serde_json::from_str(&text)
            .with_context(|| format!("reading {}", verdicts_path.display()))?;
        list.into_iter().map(Recorded::verdict).collect()
    } else {
        Vec::new()
    };
    if plan.is_none() {
        parsed.notes.push(format!(
            "{} has no {PLAN_FILE}: names come from {VERDICTS_FILE}, and each test is judged \
             without its expect/forbid patterns, with `ktap` and the time limit read from its events",
            dir.display()
        ));
    }
    let mut judged: BTreeMap<u32, Verdict> = BTreeMap::new();
    for number in &vm_numbers {
        let label = format!("vm{number}");
        let events_path = dir.join(format!("{label}.events.jsonl"));
        let events_text = std::fs::read_to_string(&events_path)
            .with_context(|| format!("reading {}", events_path.display()))?;
        let console_path = dir.join(format!("{label}.console.log"));
        // A missing console log only costs crash reports the agent could not send.
        let console_text = std::fs::read(&console_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut events = Vec::new();
        for (n, line) in events_text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match Event::from_line(line) {
                Ok(event) => events.push(event),
                Err(e) => parsed.notes.push(format!(
                    "{}:{}: not an agent event ({e}); skipped",
                    events_path.display(),
                    n + 1
                )),
            }
        }
        let session = replay_vm(&events, &console_text);
        if session.booted {
            parsed.vms += 1;
        }
        if parsed.kernel_release.is_none() {
            parsed.kernel_release = session.kernel_release;
        }
        for error in session.agent_errors {
            parsed.notes.push(format!("{label}: {error}"));
        }
        for record in session.records {
            let id = record.id;
            let (module, spec, paths) = match plan.as_ref().and_then(|p| p.get(&id)) {
                Some(saved) => (
                    saved.module.clone(),
                    saved.spec()?,
                    saved.build_copy.clone().zip(saved.source_dir.clone()),
                ),
                None => {
                    let (module, test) = match recorded.get(id as usize) {
                        Some(v) => (v.module.clone(), v.test.clone()),
                        None => (
                            record
                                .loads
                                .last()
                                .map_or_else(|| "unknown".to_string(), |(m, _)| m.clone()),
                            format!("test{id}"),
                        ),
                    };
                    (module, inferred_spec(&test, &record), None)
                }
            };
            let mut verdict = rules::judge(&module, &spec, &record);
            if let Some((copy, original)) = &paths {
                verdict.map_text(|line| crate::build::module::relocate(line, copy, original));
            }
            judged.insert(id, verdict);
        }
    }
    // Tests no VM ran (a missing kernel option, an agent that ran nothing) keep their recorded verdict.
    let mut ids: Vec<u32> = judged.keys().copied().collect();
    ids.extend(0..recorded.len() as u32);
    if let Some(plan) = &plan {
        ids.extend(plan.keys().copied());
    }
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let verdict = match judged.remove(&id) {
            Some(v) => v,
            None => match recorded.get(id as usize) {
                Some(v) => v.clone(),
                None => {
                    let (module, test) = plan.as_ref().and_then(|p| p.get(&id)).map_or_else(
                        || ("unknown".to_string(), format!("test{id}")),
                        |t| (t.module.clone(), t.test.clone()),
                    );
                    Verdict::new(
                        &module,
                        &test,
                        Outcome::Error,
                        "planned, but no VM recorded it and the run wrote no verdict",
                    )
                }
            },
        };
        parsed.verdicts.push(verdict);
    }
    Ok(parsed)
}

/// What one VM's recorded events amount to.
#[derive(Debug, Default)]
struct Replay {
    booted: bool,
    kernel_release: Option<String>,
    records: Vec<TestRecord>,
    agent_errors: Vec<String>,
}

/// Replays one VM's events the way `run` read them live: a test that crashed or timed out ended
/// its VM, so whatever the agent sent after it is not judged (the test after it ran again in the
/// next VM). A test whose events stop without `test_finished` was interrupted; the console lines
/// printed after its start go with it, as they did live.
fn replay_vm(events: &[Event], console: &str) -> Replay {
    let mut replay = Replay::default();
    let mut current: Option<(TestRecord, Option<u64>)> = None;
    // The timestamp of the last kernel record seen before the running test began.
    let mut last_kmsg_us: Option<u64> = None;
    for event in events {
        match event {
            Event::Hello { kernel_release, .. } => {
                replay.booted = true;
                replay.kernel_release = Some(kernel_release.clone());
            }
            Event::TestStarted { test, .. } => {
                let mut record = TestRecord::new(*test);
                record.apply(event);
                current = Some((record, last_kmsg_us));
            }
            Event::TestFinished { .. } => {
                let Some((mut record, _)) = current.take() else {
                    continue;
                };
                record.apply(event);
                let ended_vm = judged_as_ending(&record);
                replay.records.push(record);
                if ended_vm {
                    return replay;
                }
            }
            Event::Done => break,
            Event::AgentError { context, message } => replay
                .agent_errors
                .push(format!("agent error while {context}: {message}")),
            Event::Kmsg(record) => {
                last_kmsg_us = Some(record.ts_us).max(last_kmsg_us);
                if let Some((test, _)) = current.as_mut() {
                    test.apply(event);
                }
            }
            other => {
                if let Some((test, _)) = current.as_mut() {
                    test.apply(other);
                }
            }
        }
    }
    if let Some((mut record, started_after)) = current.take() {
        record.console = console_after(console, started_after);
        // The events cannot say whether QEMU exited or the host stopped waiting; the host's limit
        // is by far the more common end, and a dying kernel's console report is judged either way.
        record.interrupted = Some(Interruption::HostTimeout);
        replay.records.push(record);
    }
    replay
}

/// Whether `run` ended the VM after this finished test: it does after a crash or a timeout. The
/// facts that make those outcomes do not depend on the spec, so a default spec decides it.
fn judged_as_ending(record: &TestRecord) -> bool {
    let spec = inferred_spec("replay", record);
    matches!(
        rules::judge("replay", &spec, record).outcome,
        Outcome::Crash | Outcome::Timeout
    )
}

/// Console lines stamped after `after_us`; unstamped lines go with the line before them.
fn console_after(console: &str, after_us: Option<u64>) -> Vec<String> {
    let mut keep = after_us.is_none();
    let mut out = Vec::new();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if let (Some(stamp), Some(after)) = (timestamp_us(line), after_us) {
            keep = stamp > after;
        }
        if keep {
            out.push(line.to_string());
        }
    }
    out
}

/// `[   12.345678] ...` as microseconds.
fn timestamp_us(line: &str) -> Option<u64> {
    let inner = line.strip_prefix('[')?;
    let close = inner.find(']')?;
    let (secs, micros) = inner.get(..close)?.trim().split_once('.')?;
    let secs: u64 = secs.parse().ok()?;
    // printk prints six digits; be lenient with fewer.
    let digits = micros.len().min(6);
    let frac: u64 = micros.get(..digits)?.parse().ok()?;
    Some(secs * 1_000_000 + frac * 10u64.pow(6 - digits as u32))
}

/// The spec a test is judged against when the run folder did not keep it: no expect or forbid
/// patterns, KTAP awaited when the agent waited for KTAP, and the time limit the agent enforced
/// (it stops a load or wait at the limit, so their durations show it, rounded to whole seconds).
/// The programs it ran are expected to exit 0; a timed-out one's limit is its duration.
pub fn inferred_spec(name: &str, record: &TestRecord) -> TestSpec {
    let ktap = matches!(
        record.wait,
        Some(WaitEnd::KtapComplete) | Some(WaitEnd::TimedOut)
    );
    let timed_out = record.wait == Some(WaitEnd::TimedOut)
        || record
            .loads
            .iter()
            .any(|(_, r)| matches!(r, OpResult::TimedOut));
    let timeout = if timed_out && !record.duration.is_zero() {
        Duration::from_secs((record.duration.as_secs_f64().round() as u64).max(1))
    } else {
        Duration::from_secs(10)
    };
    TestSpec {
        name: name.to_string(),
        load: record.loads.iter().map(|(m, _)| m.clone()).collect(),
        params: String::new(),
        ktap,
        settle: Duration::from_millis(50),
        timeout,
        expect: vec![],
        forbid: vec![],
        run: record
            .programs
            .iter()
            .map(|p| ProgramSpec {
                program: p.program.clone(),
                args: vec![],
                exit: 0,
                expect: vec![],
                forbid: vec![],
                timeout: p
                    .timed_out
                    .then(|| Duration::from_secs((p.duration.as_secs_f64().round() as u64).max(1))),
            })
            .collect(),
        // Without the spec a refused load cannot be told from an expected refusal: it is an ERROR.
        load_error: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Kernel logs

/// A top-level KTAP document's lines: `start` is its version line, `end` one past its last line
/// (the next top-level version line, or the end of the log).
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: usize,
    end: usize,
    top_indent: usize,
}

/// Splits a log where [`ktap::parse`] starts a new top-level document: at a version line that is
/// not nested in the open one.
fn segments(lines: &[&str]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Line::Version { indent, .. } = classify(line) {
            let nested = out.last().is_some_and(|s| indent > s.top_indent);
            if !nested {
                if let Some(last) = out.last_mut() {
                    last.end = i;
                }
                out.push(Segment {
                    start: i,
                    end: lines.len(),
                    top_indent: indent,
                });
            }
        }
    }
    out
}

/// Where one top-level result's lines are: the nested document it closes (if any) opened at
/// `open`, the nested results at `leaves`, its own result line at `result`.
#[derive(Debug, Default, Clone)]
struct TopLines {
    open: Option<usize>,
    leaves: Vec<usize>,
    result: Option<usize>,
}

/// Finds, line by line, the result lines of a segment at the two levels verdicts are made of,
/// so each case's log window and the case running at any line are known. The n-th entry belongs
/// to the n-th top-level case the parser reports (a case the parser had to make up for a suite
/// cut short is the last one, with no result line).
fn top_lines(lines: &[&str], seg: Segment) -> Vec<TopLines> {
    let mut tops = vec![TopLines::default()];
    let mut nested_indent: Option<usize> = None;
    for (j, line) in lines.iter().enumerate().take(seg.end).skip(seg.start + 1) {
        let Some(current) = tops.last_mut() else {
            break;
        };
        match classify(line) {
            Line::TestResult { indent, .. } if indent == seg.top_indent => {
                current.result = Some(j);
                tops.push(TopLines::default());
                nested_indent = None;
            }
            Line::Version { indent, .. } | Line::SubtestHeader { indent, .. }
                if indent > seg.top_indent && current.open.is_none() =>
            {
                current.open = Some(j);
                nested_indent = Some(indent);
            }
            Line::TestResult { indent, .. } if Some(indent) == nested_indent => {
                current.leaves.push(j)
            }
            _ => {}
        }
    }
    tops
}

/// One verdict-to-be from a KTAP document.
#[derive(Debug)]
struct Leaf<'d> {
    module: String,
    test: String,
    /// `None` for results the plan announced and the log lacks.
    case: Option<&'d ktap::Case>,
    /// The case's path as [`ktap::Failure::path`] spells it, to find its failures.
    path: String,
    /// Its part of the log: from `start` to its result line (or further for a crash).
    start: usize,
    result: Option<usize>,
    crash: Option<oops::Crash>,
    later_crashes: Vec<String>,
}

fn label(case: &ktap::Case) -> String {
    if case.name.is_empty() {
        format!("#{}", case.number)
    } else {
        case.name.clone()
    }
}

fn missing_label((first, last): (u32, u32)) -> String {
    if first == last {
        format!("#{first}")
    } else {
        format!("#{first}-{last}")
    }
}

/// Missing ranges with the first number of each on its own: that is the case a crash stopped,
/// the rest never ran.
fn split_missing(ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(ranges.len() * 2);
    for (first, last) in ranges {
        out.push((first, first));
        if last > first {
            out.push((first + 1, last));
        }
    }
    out
}

/// The leaves of one document: a case with subtests (a KUnit suite) gives one leaf per subtest,
/// named `case/subtest`; any other case is one leaf `module/case`; results the plan announced but
/// the log lacks are one leaf per missing range (`#4`, `#4-9`).
fn leaves<'d>(
    doc: &'d ktap::Document,
    module: &str,
    seg: Segment,
    lines: &[&str],
) -> Vec<Leaf<'d>> {
    let tops = top_lines(lines, seg);
    let mut out = Vec::new();
    let mut previous_top_end = seg.start;
    for (t, case) in doc.cases.iter().enumerate() {
        let where_ = tops.get(t).cloned().unwrap_or_default();
        let suite = case
            .subtests
            .as_ref()
            .filter(|s| !s.cases.is_empty() || s.plan.is_some_and(|p| p > 0));
        match suite {
            Some(sub) => {
                let unit = label(case);
                let mut start = where_.open.unwrap_or(previous_top_end);
                for (k, inner) in sub.cases.iter().enumerate() {
                    let result = where_.leaves.get(k).copied();
                    out.push(Leaf {
                        module: unit.clone(),
                        test: label(inner),
                        case: Some(inner),
                        path: format!("{unit}.{}", label(inner)),
                        start,
                        result,
                        crash: None,
                        later_crashes: vec![],
                    });
                    if let Some(r) = result {
                        start = r + 1;
                    }
                }
                for range in split_missing(sub.missing()) {
                    out.push(Leaf {
                        module: unit.clone(),
                        test: missing_label(range),
                        case: None,
                        path: unit.clone(),
                        start,
                        result: None,
                        crash: None,
                        later_crashes: vec![],
                    });
                }
                // A suite that failed while all its cases passed (its init failed, say) still fails.
                let suite_failed = case.outcome.is_failure()
                    && !sub.cases.iter().any(|c| c.outcome.is_failure())
                    && sub.missing().is_empty();
                if suite_failed {
                    out.push(Leaf {
                        module: unit.clone(),
                        test: "suite".into(),
                        case: Some(case),
                        path: unit.clone(),
                        start: where_.open.unwrap_or(previous_top_end),
                        result: where_.result,
                        crash: None,
                        later_crashes: vec![],
                    });
                }
            }
            None => out.push(Leaf {
                module: module.to_string(),
                test: label(case),
                case: Some(case),
                path: label(case),
                start: previous_top_end,
                result: where_.result,
                crash: None,
                later_crashes: vec![],
            }),
        }
        if let Some(r) = where_.result {
            previous_top_end = r + 1;
        }
    }
    for range in split_missing(doc.missing()) {
        out.push(Leaf {
            module: module.to_string(),
            test: missing_label(range),
            case: None,
            path: doc.name.clone().unwrap_or_else(|| UNNAMED.to_string()),
            start: previous_top_end,
            result: None,
            crash: None,
            later_crashes: vec![],
        });
    }
    out
}

/// The leaf running at line `at`: the first whose result line had not been printed yet, provided
/// it had begun (a crash between two suites belongs to neither).
fn running(leaves: &[Leaf], at: usize) -> Option<usize> {
    let index = leaves
        .iter()
        .position(|l| l.result.is_none_or(|r| r > at))?;
    (leaves[index].start <= at).then_some(index)
}

/// A flat document's module: its `# Subtest:` name, else the `module: ` prefix its version line
/// was printed with, else [`UNNAMED`].
fn document_module(doc: &ktap::Document, version_line: &str) -> String {
    if let Some(name) = doc.name.as_ref().filter(|n| !n.is_empty()) {
        return name.clone();
    }
    let text = strip_timestamp(version_line).trim_start();
    let bare = strip_prefixes(version_line).trim_start();
    text.strip_suffix(bare)
        .and_then(|prefix| prefix.trim_end().strip_suffix(':'))
        .filter(|p| !p.is_empty())
        .map_or_else(|| UNNAMED.to_string(), str::to_string)
}

/// Judges any kernel log: verdicts from its KTAP documents and the crash reports in it.
pub fn kernel_log(text: &str) -> Parsed {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut parsed = Parsed {
        kernel_release: kernel_release(&lines),
        ..Parsed::default()
    };
    let segs = segments(&lines);
    let docs: Vec<Option<ktap::Document>> = segs
        .iter()
        .map(|s| {
            ktap::parse(lines[s.start..s.end].iter().copied())
                .into_iter()
                .next()
        })
        .collect();
    let mut used_modules: Vec<String> = Vec::new();
    let mut all: Vec<(Segment, &ktap::Document, Vec<Leaf>)> = Vec::new();
    for (seg, doc) in segs.iter().zip(&docs) {
        let Some(doc) = doc else { continue };
        parsed.found_anything = true;
        let mut module = document_module(doc, lines[seg.start]);
        let base = module.clone();
        let mut n = 1;
        while used_modules.contains(&module) {
            n += 1;
            module = format!("{base}-{n}");
        }
        used_modules.push(module.clone());
        all.push((*seg, doc, leaves(doc, &module, *seg, &lines)));
    }

    let mut boot: Option<(oops::Crash, Vec<String>)> = None;
    for crash in oops::scan(&lines) {
        parsed.found_anything = true;
        let owner = all.iter_mut().find_map(|(seg, _, leaves)| {
            if crash.line < seg.start || crash.line >= seg.end {
                return None;
            }
            running(leaves, crash.line).and_then(|i| leaves.get_mut(i))
        });
        match owner {
            Some(leaf) if leaf.crash.is_none() => leaf.crash = Some(crash),
            Some(leaf) => leaf.later_crashes.push(crash.title),
            None => match boot.as_mut() {
                None => boot = Some((crash, vec![])),
                Some((_, later)) => later.push(crash.title),
            },
        }
    }

    for (seg, doc, leaves) in &all {
        let failures = doc.failures();
        for leaf in leaves {
            parsed
                .verdicts
                .push(leaf_verdict(leaf, &failures, *seg, &lines));
        }
    }
    if let Some((crash, later)) = boot {
        let end = (crash.line + crash.report.len().max(1)).min(lines.len());
        let mut details = crash.report.clone();
        details.extend(later.iter().map(|t| format!("then: {t}")));
        let log = lines[crash.line.min(end)..end]
            .iter()
            .map(|l| l.to_string())
            .collect();
        parsed.verdicts.push(
            Verdict::new("kernel", "boot", Outcome::Crash, crash.title.clone())
                .with_details(details)
                .with_log(log),
        );
    }
    parsed
}

fn leaf_verdict(leaf: &Leaf, failures: &[ktap::Failure], seg: Segment, lines: &[&str]) -> Verdict {
    let window_end = match (&leaf.crash, leaf.result) {
        (Some(crash), result) => {
            let crash_end = crash.line + crash.report.len().max(1);
            result.map_or(crash_end, |r| crash_end.max(r + 1))
        }
        (None, Some(r)) => r + 1,
        (None, None) => seg.end,
    }
    .min(seg.end)
    .max(leaf.start);
    let window: Vec<String> = lines[leaf.start..window_end]
        .iter()
        .take(WINDOW_MAX)
        .map(|l| l.to_string())
        .collect();
    let duration = window_duration(&lines[leaf.start..window_end]);
    let (outcome, reason, mut details) = match (&leaf.crash, leaf.case) {
        (Some(crash), _) => (Outcome::Crash, crash.title.clone(), crash.report.clone()),
        (None, None) => {
            let reason = if leaf.test.contains('-') {
                format!(
                    "the plan announced results {}; the log has none of them",
                    leaf.test
                )
            } else {
                format!(
                    "the plan announced result {}; the log does not have it",
                    leaf.test
                )
            };
            (Outcome::Fail, reason, vec![])
        }
        (None, Some(case)) => case_outcome(leaf, case, failures),
    };
    details.extend(leaf.later_crashes.iter().map(|t| format!("then: {t}")));
    Verdict::new(&leaf.module, &leaf.test, outcome, reason)
        .with_details(details)
        .with_duration(duration)
        .with_log(window)
}

fn case_outcome(
    leaf: &Leaf,
    case: &ktap::Case,
    failures: &[ktap::Failure],
) -> (Outcome, String, Vec<String>) {
    let nested = format!("{}.", leaf.path);
    let mine: Vec<&ktap::Failure> = failures
        .iter()
        .filter(|f| f.path == leaf.path || f.path.starts_with(&nested))
        .collect();
    if let Some(first) = mine.first() {
        let unit_prefix = leaf.path.strip_suffix(&leaf.test).unwrap_or("").to_string();
        let describe = |f: &ktap::Failure| {
            let path = f.path.strip_prefix(&unit_prefix).unwrap_or(&f.path);
            let reason = f.reason.trim();
            let reason = reason
                .strip_prefix(&format!("{path}:"))
                .map_or(reason, str::trim);
            if reason.is_empty() {
                format!("not ok {} {path}", f.number)
            } else {
                format!("not ok {} {path}: {reason}", f.number)
            }
        };
        let details = mine.iter().skip(1).map(|f| describe(f)).collect();
        return (Outcome::Fail, describe(first), details);
    }
    match &case.outcome {
        ktap::Outcome::Pass | ktap::Outcome::Xfail(_) => (Outcome::Pass, String::new(), vec![]),
        ktap::Outcome::Skip(reason) => (Outcome::Skip, reason.clone(), vec![]),
        ktap::Outcome::Todo(reason) => (
            Outcome::Skip,
            format!("TODO {reason}").trim().to_string(),
            vec![],
        ),
        ktap::Outcome::Fail => (
            Outcome::Fail,
            format!("not ok {} {}", case.number, leaf.test),
            vec![],
        ),
    }
}

/// From the first to the last printk timestamp in a window.
fn window_duration(window: &[&str]) -> Duration {
    let mut stamps = window.iter().filter_map(|l| timestamp_us(l));
    match (stamps.next(), stamps.next_back()) {
        (Some(first), Some(last)) if last > first => Duration::from_micros(last - first),
        _ => Duration::ZERO,
    }
}

/// `Linux version 6.12.117 (...)`, the first line any kernel prints.
fn kernel_release(lines: &[&str]) -> Option<String> {
    lines.iter().find_map(|line| {
        let text = strip_timestamp(line);
        let at = text.find("Linux version ")?;
        text[at + "Linux version ".len()..]
            .split_whitespace()
            .next()
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(path)
    }

    fn log(path: &str) -> Parsed {
        let text = std::fs::read_to_string(data(path)).expect("test data");
        kernel_log(&text)
    }

    /// `module/test OUTCOME reason` per verdict.
    fn lines(parsed: &Parsed) -> Vec<String> {
        parsed
            .verdicts
            .iter()
            .map(|v| {
                format!("{} {} {}", v.id(), v.outcome.label(), v.reason)
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    const RUN: &str = "runs/hello_ktap_fail_warn_hang";

    #[test]
    fn a_run_folder_is_judged_again_to_the_verdicts_it_recorded() {
        let parsed = run_folder(&data(RUN)).expect("run folder parses");
        let recorded: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(data(RUN).join(VERDICTS_FILE)).expect("verdicts.json"),
        )
        .expect("JSON");
        let recorded: Vec<String> = recorded
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| {
                format!(
                    "{}/{} {} {}",
                    v["module"].as_str().unwrap_or(""),
                    v["test"].as_str().unwrap_or(""),
                    v["outcome"].as_str().unwrap_or(""),
                    v["reason"].as_str().unwrap_or("")
                )
                .trim_end()
                .to_string()
            })
            .collect();
        assert_eq!(lines(&parsed), recorded);
        assert_eq!(
            lines(&parsed),
            [
                "hello/greets PASS",
                "ktap_fail/reports_not_ok FAIL not ok 2 arithmetic_is_broken: check failed: 2 + delta == 4 (ktap_fail.c:21)",
                "warn_init/warns CRASH WARNING in warn_init_trigger",
                "init_hang/hangs TIMEOUT load: init_hang's init did not return within 3s",
            ]
        );
        assert_eq!(parsed.vms, 2);
        assert_eq!(parsed.kernel_release.as_deref(), Some("6.12.117"));
        assert!(
            parsed.notes.iter().any(|n| n.contains(PLAN_FILE)),
            "{:?}",
            parsed.notes
        );
        let crash = &parsed.verdicts[2];
        assert!(crash.details.iter().any(|d| d.starts_with("WARNING: CPU:")));
        assert!(crash.log.iter().any(|l| l.contains("warn_init_init+0x5")));
        // The test that started in vm1 after the crash was judged from vm2, where it ran again.
        assert_eq!(
            parsed.verdicts[3].duration,
            Duration::from_micros(3_000_187)
        );
    }

    #[test]
    fn a_saved_plan_brings_back_the_specs_and_the_users_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(data(RUN)).expect("data") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let folders = [
            root.join("modules/hello"),
            root.join("tests/fixtures/ktap_fail"),
            root.join("tests/fixtures/warn_init"),
            root.join("tests/fixtures/init_hang"),
        ];
        // Where this run built warn_init (it shows in the crash report).
        let copy = PathBuf::from(
            "/root/.cache/kmodlab/modules/a0b136b7955cbaa0/warn_init-8be88deb/warn_init",
        );
        let stricter = Regex::new("Hello, nobody").expect("regex");
        let mut plan = Vec::new();
        for (id, folder) in folders.iter().enumerate() {
            let spec = crate::spec::load(folder).expect("spec");
            let mut test = spec.tests[0].clone();
            if id == 0 {
                // The same facts against a stricter spec: the saved spec is what judges.
                test.expect = vec![stricter.clone()];
            }
            let paths = (copy.clone(), folder.clone());
            let mut saved = SavedTest::new(id as u32, &spec.name, &test, Some(&paths));
            if id == 3 {
                saved.timeout_ms = 3000;
            }
            plan.push(saved);
        }
        plan.push(SavedTest {
            id: 4,
            test: "never_ran".into(),
            ..plan[0].clone()
        });
        save_plan(dir.path(), &plan).expect("plan saved");
        let reread: Vec<SavedTest> = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(PLAN_FILE)).expect("plan.json"),
        )
        .expect("plan.json reads back");
        assert_eq!(reread, plan);

        let parsed = run_folder(dir.path()).expect("parses");
        assert!(parsed.notes.is_empty(), "{:?}", parsed.notes);
        assert_eq!(
            lines(&parsed),
            [
                "hello/greets FAIL expected /Hello, nobody/ in the kernel log; it never appeared",
                "ktap_fail/reports_not_ok FAIL not ok 2 arithmetic_is_broken: check failed: 2 + delta == 4 (ktap_fail.c:21)",
                "warn_init/warns CRASH WARNING in warn_init_trigger",
                "init_hang/hangs TIMEOUT load: init_hang's init did not return within 3s",
                "hello/never_ran ERROR planned, but no VM recorded it and the run wrote no verdict",
            ]
        );
        let warning = parsed.verdicts[2]
            .details
            .iter()
            .find(|d| d.starts_with("WARNING: CPU:"))
            .expect("the marker line");
        assert!(
            warning.contains("fixtures/warn_init/warn_init.c:12") && !warning.contains(".cache"),
            "{warning}"
        );
    }

    #[test]
    fn programs_are_judged_again_with_or_without_the_saved_plan() {
        use kmodlab_protocol::KmsgRecord;
        let dir = tempfile::tempdir().expect("tempdir");
        let program = |test: u32, name: &str, exit: Option<i32>, timed_out: bool, us: u64| {
            Event::ProgramFinished {
                test,
                program: name.into(),
                exit_code: exit,
                signal: timed_out.then(|| "SIGKILL".to_string()),
                timed_out,
                output: "read back: hello\nFAILED: ioctl INFO (line 3)\n".into(),
                duration_us: us,
            }
        };
        let mut events = vec![Event::Hello {
            agent_version: "0.1.0".into(),
            kernel_release: "6.12.117".into(),
            uptime_ms: 500,
            tests: 2,
        }];
        for (test, run) in [
            (0, program(0, "chardev_test", Some(1), false, 40_000)),
            (1, program(1, "hang", None, true, 2_001_000)),
        ] {
            events.extend([
                Event::TestStarted { test, taint: 0 },
                Event::ModuleLoaded {
                    test,
                    module: "kmodlab_chardev".into(),
                    result: OpResult::Ok,
                    duration_us: 900,
                },
                Event::Kmsg(KmsgRecord {
                    seq: u64::from(test),
                    level: 6,
                    facility: 0,
                    ts_us: 1000,
                    text: "kmodlab_chardev: registered".into(),
                    caller: None,
                }),
                Event::WaitEnded {
                    test,
                    end: WaitEnd::Settled,
                    duration_us: 50_000,
                },
                run,
                Event::ModuleUnloaded {
                    test,
                    module: "kmodlab_chardev".into(),
                    result: OpResult::Ok,
                    duration_us: 300,
                },
                Event::TestFinished {
                    test,
                    taint: 4096,
                    duration_us: 100_000,
                },
            ]);
        }
        events.push(Event::Done);
        let jsonl: String = events.iter().map(|e| e.to_line() + "\n").collect();
        std::fs::write(dir.path().join("vm1.events.jsonl"), jsonl).expect("events");

        // No plan.json: each program is expected to exit 0, and a killed one's limit is its duration.
        let parsed = run_folder(dir.path()).expect("parses");
        assert_eq!(
            lines(&parsed),
            [
                "kmodlab_chardev/test0 FAIL chardev_test exited 1, expected 0",
                "kmodlab_chardev/test1 TIMEOUT program hang did not finish within 2s",
            ]
        );

        // With it: the saved exit status, patterns and limits judge.
        let spec = |name: &str, run: Vec<SavedProgram>| SavedTest {
            id: 0,
            module: "chardev".into(),
            test: name.into(),
            load: vec!["kmodlab_chardev".into()],
            params: String::new(),
            ktap: false,
            settle_ms: 50,
            timeout_ms: 10_000,
            expect: vec![],
            forbid: vec![],
            build_copy: None,
            source_dir: None,
            run,
            load_error: None,
        };
        let saved =
            |program: &str, exit: i32, forbid: &[&str], timeout_ms: Option<u64>| SavedProgram {
                program: program.into(),
                args: vec!["/dev/kmodlab_chardev".into()],
                exit,
                expect: vec!["^read back: hello$".into()],
                forbid: forbid.iter().map(|f| f.to_string()).collect(),
                timeout_ms,
            };
        let plan = vec![
            spec(
                "exits_one",
                vec![saved("chardev_test", 1, &["FAILED"], None)],
            ),
            SavedTest {
                id: 1,
                ..spec("hangs", vec![saved("hang", 0, &[], Some(2000))])
            },
        ];
        save_plan(dir.path(), &plan).expect("plan");
        let reread: Vec<SavedTest> = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(PLAN_FILE)).expect("plan.json"),
        )
        .expect("reads back");
        assert_eq!(reread, plan);
        let parsed = run_folder(dir.path()).expect("parses");
        assert_eq!(
            lines(&parsed),
            [
                "chardev/exits_one FAIL chardev_test: forbidden /FAILED/ appeared: FAILED: ioctl INFO (line 3)",
                "chardev/hangs TIMEOUT program hang did not finish within 2s",
            ]
        );
        // A plan.json from before companions has no `run`: its tests ran no programs.
        let old: SavedTest = serde_json::from_str(
            r#"{"id":0,"module":"m","test":"t","load":["m"],"params":"","ktap":false,
                "settle_ms":50,"timeout_ms":1000,"expect":[],"forbid":[]}"#,
        )
        .expect("old plan entry");
        assert!(old.run.is_empty());
    }

    #[test]
    fn a_saved_load_error_judges_the_refusal_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let refused = OpResult::Failed {
            errno: 22,
            name: "EINVAL".into(),
            message: "Invalid argument".into(),
        };
        let events = [
            Event::Hello {
                agent_version: "0.1.0".into(),
                kernel_release: "6.12.117".into(),
                uptime_ms: 500,
                tests: 1,
            },
            Event::TestStarted { test: 0, taint: 0 },
            Event::ModuleLoaded {
                test: 0,
                module: "params_demo".into(),
                result: refused,
                duration_us: 900,
            },
            Event::WaitEnded {
                test: 0,
                end: WaitEnd::NotLoaded,
                duration_us: 0,
            },
            Event::TestFinished {
                test: 0,
                taint: 4096,
                duration_us: 2_000,
            },
            Event::Done,
        ];
        let jsonl: String = events.iter().map(|e| e.to_line() + "\n").collect();
        std::fs::write(dir.path().join("vm1.events.jsonl"), jsonl).expect("events");
        std::fs::write(dir.path().join("verdicts.json"), "[]").expect("verdicts");
        // Without the plan, the refusal is the ERROR any refused load is.
        let parsed = run_folder(dir.path()).expect("parses");
        assert_eq!(
            lines(&parsed),
            ["params_demo/test0 ERROR load params_demo: EINVAL (Invalid argument)"]
        );

        let spec = crate::spec::TestSpec {
            name: "refuses".into(),
            load: vec!["params_demo".into()],
            params: "level=99".into(),
            ktap: false,
            settle: Duration::from_millis(50),
            timeout: Duration::from_secs(10),
            expect: vec![],
            forbid: vec![],
            run: vec![],
            load_error: Some(nix::errno::Errno::EINVAL),
        };
        let saved = SavedTest::new(0, "params", &spec, None);
        assert_eq!(saved.load_error.as_deref(), Some("EINVAL"));
        save_plan(dir.path(), std::slice::from_ref(&saved)).expect("plan");
        let text = std::fs::read_to_string(dir.path().join(PLAN_FILE)).expect("plan.json");
        assert!(text.contains(r#""load_error": "EINVAL""#), "{text}");
        let reread: Vec<SavedTest> = serde_json::from_str(&text).expect("reads back");
        assert_eq!(reread, std::slice::from_ref(&saved));
        assert_eq!(reread[0].spec().expect("spec").load_error, spec.load_error);
        let parsed = run_folder(dir.path()).expect("parses");
        assert_eq!(lines(&parsed), ["params/refuses PASS"]);
        // Another expectation judges the same facts differently.
        let enoent = SavedTest {
            load_error: Some("ENOENT".into()),
            ..saved.clone()
        };
        save_plan(dir.path(), &[enoent]).expect("plan");
        let parsed = run_folder(dir.path()).expect("parses");
        assert_eq!(
            lines(&parsed),
            ["params/refuses FAIL load params_demo: EINVAL, expected ENOENT"]
        );
        // Tests without it keep plan.json as it was; a name this version does not know is an error.
        let plain = SavedTest::new(
            0,
            "params",
            &crate::spec::TestSpec {
                load_error: None,
                ..spec
            },
            None,
        );
        assert!(!serde_json::to_string(&plain)
            .expect("json")
            .contains("load_error"));
        let bogus = SavedTest {
            load_error: Some("EBOGUS".into()),
            ..saved
        };
        let e = format!("{:#}", bogus.spec().expect_err("unknown name"));
        assert!(
            e.contains("plan.json: params/refuses load_error: unknown errno name `EBOGUS`"),
            "{e}"
        );
    }

    #[test]
    fn a_folder_that_is_no_run_folder_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = run_folder(dir.path()).expect_err("refused").to_string();
        assert!(error.contains("not a kmodlab run folder"), "{error}");
        assert!(parse_path(&dir.path().join("absent.log")).is_err());
    }

    #[test]
    fn a_flat_document_gives_one_verdict_per_case() {
        let parsed = log("ktap/captured_ktap_fail.log");
        assert_eq!(
            lines(&parsed),
            [
                "ktap/arithmetic_works PASS",
                "ktap/arithmetic_is_broken FAIL not ok 2 arithmetic_is_broken: check failed: 2 + delta == 4 (ktap_fail.c:21)",
                "ktap/arithmetic_still_works PASS",
            ]
        );
        let failed = &parsed.verdicts[1];
        assert_eq!(
            failed.log,
            [
                "[    1.213842] # arithmetic_is_broken: check failed: 2 + delta == 4 (ktap_fail.c:21)",
                "[    1.213865] not ok 2 arithmetic_is_broken",
            ]
        );
        assert_eq!(failed.duration, Duration::from_micros(23));
        assert!(parsed.found_anything && parsed.kernel_release.is_none());
    }

    #[test]
    fn a_module_prefix_names_the_document() {
        assert_eq!(
            lines(&log("ktap/captured_rust_hello.log")),
            [
                "rust_hello/cpu_has_tsc PASS",
                "rust_hello/tsc_advances PASS"
            ]
        );
        assert_eq!(
            lines(&log("ktap/c_module_prefixed.log")),
            [
                "ktap_demo/list_add_works PASS",
                "ktap_demo/list_del_poisons SKIP TODO poisoning not implemented yet",
                "ktap_demo/needs_iommu SKIP no IOMMU in this VM",
                "ktap_demo/counts_match FAIL not ok 4 counts_match: counted 3, expected 4",
                "ktap_demo/known_bad PASS",
            ]
        );
    }

    #[test]
    fn kunit_suites_give_suite_slash_case_and_the_empty_boot_document_nothing() {
        let parsed = log("ktap/kunit_boot_then_module.log");
        assert_eq!(
            lines(&parsed),
            [
                "demo_math/demo_adds PASS",
                "demo_math/demo_divides FAIL not ok 2 demo_divides: EXPECTATION FAILED at kunit_demo.c:31 / Expected 6 / 2 == 4, but / 6 / 2 == 3 (0x3)",
                "demo_math/demo_params PASS",
                "demo_math/demo_slow SKIP Test not run: too slow",
                "demo_strings/demo_concat PASS",
                "demo_strings/demo_compare PASS",
            ]
        );
        assert_eq!(parsed.kernel_release.as_deref(), Some("6.12.17"));
        let first = &parsed.verdicts[0].log;
        assert_eq!(
            first.first().map(String::as_str),
            Some("[    0.301899]     KTAP version 1")
        );
        assert_eq!(
            first.last().map(String::as_str),
            Some("[    0.302743]     ok 1 demo_adds")
        );
    }

    #[test]
    fn a_crash_is_charged_to_the_case_it_stopped() {
        let parsed = log("ktap/truncated_by_crash.log");
        assert_eq!(
            lines(&parsed),
            [
                "crashy/crashy_first PASS",
                "crashy/#2 CRASH BUG: kernel NULL pointer dereference in crashy_second",
                "crashy/#3 FAIL the plan announced result #3; the log does not have it",
            ]
        );
        let crashed = &parsed.verdicts[1];
        assert!(crashed.details[0].starts_with("BUG: kernel NULL pointer dereference"));
        assert!(crashed
            .log
            .last()
            .is_some_and(|l| l.ends_with("---[ end trace 0000000000000000 ]---")));
    }

    #[test]
    fn a_warning_inside_a_case_that_goes_on_is_that_cases_crash() {
        let text = "\
[    1.0] KTAP version 1
[    1.0] 1..3
[    1.1] ok 1 first
[    1.2] ------------[ cut here ]------------
[    1.2] WARNING: CPU: 0 PID: 7 at demo.c:3 demo_check+0x1/0x2 [demo]
[    1.2] ---[ end trace 0000000000000000 ]---
[    1.3] ok 2 second
[    1.4] ok 3 third
[    2.0] WARNING: CPU: 0 PID: 9 at demo.c:9 demo_late+0x1/0x2 [demo]
[    2.0] ---[ end trace 0000000000000000 ]---
[    2.5] WARNING: CPU: 0 PID: 9 at demo.c:9 demo_later+0x1/0x2 [demo]
";
        let parsed = kernel_log(text);
        assert_eq!(
            lines(&parsed),
            [
                "ktap/first PASS",
                "ktap/second CRASH WARNING in demo_check",
                "ktap/third PASS",
                "kernel/boot CRASH WARNING in demo_late",
            ]
        );
        assert_eq!(
            parsed.verdicts[3].details.last().map(String::as_str),
            Some("then: WARNING in demo_later")
        );
    }

    #[test]
    fn crashes_outside_any_document_are_the_kernels() {
        let parsed = log("oops/captured_warn_init_kmsg.log");
        assert_eq!(
            lines(&parsed),
            ["kernel/boot CRASH WARNING in warn_init_trigger"]
        );
        let parsed = log("oops/null_deref_then_panic.log");
        assert_eq!(
            lines(&parsed),
            ["kernel/boot CRASH BUG: kernel NULL pointer dereference in null_demo_init"]
        );
        assert_eq!(
            parsed.verdicts[0].details.last().map(String::as_str),
            Some("then: kernel panic: Fatal exception")
        );
    }

    #[test]
    fn empty_documents_and_plain_noise_add_nothing() {
        let parsed = kernel_log("KTAP version 1\n1..0\nrandom: crng init done\n");
        assert!(parsed.verdicts.is_empty() && parsed.found_anything);
        let parsed = kernel_log("random: crng init done\nok 1 not in a document\n");
        assert!(parsed.verdicts.is_empty() && !parsed.found_anything);
    }

    #[test]
    fn two_flat_documents_of_one_module_get_distinct_names() {
        let text =
            "m: KTAP version 1\nm: 1..1\nm: ok 1 a\nm: KTAP version 1\nm: 1..1\nm: not ok 1 a\n";
        assert_eq!(
            lines(&kernel_log(text)),
            ["m/a PASS", "m-2/a FAIL not ok 1 a"]
        );
    }

    #[test]
    fn a_suite_that_fails_on_its_own_still_fails() {
        let text = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..1\n    ok 1 c\n# s: suite exit failed\nnot ok 1 s\n";
        assert_eq!(
            lines(&kernel_log(text)),
            ["s/c PASS", "s/suite FAIL not ok 1 s: suite exit failed"]
        );
    }

    #[test]
    fn console_lines_follow_the_last_record_before_the_test() {
        let console = "[    1.000000] old\n[    2.000000] new\ncontinued\n[    3.5] later\n";
        assert_eq!(
            console_after(console, Some(1_500_000)),
            ["[    2.000000] new", "continued", "[    3.5] later"]
        );
        assert_eq!(console_after(console, None).len(), 4);
        assert_eq!(timestamp_us("[   12.000034] x"), Some(12_000_034));
        assert_eq!(timestamp_us("no stamp"), None);
    }
}
