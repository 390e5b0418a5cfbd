//! Judging any kernel log (dmesg, a serial console, `kunit.py run --raw_output`): every top-level
//! KTAP document becomes verdicts, one per case (`suite/case` for KUnit-style suites), and the
//! crash reports [`oops::scan`] finds are charged to the case that was running when they appeared.

use super::records::timestamp_us;
use super::verdict::{Outcome, Verdict};
use super::{ktap, oops};
use kmodlab_protocol::ktap::{classify, strip_prefixes, strip_timestamp, Line};
use std::time::Duration;

/// Longest log window kept for a verdict read from a plain log: a missing result's window runs
/// to the end of the document, which in a boot log can be long.
const WINDOW_MAX: usize = 400;
/// Module name for a KTAP document that names nothing.
const UNNAMED: &str = "ktap";

/// What a kernel log said.
#[derive(Debug, Clone, Default)]
pub struct KernelLog {
    pub verdicts: Vec<Verdict>,
    /// From its `Linux version` line.
    pub kernel_release: Option<String>,
    /// Whether it had anything to judge: a KTAP document or a crash report.
    pub found_anything: bool,
}

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
pub fn kernel_log(text: &str) -> KernelLog {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut parsed = KernelLog {
        kernel_release: kernel_release(&lines),
        ..KernelLog::default()
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

    let (mut boot, mut boot_later): (Option<oops::Crash>, Vec<String>) = (None, vec![]);
    for crash in oops::scan(&lines) {
        parsed.found_anything = true;
        let owner = all.iter_mut().find_map(|(seg, _, leaves)| {
            if crash.line < seg.start || crash.line >= seg.end {
                return None;
            }
            running(leaves, crash.line).and_then(|i| leaves.get_mut(i))
        });
        match owner {
            Some(leaf) => keep_worst(&mut leaf.crash, &mut leaf.later_crashes, crash),
            None => keep_worst(&mut boot, &mut boot_later, crash),
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
    if let Some(crash) = boot {
        let later = boot_later;
        let end = (crash.line + crash.report.len().max(1)).min(lines.len());
        let mut details = crash.report.clone();
        details.extend(later.iter().map(|t| format!("then: {t}")));
        let log = lines[crash.line.min(end)..end]
            .iter()
            .map(|l| l.to_string())
            .collect();
        parsed.verdicts.push(
            Verdict::new("kernel", "boot", crash.class.outcome(), crash.title.clone())
                .with_details(details)
                .with_log(log)
                .with_evidence(),
        );
    }
    parsed
}

/// Puts `crash` in `slot` when the slot is empty or holds only a FAIL finding that a crash
/// outranks (a positive init return, then an oops); the other report's title goes to `later`.
fn keep_worst(slot: &mut Option<oops::Crash>, later: &mut Vec<String>, crash: oops::Crash) {
    let outranks = |held: &oops::Crash| {
        held.class.outcome() == Outcome::Fail && crash.class.outcome() == Outcome::Crash
    };
    match slot.take() {
        Some(held) if !outranks(&held) => {
            later.push(crash.title);
            *slot = Some(held);
        }
        held => {
            later.extend(held.map(|h| h.title));
            *slot = Some(crash);
        }
    }
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
        (Some(crash), _) => (
            crash.class.outcome(),
            crash.title.clone(),
            crash.report.clone(),
        ),
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
        .with_evidence()
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

    fn log(path: &str) -> KernelLog {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(path);
        let text = std::fs::read_to_string(path).expect("test data");
        kernel_log(&text)
    }

    fn lines(parsed: &KernelLog) -> Vec<String> {
        crate::test_support::verdict_lines(&parsed.verdicts)
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
    fn a_positive_init_return_is_a_fail_that_a_later_crash_outranks() {
        let parsed = log("oops/captured_init_positive.log");
        assert_eq!(
            lines(&parsed),
            ["kernel/boot FAIL init returned 1 (positive; the kernel expects 0 or -errno) in init_positive"]
        );
        let text = "do_init_module: 'demo'->init suspiciously returned 1, it should follow 0/-E convention\nWARNING: CPU: 0 PID: 1 at demo.c:9 demo_exit+0x5/0x10 [demo]\n";
        let parsed = kernel_log(text);
        assert_eq!(lines(&parsed), ["kernel/boot CRASH WARNING in demo_exit"]);
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
}
