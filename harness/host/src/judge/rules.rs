//! Judging one test from what was recorded about it. Pure functions over recorded data, so every
//! rule can be tested with saved logs and no VM.
//!
//! A test passes only when its modules loaded (or, with `load_error`, the last one was refused
//! with exactly that errno), its KTAP document (if any) is complete and all ok, every `expect`
//! matched and no `forbid` did, no kernel failure marker appeared in its window, no new taint
//! beyond the out-of-tree ones was set, and it unloaded cleanly. Otherwise the verdict names the
//! first reason, most severe first: a crash explains everything after it.

use super::records::{self, Interruption, ProgramRecord, TestRecord};
use super::unload::{self, Found};
use super::verdict::{Outcome, Verdict};
use super::{ktap, oops, taint};
use crate::spec::TestSpec;
use kmodlab_protocol::{OpResult, WaitEnd};

/// Output lines shown with a failed program.
const PROGRAM_TAIL: usize = 10;

/// Judges one test.
pub fn judge(module: &str, spec: &TestSpec, record: &TestRecord) -> Verdict {
    let decision = decide(spec, record);
    Verdict::new(module, &spec.name, decision.outcome, decision.reason)
        .with_details(decision.details)
        .with_errno(decision.errno)
        .with_duration(record.duration)
        .with_log(log_window(record))
        .with_records(record.kmsg.clone())
        .with_evidence()
}

/// The test's log: the kernel's records, else the console's lines; what each program printed
/// goes where it finished, each line marked with the program's name.
fn log_window(record: &TestRecord) -> Vec<String> {
    let program_lines = |program: &ProgramRecord| {
        let head = format!(
            "[program {}] {} after {:.3}s",
            program.program,
            program_end(program),
            program.duration.as_secs_f64()
        );
        std::iter::once(head).chain(
            program
                .lines()
                .map(|line| format!("[{}] {line}", program.program))
                .collect::<Vec<_>>(),
        )
    };
    let mut log = Vec::new();
    if record.kmsg.is_empty() {
        log.extend(record.console.iter().cloned());
    } else {
        for (i, r) in record.kmsg.iter().enumerate() {
            for program in record.programs.iter().filter(|p| p.kmsg_before == i) {
                log.extend(program_lines(program));
            }
            log.extend(
                r.lines()
                    .map(|line| format!("{} {line}", records::format_stamp(r.ts_us))),
            );
        }
    }
    for program in record
        .programs
        .iter()
        .filter(|p| record.kmsg.is_empty() || p.kmsg_before >= record.kmsg.len())
    {
        log.extend(program_lines(program));
    }
    log
}

/// What the rules concluded about a test: everything of its verdict but its name and its log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decision {
    outcome: Outcome,
    reason: String,
    details: Vec<String>,
    errno: Option<i32>,
}

impl Decision {
    fn new(outcome: Outcome, reason: impl Into<String>) -> Decision {
        Decision {
            outcome,
            reason: reason.into(),
            details: vec![],
            errno: None,
        }
    }

    fn pass() -> Decision {
        Decision::new(Outcome::Pass, "")
    }

    fn details(self, details: Vec<String>) -> Decision {
        Decision { details, ..self }
    }

    fn errno(self, errno: i32) -> Decision {
        Decision {
            errno: Some(errno),
            ..self
        }
    }
}

/// What the rules look at: the spec, the record, and the window's lines.
struct Facts<'a> {
    spec: &'a TestSpec,
    record: &'a TestRecord,
    /// The kernel's lines before the second round of a reload: KTAP and the patterns.
    kmsg: Vec<&'a str>,
    /// Every kernel line, both rounds: the kernel's own reports.
    all_kmsg: Vec<&'a str>,
    console: Vec<&'a str>,
    /// The crash reports in the window, each classified (use after unload, and whose).
    crashes: Vec<Found>,
}

/// The detail saying a report came during the second round of a reload.
const ON_RELOAD: &str =
    "this came on the second load, after the first unload: the first unload left something behind";
/// The detail saying a report came once the module was unloaded, before any second load was
/// reported (in the window after the unload, or during a second load the kernel did not survive).
const AFTER_UNLOAD: &str = "this came after the module was unloaded (in the window after the \
     unload, or on a second load that never returned): the unload left something behind";

/// Whether the report came from the unload itself (the module's exit), whose kernel records the
/// agent may forward after it reported the unload.
fn by_unload(found: &Found) -> bool {
    found
        .crash
        .report
        .iter()
        .any(|l| l.contains("sys_delete_module") || l.contains("Comm: kmodlab-unload"))
}

/// What to say of when a report came, if it came after the first unload.
fn when_detail(found: &Found, record: &TestRecord) -> Option<&'static str> {
    if found.second_round(record) {
        Some(ON_RELOAD)
    } else if record.first_unloaded_at.is_some_and(|u| found.at >= u) && !by_unload(found) {
        Some(AFTER_UNLOAD)
    } else {
        None
    }
}

/// The first rule that finds something, most severe first; a pass when none does.
fn decide(spec: &TestSpec, record: &TestRecord) -> Decision {
    let facts = Facts {
        spec,
        record,
        kmsg: record.first_round_lines(),
        all_kmsg: record.kmsg_lines(),
        console: record.console.iter().map(String::as_str).collect(),
        crashes: unload::crashes(record),
    };
    // With `load_error`, a refusal other than the expected one is a FAIL, reported after the
    // timeouts and crashes, which explain more.
    let rules: [fn(&Facts) -> Option<Decision>; 16] = [
        crash,
        load_failure,
        wait_timeout,
        unload_death,
        interruption,
        program_timeout,
        refusal_mismatch,
        kernel_finding,
        reload_failure,
        ktap_failures,
        expected_lines,
        forbidden_lines,
        judge_programs,
        new_taint,
        unload_failure,
        reunload_failure,
    ];
    let mut decision = rules
        .iter()
        .find_map(|rule| rule(&facts))
        .unwrap_or_else(Decision::pass);
    // Another test's module crashing during a test that finished all the same: the crash is
    // that test's (the session charges it there); this one keeps its verdict, with a note.
    if record.finished {
        for found in unload::charged_elsewhere(record) {
            if let Some(u) = found.foreign(record) {
                decision.details.push(format!(
                    "note: the kernel crashed in {}, unloaded by test {}, during this test ({}); \
                     charged to test {}",
                    u.module, u.test, u.title, u.test
                ));
            }
        }
    }
    decision
}

/// A kernel failure marker anywhere in the window: the agent's records first (complete and in
/// order), the console when the agent could not send them (the kernel was dying). A report in
/// the memory of a module that was unloaded is titled as the use after unload it is; one in a
/// module another test loaded is that test's crash, and this test's only when it interrupted it
/// (an ERROR: the test could not finish).
fn crash(facts: &Facts) -> Option<Decision> {
    let record = facts.record;
    // The console is only consulted for a test the agent could not finish: the guest sends the
    // agent's events by interrupt while console output is synchronous, so console lines can
    // overtake the event that ended the previous test. A finished test is not judged on
    // another test's crash.
    let mine = |f: &&Found| !(record.finished && f.foreign(record).is_some());
    // A report in freed module memory explains the reports around it (lockdep's "bad unlock
    // balance" for a freed work item's lock, printed just before the fault on its name): it is
    // the one judged, from whichever source has it.
    let pick = |console: bool| {
        let mut of_source = facts.crashes.iter().filter(move |f| f.console == console);
        let first = of_source.clone().find(mine);
        of_source
            .find(|f| mine(f) && f.after_unload.is_some())
            .or(first)
    };
    let (agent, console) = (pick(false), pick(true));
    let found = match (agent, console) {
        // When the guest hung just after a report, the agent may have sent only its first lines
        // while the console has it whole: the fuller report of the same crash names the function.
        (Some(agent), Some(console))
            if console.crash.class == agent.crash.class
                && console.crash.report.len() > agent.crash.report.len() =>
        {
            let mut fuller = console.clone();
            fuller.at = agent.at;
            fuller.after_unload = agent.after_unload.clone().or(fuller.after_unload);
            fuller
        }
        (agent, console) => agent.or(console)?.clone(),
    };
    let crash = &found.crash;
    let Some(u) = &found.after_unload else {
        let mut details = crash.report.clone();
        if let Some(when) = when_detail(&found, record) {
            details.insert(0, when.to_string());
        }
        return Some(Decision::new(Outcome::Crash, crash.title.clone()).details(details));
    };
    let mut details = vec![format!(
        "the kernel's report: {}",
        crash
            .report
            .iter()
            .find(|l| oops::is_marker(l))
            .map_or(crash.title.as_str(), String::as_str)
    )];
    if u.test != record.id {
        details.extend(crash.report.iter().cloned());
        return Some(
            Decision::new(
                Outcome::Error,
                format!(
                    "the kernel crashed in {}, unloaded by test {}, and this test could not \
                     finish: {}",
                    u.module, u.test, u.title
                ),
            )
            .details(details),
        );
    }
    // What the first round's instance left behind, hit during the second round.
    if found.second_round(record) && !u.reload {
        details.push(ON_RELOAD.to_string());
    }
    details.push(format!(
        "{} had been unloaded: something it left behind (a timer, work item, tasklet, \
         callback) ran after its code was freed",
        u.module
    ));
    details.extend(crash.report.iter().cloned());
    Some(Decision::new(Outcome::Crash, u.title.clone()).details(details))
}

/// The verdict a crash report in freed module memory earns for the test that loaded the module,
/// when it came during another test's window (`during`): for the session to put in place of the
/// first test's own.
pub fn charged_crash(found: &Found, during: u32) -> Option<(u32, String, Vec<String>)> {
    let u = found.after_unload.as_ref()?;
    let mut details = vec![format!(
        "the crash came after {} was unloaded, during test {during}: something it left behind \
         (a timer, work item, tasklet, callback) ran after its code was freed",
        u.module
    )];
    details.extend(found.crash.report.iter().cloned());
    Some((u.test, u.title.clone(), details))
}

/// A report the kernel survived and blames on the module (`->init suspiciously returned 1`):
/// a FAIL titled like a crash. Only the agent's records count: the kernel is alive to send them.
fn kernel_finding(facts: &Facts) -> Option<Decision> {
    let finding = oops::first_where(&facts.all_kmsg, |class| class.outcome() == Outcome::Fail)?;
    let mut details = finding.report;
    if facts.record.reload_from.is_some()
        && facts.record.record_of_line(finding.line) >= facts.record.reload_from.unwrap_or(0)
    {
        details.insert(0, ON_RELOAD.to_string());
    }
    Some(Decision::new(Outcome::Fail, finding.title).details(details))
}

/// The second round of a reload: a load the kernel refused (a name the first round registered
/// is still taken), or one that hung or died.
fn reload_failure(facts: &Facts) -> Option<Decision> {
    let second_round = &facts.all_kmsg[facts.record.first_round_line_count()..];
    facts
        .record
        .reloads
        .iter()
        .find_map(|(module, result)| match result {
            OpResult::Ok => None,
            OpResult::Failed {
                errno,
                name,
                message,
            } => {
                let reason = with_kernel_reason(
                    format!(
                        "loaded again after unload: {module} was refused ({name}: {message}): \
                         the first unload left something behind"
                    ),
                    second_round,
                    module,
                );
                Some(Decision::new(Outcome::Fail, reason).errno(*errno))
            }
            OpResult::TimedOut => Some(Decision::new(
                Outcome::Timeout,
                format!("loaded again after unload: {module}'s init did not return in time"),
            )),
            OpResult::Died { signal } => Some(Decision::new(
                Outcome::Crash,
                format!(
                    "loaded again after unload: the task loading {module} was killed ({signal})"
                ),
            )),
        })
}

/// The second round's unload failing: the module cannot be unloaded after a reload.
fn reunload_failure(facts: &Facts) -> Option<Decision> {
    refused_unload(&facts.record.reunloads, |module, refusal| {
        (
            Outcome::Fail,
            format!("unloading again after a reload: {module} was refused ({refusal})"),
        )
    })
}

/// The first unload the kernel refused, as `verdict` words it from the module and
/// `NAME: message`.
fn refused_unload(
    unloads: &[(String, OpResult)],
    verdict: impl Fn(&str, String) -> (Outcome, String),
) -> Option<Decision> {
    unloads.iter().find_map(|(module, result)| match result {
        OpResult::Failed {
            errno,
            name,
            message,
        } => {
            let (outcome, reason) = verdict(module, format!("{name}: {message}"));
            Some(Decision::new(outcome, reason).errno(*errno))
        }
        _ => None,
    })
}

/// The index of the load `load_error` is about (the last), when the spec has one.
fn refused_index(spec: &TestSpec) -> Option<usize> {
    spec.load_error?;
    spec.load.len().checked_sub(1)
}

/// A load that timed out, killed its task, or was refused (other than as `load_error` expects).
fn load_failure(facts: &Facts) -> Option<Decision> {
    let spec = facts.spec;
    for (i, (module, result)) in facts.record.loads.iter().enumerate() {
        match result {
            OpResult::Ok => {}
            OpResult::TimedOut => {
                return Some(Decision::new(
                    Outcome::Timeout,
                    format!(
                        "load: {module}'s init did not return within {}s",
                        spec.timeout.as_secs()
                    ),
                ));
            }
            OpResult::Died { signal } => {
                return Some(Decision::new(
                    Outcome::Crash,
                    format!("load: the task loading {module} was killed ({signal})"),
                ));
            }
            // The refusal the spec expects: judged like a load, on what the window shows.
            OpResult::Failed { .. } if Some(i) == refused_index(spec) => {}
            OpResult::Failed {
                errno,
                name,
                message,
            } => {
                let reason = with_kernel_reason(
                    format!("load {module}: {name} ({message})"),
                    &facts.kmsg,
                    module,
                );
                return Some(Decision::new(Outcome::Error, reason).errno(*errno));
            }
        }
    }
    None
}

fn wait_timeout(facts: &Facts) -> Option<Decision> {
    (facts.record.wait == Some(WaitEnd::TimedOut)).then(|| {
        Decision::new(
            Outcome::Timeout,
            format!(
                "test: no complete KTAP result within {}s{}",
                facts.spec.timeout.as_secs(),
                ktap_progress(&facts.kmsg)
            ),
        )
    })
}

/// Each module's unload and what came of it, in unload order (both rounds of a reload).
fn unloads<'a>(facts: &'a Facts) -> impl Iterator<Item = &'a (String, OpResult)> {
    facts.record.unloads.iter().chain(&facts.record.reunloads)
}

/// An unload that did not return or killed its task.
fn unload_death(facts: &Facts) -> Option<Decision> {
    unloads(facts).find_map(|(module, result)| match result {
        OpResult::TimedOut => Some(Decision::new(
            Outcome::Timeout,
            format!("unload: {module}'s exit did not return in time"),
        )),
        OpResult::Died { signal } => Some(Decision::new(
            Outcome::Crash,
            format!("unload: the task unloading {module} was killed ({signal})"),
        )),
        OpResult::Ok | OpResult::Failed { .. } => None,
    })
}

/// A test the host stopped waiting for.
fn interruption(facts: &Facts) -> Option<Decision> {
    let decision = match facts.record.interrupted.as_ref()? {
        Interruption::HostTimeout => Decision::new(
            Outcome::Timeout,
            format!(
                "the guest stopped answering within {}s{}",
                facts.spec.timeout.as_secs(),
                ktap_progress(&facts.kmsg)
            ),
        ),
        Interruption::RunTimeLimit => Decision::new(
            Outcome::Timeout,
            format!(
                "the run's time limit was reached during this test{}",
                ktap_progress(&facts.kmsg)
            ),
        ),
        Interruption::VmEnded => Decision::new(Outcome::Crash, "the VM ended during the test")
            .details(tail(&facts.console, 20)),
        // Not the module's doing: an ERROR naming the cause, never a CRASH.
        Interruption::Infrastructure(cause) => {
            Decision::new(Outcome::Error, cause.as_str()).details(tail(&facts.console, 20))
        }
    };
    Some(decision)
}

/// With `load_error`, the last load had to be refused with that errno; judged after the
/// timeouts and crashes, which explain more.
fn refusal_mismatch(facts: &Facts) -> Option<Decision> {
    let want = facts.spec.load_error?;
    let index = refused_index(facts.spec)?;
    let module = facts.spec.load[index].as_str();
    match facts.record.loads.get(index) {
        Some((_, OpResult::Ok)) => Some(Decision::new(
            Outcome::Fail,
            format!("load {module}: succeeded, expected {want:?}"),
        )),
        Some((_, OpResult::Failed { errno, name, .. })) if *errno != want as i32 => {
            let reason = with_kernel_reason(
                format!("load {module}: {name}, expected {want:?}"),
                &facts.kmsg,
                module,
            );
            Some(Decision::new(Outcome::Fail, reason).errno(*errno))
        }
        // Refused as expected, or a timeout or death, judged like any load's.
        Some(_) => None,
        // An earlier load's failure or an interruption explains this, and is judged first; a
        // finished test without the result never showed the refusal.
        None => Some(Decision::new(
            Outcome::Fail,
            format!("load {module}: the agent reported no result, expected {want:?}"),
        )),
    }
}

/// With `ktap = true`: a document with results must be there, and every case ok.
fn ktap_failures(facts: &Facts) -> Option<Decision> {
    if !facts.spec.ktap {
        return None;
    }
    let documents = ktap::parse(facts.kmsg.iter().copied());
    let with_results: Vec<&ktap::Document> = documents
        .iter()
        .filter(|d| d.plan.is_some() || !d.cases.is_empty())
        .collect();
    if with_results.is_empty() {
        return Some(Decision::new(
            Outcome::Fail,
            "no KTAP output (the spec says ktap = true)",
        ));
    }
    let failures: Vec<ktap::Failure> = with_results.iter().flat_map(|d| d.failures()).collect();
    let first = failures.first()?;
    let details = failures.iter().skip(1).map(describe_failure).collect();
    Some(Decision::new(Outcome::Fail, describe_failure(first)).details(details))
}

fn expected_lines(facts: &Facts) -> Option<Decision> {
    let missing = facts
        .spec
        .expect
        .iter()
        .find(|pattern| !facts.kmsg.iter().any(|line| pattern.is_match(line)))?;
    Some(Decision::new(
        Outcome::Fail,
        format!(
            "expected /{}/ in the kernel log; it never appeared",
            missing.as_str()
        ),
    ))
}

fn forbidden_lines(facts: &Facts) -> Option<Decision> {
    facts.spec.forbid.iter().find_map(|pattern| {
        let line = facts.kmsg.iter().find(|line| pattern.is_match(line))?;
        Some(Decision::new(
            Outcome::Fail,
            format!("forbidden /{}/ appeared: {}", pattern.as_str(), line.trim()),
        ))
    })
}

/// Taint flags the test set beyond the expected out-of-tree ones.
fn new_taint(facts: &Facts) -> Option<Decision> {
    let (before, mut after) = (facts.record.taint_before?, facts.record.taint_after?);
    // Another test's module crashing here taints the kernel (D, W, L): that test's doing.
    if facts
        .crashes
        .iter()
        .any(|f| f.foreign(facts.record).is_some())
    {
        after &= !((1 << 7) | (1 << 9) | (1 << 14));
    }
    let new = taint::unexpected_new(before, after);
    (!new.is_empty()).then(|| {
        Decision::new(
            Outcome::Fail,
            format!("the kernel was tainted: {}", taint::describe(&new)),
        )
    })
}

/// An unload the kernel refused (the first round; [`reunload_failure`] judges the second).
fn unload_failure(facts: &Facts) -> Option<Decision> {
    refused_unload(&facts.record.unloads, |module, refusal| {
        let (name, message) = refusal.split_once(": ").unwrap_or((&refusal, ""));
        (
            Outcome::Error,
            format!("unload {module}: {name} ({message})"),
        )
    })
}

/// `exited 0`, `was killed by SIGSEGV`, `timed out`.
fn program_end(program: &ProgramRecord) -> String {
    match (&program.exit_code, &program.signal) {
        _ if program.timed_out => "timed out and was killed".into(),
        (Some(code), _) => format!("exited {code}"),
        (None, Some(signal)) => format!("was killed by {signal}"),
        (None, None) => "could not be started".into(),
    }
}

/// A program that ran out of time. Checked before KTAP and the kernel log's patterns, like the
/// other timeouts: a program stuck in a read loop also leaves the module's counters and messages
/// wrong, and the hang is the cause to report.
fn program_timeout(facts: &Facts) -> Option<Decision> {
    let spec = facts.spec;
    let (run, result) = spec
        .run
        .iter()
        .zip(&facts.record.programs)
        .find(|(_, result)| result.timed_out)?;
    Some(
        Decision::new(
            Outcome::Timeout,
            format!(
                "program {} did not finish within {}s",
                run.program,
                run.limit(spec).as_secs()
            ),
        )
        .details(result.tail(PROGRAM_TAIL)),
    )
}

/// The test's programs against their `[[test.run]]` entries, program by program: did it run, a
/// signal, the exit status, `expect`, `forbid`.
fn judge_programs(facts: &Facts) -> Option<Decision> {
    let (spec, record) = (facts.spec, facts.record);
    let fail = |reason: String, details: Vec<String>| {
        Some(Decision::new(Outcome::Fail, reason).details(details))
    };
    for (i, run) in spec.run.iter().enumerate() {
        let Some(result) = record.programs.get(i) else {
            return fail(
                format!(
                    "program {} did not run (the agent reported no result)",
                    run.program
                ),
                vec![],
            );
        };
        if result.program != run.program {
            return fail(
                format!(
                    "program {} did not run (the agent reported {} in its place)",
                    run.program, result.program
                ),
                vec![],
            );
        }
        match (result.exit_code, &result.signal) {
            (None, Some(signal)) => {
                return fail(
                    format!("program {} was killed by {signal}", run.program),
                    result.tail(PROGRAM_TAIL),
                )
            }
            (None, None) => {
                let why = result.lines().next().unwrap_or("no reason given").trim();
                let why = why.strip_prefix("[kmodlab-agent] ").unwrap_or(why);
                return fail(
                    format!("program {} could not be started: {why}", run.program),
                    vec![],
                );
            }
            (Some(code), _) if code != run.exit => {
                return fail(
                    format!("{} exited {code}, expected {}", run.program, run.exit),
                    result.tail(PROGRAM_TAIL),
                )
            }
            (Some(_), _) => {}
        }
        for pattern in &run.expect {
            if !result.lines().any(|line| pattern.is_match(line)) {
                return fail(
                    format!(
                        "{}: expected /{}/ in its output; it never appeared",
                        run.program,
                        pattern.as_str()
                    ),
                    result.tail(PROGRAM_TAIL),
                );
            }
        }
        for pattern in &run.forbid {
            if let Some(line) = result.lines().find(|line| pattern.is_match(line)) {
                return fail(
                    format!(
                        "{}: forbidden /{}/ appeared: {}",
                        run.program,
                        pattern.as_str(),
                        line.trim()
                    ),
                    result.tail(PROGRAM_TAIL),
                );
            }
        }
    }
    None
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
/// `reason`, then `; kernel: LINE` with the module's own last word on the matter, if it said one.
fn with_kernel_reason(reason: String, kmsg: &[&str], module: &str) -> String {
    match kernel_reason(kmsg, module) {
        Some(line) => format!("{reason}; kernel: {line}"),
        None => reason,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ProgramSpec;
    use kmodlab_protocol::{Event, KmsgRecord};
    use regex::Regex;
    use std::time::Duration;

    fn program(name: &str) -> ProgramSpec {
        ProgramSpec {
            program: name.into(),
            args: vec![],
            exit: 0,
            expect: vec![],
            forbid: vec![],
            timeout: None,
        }
    }

    fn spec(run: Vec<ProgramSpec>) -> TestSpec {
        TestSpec {
            run,
            ..TestSpec::load_and_unload("companions", vec!["demo".into()])
        }
    }

    fn kmsg(seq: u64, text: &str) -> Event {
        Event::Kmsg(KmsgRecord {
            seq,
            level: 4,
            facility: 0,
            ts_us: seq * 1000,
            text: text.into(),
            caller: None,
        })
    }

    fn finished(name: &str, exit: Option<i32>, signal: Option<&str>, output: &str) -> Event {
        Event::ProgramFinished {
            test: 0,
            program: name.into(),
            exit_code: exit,
            signal: signal.map(String::from),
            timed_out: false,
            output: output.into(),
            duration_us: 1500,
            pid: None,
        }
    }

    /// `chardev_test` killed at the test's limit of 10 s, having printed nothing.
    fn hung_after_ten_seconds() -> Event {
        Event::ProgramFinished {
            test: 0,
            program: "chardev_test".into(),
            exit_code: None,
            signal: Some("SIGKILL".into()),
            timed_out: true,
            output: String::new(),
            duration_us: 10_000_000,
            pid: None,
        }
    }

    /// The record of test 0 after these agent events, in order.
    fn replay(events: &[Event]) -> TestRecord {
        let mut record = TestRecord::new(0);
        for event in events {
            record.apply(event);
        }
        record
    }

    /// A test that loaded, settled, ran `programs` and unloaded cleanly, as the agent reports it.
    fn record(programs: Vec<Event>, extra_kmsg: &[&str]) -> TestRecord {
        let mut events = vec![
            Event::TestStarted { test: 0, taint: 0 },
            Event::ModuleLoaded {
                test: 0,
                module: "demo".into(),
                result: OpResult::Ok,
                duration_us: 900,
                reload: false,
                pid: None,
            },
            kmsg(1, "demo: registered /dev/demo"),
            Event::WaitEnded {
                test: 0,
                end: WaitEnd::Settled,
                duration_us: 50_000,
            },
        ];
        events.extend(programs);
        for (i, text) in extra_kmsg.iter().enumerate() {
            events.push(kmsg(10 + i as u64, text));
        }
        events.push(Event::ModuleUnloaded {
            test: 0,
            module: "demo".into(),
            result: OpResult::Ok,
            duration_us: 300,
            reload: false,
            pid: None,
        });
        events.push(Event::TestFinished {
            test: 0,
            taint: 4096,
            duration_us: 80_000,
        });
        replay(&events)
    }

    #[test]
    fn a_positive_init_return_is_a_fail_and_a_later_crash_outranks_it() {
        let warned = "do_init_module: 'demo'->init suspiciously returned 1, it should follow 0/-E convention\ndo_init_module: loading module anyway...";
        let title = "init returned 1 (positive; the kernel expects 0 or -errno) in demo";
        let (outcome, reason, details) = verdict(&spec(vec![]), &record(vec![], &[warned]));
        assert_eq!((outcome, reason.as_str()), (Outcome::Fail, title));
        assert!(
            details[0].contains("suspiciously returned 1"),
            "{details:?}"
        );
        let oops = [
            warned,
            "BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "RIP: 0010:demo_exit+0x5/0x10 [demo]",
        ];
        let crashed = record(vec![], &oops);
        let (outcome, reason, _) = verdict(&spec(vec![]), &crashed);
        assert_eq!(
            (outcome, reason.as_str()),
            (
                Outcome::Crash,
                "BUG: kernel NULL pointer dereference in demo_exit"
            )
        );
    }

    #[test]
    fn a_fuller_console_report_wins_when_the_test_did_not_finish() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/oops");
        let log = std::fs::read_to_string(dir.join("captured_lock_order.log")).expect("capture");
        let lines: Vec<&str> = log.lines().collect();
        let marker = lines
            .iter()
            .position(|l| l.contains("possible circular locking"))
            .expect("marker");
        let mut record = TestRecord::new(0);
        record.apply(&Event::TestStarted { test: 0, taint: 0 });
        // The agent got out the report's first two lines before the guest hung.
        for (i, line) in lines[marker.saturating_sub(1)..=marker].iter().enumerate() {
            record.apply(&kmsg(
                i as u64,
                kmodlab_protocol::ktap::strip_timestamp(line),
            ));
        }
        record.console = lines.iter().map(|l| l.to_string()).collect();
        record.interrupted = Some(Interruption::HostTimeout);
        let (outcome, reason, _) = verdict(&spec(vec![]), &record);
        assert_eq!(
            (outcome, reason.as_str()),
            (Outcome::Crash, "possible deadlock in lock_order_take_ba")
        );
        // A finished test is judged on the agent's records alone.
        record.finished = true;
        let (_, reason, _) = verdict(&spec(vec![]), &record);
        assert_eq!(reason, "possible deadlock");
    }

    #[test]
    fn a_qemu_ended_from_outside_is_an_error_unless_the_kernel_crashed_first() {
        let cause = "QEMU was killed by SIGKILL, not by kmodlab: an infrastructure failure, not the module's";
        let mut record = TestRecord::new(0);
        record.apply(&Event::TestStarted { test: 0, taint: 0 });
        record.console = vec!["[    1.200000] hello: Hello, kmodlab!".into()];
        record.interrupted = Some(Interruption::Infrastructure(cause.into()));
        let (outcome, reason, details) = verdict(&spec(vec![]), &record);
        assert_eq!((outcome, reason.as_str()), (Outcome::Error, cause));
        assert_eq!(details, ["[    1.200000] hello: Hello, kmodlab!"]);
        // A crash report the kernel printed before explains more, and is the module's.
        record.apply(&kmsg(
            1,
            "BUG: kernel NULL pointer dereference, address: 0000000000000000",
        ));
        let (outcome, _, _) = verdict(&spec(vec![]), &record);
        assert_eq!(outcome, Outcome::Crash);
    }

    fn verdict(spec: &TestSpec, record: &TestRecord) -> (Outcome, String, Vec<String>) {
        let v = judge("demo", spec, record);
        (v.outcome, v.reason, v.details)
    }

    #[test]
    fn programs_that_do_what_the_spec_says_pass_and_their_output_is_logged() {
        let mut c = program("chardev_test");
        c.expect = vec![Regex::new("^read back: hello$").expect("re")];
        c.forbid = vec![Regex::new("FAILED").expect("re")];
        let mut rs = program("chardev_rs");
        rs.exit = 3;
        let spec = spec(vec![c, rs]);
        let record = record(
            vec![
                finished("chardev_test", Some(0), None, "wrote 5\nread back: hello\n"),
                finished("chardev_rs", Some(3), None, ""),
            ],
            &["demo: unregistered"],
        );
        let v = judge("demo", &spec, &record);
        assert_eq!(v.outcome, Outcome::Pass, "{}", v.reason);
        assert!(
            v.log
                .contains(&"[program chardev_test] exited 0 after 0.002s".to_string()),
            "{:?}",
            v.log
        );
        assert!(v
            .log
            .contains(&"[chardev_test] read back: hello".to_string()));
        // In the order it happened: loaded, the programs ran, unloaded.
        let at = |text: &str| {
            v.log
                .iter()
                .position(|l| l.ends_with(text))
                .unwrap_or_else(|| panic!("{text} in {:?}", v.log))
        };
        assert!(at("registered /dev/demo") < at("read back: hello"));
        assert!(at("] exited 3 after 0.002s") < at("demo: unregistered"));
    }

    #[test]
    fn a_wrong_exit_status_fails_with_the_last_lines_of_output() {
        let spec = spec(vec![program("chardev_test")]);
        let output: String = (1..=12).map(|i| format!("line {i}\n")).collect();
        let (outcome, reason, details) = verdict(
            &spec,
            &record(vec![finished("chardev_test", Some(1), None, &output)], &[]),
        );
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(reason, "chardev_test exited 1, expected 0");
        assert_eq!(details.len(), 10);
        assert_eq!(details[0], "chardev_test: line 3");
        assert_eq!(details[9], "chardev_test: line 12");
    }

    #[test]
    fn a_program_past_its_limit_is_a_timeout() {
        let mut p = program("chardev_test");
        p.timeout = Some(Duration::from_secs(5));
        let spec = spec(vec![program("first"), p]);
        let hung = Event::ProgramFinished {
            test: 0,
            program: "chardev_test".into(),
            exit_code: None,
            signal: Some("SIGKILL".into()),
            timed_out: true,
            output:
                "reading...\n[kmodlab-agent] killed (SIGKILL) after its time limit of 5000 ms\n"
                    .into(),
            duration_us: 5_001_000,
            pid: None,
        };
        // Even after an earlier program's failure, the timeout is what is reported.
        let (outcome, reason, details) = verdict(
            &spec,
            &record(vec![finished("first", Some(2), None, ""), hung], &[]),
        );
        assert_eq!(outcome, Outcome::Timeout);
        assert_eq!(reason, "program chardev_test did not finish within 5s");
        assert_eq!(details[0], "chardev_test: reading...");
        // Without its own limit, the test's.
        let spec = super::tests::spec(vec![program("chardev_test")]);
        let hung = hung_after_ten_seconds();
        let (_, reason, _) = verdict(&spec, &record(vec![hung], &[]));
        assert_eq!(reason, "program chardev_test did not finish within 10s");
    }

    #[test]
    fn a_signal_is_a_failure_unless_the_kernel_crashed() {
        let spec = spec(vec![program("chardev_test")]);
        let segv = || finished("chardev_test", None, Some("SIGSEGV"), "about to crash\n");
        let (outcome, reason, details) = verdict(&spec, &record(vec![segv()], &[]));
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(reason, "program chardev_test was killed by SIGSEGV");
        assert_eq!(details, ["chardev_test: about to crash"]);
        // The kernel oopsed in the program's system call: the oops explains the signal.
        let oops = [
            "BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "RIP: 0010:demo_ioctl+0x12/0x40 [demo]",
        ];
        let (outcome, reason, _) = verdict(&spec, &record(vec![segv()], &oops));
        assert_eq!(outcome, Outcome::Crash, "{reason}");
        assert!(reason.contains("demo_ioctl"), "{reason}");
    }

    #[test]
    fn expect_and_forbid_are_matched_against_the_programs_lines() {
        let mut p = program("chardev_test");
        p.expect = vec![
            Regex::new("^read back: hello$").expect("re"),
            Regex::new("all checks passed").expect("re"),
        ];
        p.forbid = vec![Regex::new("FAILED").expect("re")];
        let spec = spec(vec![p]);
        // chardev_test exits 0 having printed `output`.
        let printed = |output: &str| {
            verdict(
                &spec,
                &record(vec![finished("chardev_test", Some(0), None, output)], &[]),
            )
        };
        let (outcome, reason, details) = printed("read back: hello\nFAILED: ioctl INFO (line 3)\n");
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(
            reason,
            "chardev_test: expected /all checks passed/ in its output; it never appeared"
        );
        assert_eq!(details.len(), 2);
        let (_, reason, _) =
            printed("read back: hello\nFAILED: ioctl INFO (line 3)\nall checks passed\n");
        assert_eq!(
            reason,
            "chardev_test: forbidden /FAILED/ appeared: FAILED: ioctl INFO (line 3)"
        );
        // The kernel log is not the program's output: a kernel line does not satisfy `expect`.
        let (_, reason, _) = verdict(
            &spec,
            &record(
                vec![finished("chardev_test", Some(0), None, "")],
                &["read back: hello", "all checks passed"],
            ),
        );
        assert!(reason.contains("expected /^read back: hello$/"), "{reason}");
    }

    #[test]
    fn a_program_that_never_ran_or_could_not_start_fails() {
        let spec = spec(vec![program("chardev_test"), program("chardev_rs")]);
        let (outcome, reason, _) = verdict(
            &spec,
            &record(vec![finished("chardev_test", Some(0), None, "")], &[]),
        );
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(
            reason,
            "program chardev_rs did not run (the agent reported no result)"
        );
        let (_, reason, _) = verdict(
            &spec,
            &record(
                vec![finished(
                    "chardev_test",
                    None,
                    None,
                    "[kmodlab-agent] cannot start /kmodlab/bin/demo/chardev_test: No such file or directory (os error 2)\n",
                )],
                &[],
            ),
        );
        assert_eq!(
            reason,
            "program chardev_test could not be started: cannot start /kmodlab/bin/demo/chardev_test: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_program_timeout_then_the_kernel_log_then_program_failures() {
        let mut spec = spec(vec![program("chardev_test")]);
        spec.expect = vec![Regex::new("demo: unregistered").expect("re")];
        let (_, reason, _) = verdict(
            &spec,
            &record(vec![finished("chardev_test", Some(1), None, "")], &[]),
        );
        assert_eq!(
            reason,
            "expected /demo: unregistered/ in the kernel log; it never appeared"
        );
        // Except for a program's timeout, which like every timeout outranks a failed check.
        let hung = hung_after_ten_seconds();
        let (outcome, reason, _) = verdict(&spec, &record(vec![hung], &[]));
        assert_eq!(outcome, Outcome::Timeout);
        assert_eq!(reason, "program chardev_test did not finish within 10s");
    }

    fn einval() -> OpResult {
        OpResult::Failed {
            errno: 22,
            name: "EINVAL".into(),
            message: "Invalid argument".into(),
        }
    }

    /// `demo_core` then `demo` loaded with `results` (one per module, in order), as the agent
    /// reports it: the loaded ones are unloaded with `unload`, and the kernel printed `lines`.
    fn load_record(results: &[OpResult], lines: &[&str], unload: OpResult) -> TestRecord {
        let mut events = vec![Event::TestStarted { test: 0, taint: 0 }];
        let mut loaded = vec![];
        for (module, result) in ["demo_core", "demo"].iter().zip(results) {
            events.push(Event::ModuleLoaded {
                test: 0,
                module: module.to_string(),
                result: result.clone(),
                duration_us: 900,
                reload: false,
                pid: None,
            });
            if *result != OpResult::Ok {
                break;
            }
            loaded.push(*module);
        }
        for (i, text) in lines.iter().enumerate() {
            events.push(kmsg(i as u64 + 1, text));
        }
        let all_loaded = loaded.len() == 2;
        events.push(Event::WaitEnded {
            test: 0,
            end: if all_loaded {
                WaitEnd::Settled
            } else {
                WaitEnd::NotLoaded
            },
            duration_us: 0,
        });
        for module in loaded.iter().rev() {
            events.push(Event::ModuleUnloaded {
                test: 0,
                module: module.to_string(),
                result: unload.clone(),
                duration_us: 300,
                reload: false,
                pid: None,
            });
        }
        events.push(Event::TestFinished {
            test: 0,
            taint: 4096,
            duration_us: 20_000,
        });
        replay(&events)
    }

    fn refusal_spec(load_error: Option<nix::errno::Errno>) -> TestSpec {
        TestSpec {
            name: "refuses".into(),
            load: vec!["demo_core".into(), "demo".into()],
            load_error,
            ..spec(vec![])
        }
    }

    const REFUSAL_LOG: [&str; 2] = [
        "demo: level 99 is outside 0..10",
        "demo: `99' invalid for parameter `level'",
    ];

    #[test]
    fn a_refusal_with_the_expected_errno_passes_when_the_rest_holds() {
        let mut spec = refusal_spec(Some(nix::errno::Errno::EINVAL));
        spec.expect = vec![Regex::new(r"level 99 is outside").expect("re")];
        let refused = load_record(&[OpResult::Ok, einval()], &REFUSAL_LOG, OpResult::Ok);
        let v = judge("demo", &spec, &refused);
        assert_eq!(
            (v.outcome, v.reason.as_str(), v.errno),
            (Outcome::Pass, "", None)
        );
        // Everything else is still judged: `expect`, `forbid`, the taint, the earlier unloads.
        spec.expect = vec![Regex::new("demo: ready").expect("re")];
        let (outcome, reason, _) = verdict(&spec, &refused);
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(
            reason,
            "expected /demo: ready/ in the kernel log; it never appeared"
        );
        spec.expect = vec![];
        spec.forbid = vec![Regex::new("invalid for parameter").expect("re")];
        let (outcome, reason, _) = verdict(&spec, &refused);
        assert_eq!(outcome, Outcome::Fail);
        assert!(
            reason.starts_with("forbidden /invalid for parameter/ appeared"),
            "{reason}"
        );
        spec.forbid = vec![];
        let mut tainted = refused.clone();
        tainted.taint_after = Some(4096 | 512);
        let (outcome, reason, _) = verdict(&spec, &tainted);
        assert_eq!(outcome, Outcome::Fail);
        assert!(reason.starts_with("the kernel was tainted"), "{reason}");
        let busy = OpResult::Failed {
            errno: 11,
            name: "EAGAIN".into(),
            message: "Resource temporarily unavailable".into(),
        };
        let stuck = load_record(&[OpResult::Ok, einval()], &REFUSAL_LOG, busy);
        let (outcome, reason, _) = verdict(&spec, &stuck);
        assert_eq!(outcome, Outcome::Error);
        assert_eq!(
            reason,
            "unload demo_core: EAGAIN (Resource temporarily unavailable)"
        );
    }

    #[test]
    fn a_load_that_should_have_been_refused_fails() {
        let spec = refusal_spec(Some(nix::errno::Errno::EINVAL));
        let loaded = load_record(
            &[OpResult::Ok, OpResult::Ok],
            &["demo: ready"],
            OpResult::Ok,
        );
        let v = judge("demo", &spec, &loaded);
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(v.reason, "load demo: succeeded, expected EINVAL");
        assert_eq!(v.errno, None);
        // A timeout while unloading it explains more, and is reported instead.
        let hung = load_record(&[OpResult::Ok, OpResult::Ok], &[], OpResult::TimedOut);
        let (outcome, reason, _) = verdict(&spec, &hung);
        assert_eq!(outcome, Outcome::Timeout);
        assert_eq!(reason, "unload: demo's exit did not return in time");
    }

    #[test]
    fn a_refusal_with_another_errno_fails_with_both_names() {
        let spec = refusal_spec(Some(nix::errno::Errno::EINVAL));
        let enospc = OpResult::Failed {
            errno: 28,
            name: "ENOSPC".into(),
            message: "No space left on device".into(),
        };
        let record = load_record(
            &[OpResult::Ok, enospc],
            &["demo: `a-label-that-is-too-long' too large for parameter `label'"],
            OpResult::Ok,
        );
        let v = judge("demo", &spec, &record);
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(
            v.reason,
            "load demo: ENOSPC, expected EINVAL; kernel: demo: `a-label-that-is-too-long' too large for parameter `label'"
        );
        assert_eq!(v.errno, Some(28));
        // Without the kernel's word, just the names.
        let quiet = load_record(
            &[
                OpResult::Ok,
                OpResult::Failed {
                    errno: 2,
                    name: "ENOENT".into(),
                    message: "No such file or directory".into(),
                },
            ],
            &[],
            OpResult::Ok,
        );
        let (_, reason, _) = verdict(&spec, &quiet);
        assert_eq!(reason, "load demo: ENOENT, expected EINVAL");
    }

    #[test]
    fn only_the_last_load_may_be_refused_and_crashes_stay_crashes() {
        // An earlier module's refusal is an ERROR as always, even with the expected errno.
        let spec = refusal_spec(Some(nix::errno::Errno::EINVAL));
        let early = load_record(&[einval()], &[], OpResult::Ok);
        let (outcome, reason, _) = verdict(&spec, &early);
        assert_eq!(outcome, Outcome::Error);
        assert_eq!(reason, "load demo_core: EINVAL (Invalid argument)");
        // Without `load_error`, the last load's refusal is an ERROR too.
        let refused = load_record(&[OpResult::Ok, einval()], &REFUSAL_LOG, OpResult::Ok);
        let v = judge("demo", &refusal_spec(None), &refused);
        assert_eq!(v.outcome, Outcome::Error);
        assert_eq!(
            v.reason,
            "load demo: EINVAL (Invalid argument); kernel: demo: `99' invalid for parameter `level'"
        );
        assert_eq!(v.errno, Some(22));
        // An oops in init is a crash, whatever the spec expected of the load.
        let oops = [
            "BUG: kernel NULL pointer dereference, address: 0000000000000000",
            "RIP: 0010:demo_init+0x12/0x40 [demo]",
        ];
        let died = OpResult::Died {
            signal: "SIGKILL".into(),
        };
        let crashed = load_record(&[OpResult::Ok, died.clone()], &oops, OpResult::Ok);
        let (outcome, reason, _) = verdict(&spec, &crashed);
        assert_eq!(outcome, Outcome::Crash, "{reason}");
        assert!(reason.contains("demo_init"), "{reason}");
        let killed = load_record(&[OpResult::Ok, died], &[], OpResult::Ok);
        let (outcome, reason, _) = verdict(&spec, &killed);
        assert_eq!(outcome, Outcome::Crash);
        assert_eq!(reason, "load: the task loading demo was killed (SIGKILL)");
        let hung = load_record(&[OpResult::Ok, OpResult::TimedOut], &[], OpResult::Ok);
        let (outcome, _, _) = verdict(&spec, &hung);
        assert_eq!(outcome, Outcome::Timeout);
        // A finished test that never reported the last load did not show the refusal.
        let mut missing = load_record(&[OpResult::Ok, einval()], &[], OpResult::Ok);
        missing.loads.pop();
        let (outcome, reason, _) = verdict(&spec, &missing);
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(
            reason,
            "load demo: the agent reported no result, expected EINVAL"
        );
    }
}
