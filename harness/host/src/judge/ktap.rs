//! KTAP parsing: turns the lines a kernel printed into documents, cases and failures.
//!
//! Built on [`kmodlab_protocol::ktap::classify`], so the host reads lines exactly as the agent did
//! when it decided a document was complete. Follows `Documentation/dev-tools/ktap.rst`:
//! a nested document is a more indented run of lines (KTAP says two spaces per level, KUnit prints
//! four, old KUnit a tab) ending just before its parent's result line, which it is attached to.
//!
//! Kernel logs are messy, so the parser never rejects input: timestamps and `module: ` prefixes
//! are removed, unknown lines become diagnostics of the case they precede, a log can hold several
//! documents (KUnit prints an empty one at boot), and a document cut short by a crash is kept with
//! what it printed. Work is linear in the input; nesting is capped at [`MAX_DEPTH`].

use kmodlab_protocol::ktap::{classify, strip_prefixes, Directive, Line};
use serde::Serialize;

/// Deeper structure than this is read as diagnostics, so hostile input cannot make the
/// recursive helpers (or dropping the tree) exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// Longest failure reason built from diagnostics, in bytes; the full text stays in the case.
const REASON_MAX: usize = 300;

/// One KTAP document: a version line, an optional plan and its results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    /// `1` for `KTAP version 1`, `14` for `TAP version 14`; empty for a nested document that had
    /// no version line of its own (TAP 14 style, `# Subtest:` only).
    pub version: String,
    /// From `# Subtest: name`, when the document has one.
    pub name: Option<String>,
    pub plan: Option<u32>,
    pub cases: Vec<Case>,
    /// Every planned result was printed. Without a plan, a nested document is complete when its
    /// parent's result line closed it; a top-level one cannot be known complete and is not.
    pub complete: bool,
}

/// One result line, with the nested document and diagnostics that came before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    pub number: u32,
    pub name: String,
    pub outcome: Outcome,
    pub subtests: Option<Document>,
    /// Lines printed since the previous result at this level (`#` removed from diagnostics).
    pub diagnostics: Vec<String>,
    /// The result line's own text after `#` when it is not a SKIP/TODO/XFAIL directive
    /// (ktap.rst's "diagnostic data", e.g. `TIMEOUT 30 seconds`); empty when there is none.
    pub comment: String,
}

/// What a result means, per ktap.rst.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Pass,
    Fail,
    /// `# SKIP reason`, whether the line said `ok` or `not ok`.
    Skip(String),
    /// `# TODO reason`: known broken, so a `not ok` is not a failure.
    Todo(String),
    /// `# XFAIL reason`: failed as expected, which passes.
    Xfail(String),
}

/// Something that makes a document fail: a `not ok` case or a missing result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Case names from the top down, joined by `.`: `suite.case`, or `case` for a flat document.
    pub path: String,
    pub number: u32,
    /// Why, in one line; empty when the log says nothing more than `not ok`.
    pub reason: String,
}

/// Leaf results of a document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
}

/// Parses every top-level document in a kernel log, in order.
pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Document> {
    let mut parser = Parser::default();
    for line in lines {
        parser.line(line);
    }
    parser.finish()
}

/// [`parse`] over a whole text, split into lines.
pub fn parse_text(text: &str) -> Vec<Document> {
    parse(text.lines())
}

impl Outcome {
    fn from_result(ok: bool, directive: Option<Directive>, reason: &str) -> Outcome {
        match directive {
            Some(Directive::Skip) => Outcome::Skip(reason.to_string()),
            Some(Directive::Todo) => Outcome::Todo(reason.to_string()),
            Some(Directive::Xfail) => Outcome::Xfail(reason.to_string()),
            None if ok => Outcome::Pass,
            None => Outcome::Fail,
        }
    }

    /// Only a plain `not ok` fails; SKIP, TODO and XFAIL do not.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Fail)
    }
}

impl Document {
    fn new(version: &str) -> Document {
        Document {
            version: version.to_string(),
            name: None,
            plan: None,
            cases: Vec::new(),
            complete: false,
        }
    }

    /// Every failure, depth first in printed order: failed leaf cases (a failed parent is named
    /// only when none of its subtests explains it), then results the plan announced but the log
    /// lacks, one entry per missing range.
    pub fn failures(&self) -> Vec<Failure> {
        let mut out = Vec::new();
        collect_failures(self, "", &mut out);
        out
    }

    /// Counts of leaf results, recursively: a case with subtests counts its subtests instead of
    /// itself, except that a failed parent whose subtests show no failure counts as one failure.
    /// Each missing planned result counts as failed. TODO counts as skipped, XFAIL as passed.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        add_counts(self, &mut counts);
        counts
    }

    /// True when nothing failed and every planned result is present.
    pub fn passed(&self) -> bool {
        self.complete && self.failures().is_empty()
    }

    /// Numbers in `1..=plan` with no result, as inclusive ranges. Linear in the cases, whatever
    /// the plan claims.
    pub fn missing(&self) -> Vec<(u32, u32)> {
        let Some(plan) = self.plan else {
            return Vec::new();
        };
        let mut numbers: Vec<u32> = self
            .cases
            .iter()
            .map(|c| c.number)
            .filter(|&n| n >= 1 && n <= plan)
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        let mut ranges = Vec::new();
        // u64 so that a result numbered u32::MAX does not wrap the cursor.
        let mut next = 1u64;
        for n in numbers {
            if u64::from(n) > next {
                ranges.push((next as u32, n - 1));
            }
            next = u64::from(n) + 1;
        }
        if u64::from(plan) >= next {
            ranges.push((next as u32, plan));
        }
        ranges
    }
}

fn join_path(prefix: &str, case: &Case) -> String {
    let label = if case.name.is_empty() {
        format!("#{}", case.number)
    } else {
        case.name.clone()
    };
    if prefix.is_empty() {
        label
    } else {
        format!("{prefix}.{label}")
    }
}

fn collect_failures(doc: &Document, prefix: &str, out: &mut Vec<Failure>) {
    for case in &doc.cases {
        let path = join_path(prefix, case);
        let before = out.len();
        if let Some(sub) = &case.subtests {
            collect_failures(sub, &path, out);
        }
        if case.outcome.is_failure() && out.len() == before {
            out.push(Failure {
                path,
                number: case.number,
                reason: failure_reason(case),
            });
        }
    }
    let last = doc.cases.iter().map(|c| c.number).max().unwrap_or(0);
    for (first, end) in doc.missing() {
        let which = if first == end {
            format!("result {first}")
        } else {
            format!("results {first}..{end}")
        };
        let why = if first > last {
            "the module stopped printing KTAP"
        } else {
            "no result line has this number"
        };
        let path = match (prefix, &doc.name) {
            ("", Some(name)) => name.clone(),
            ("", None) => "ktap".to_string(),
            (prefix, _) => prefix.to_string(),
        };
        out.push(Failure {
            path,
            number: first,
            reason: format!("missing {which}: {why}"),
        });
    }
}

/// One line saying why a case failed: its `# data` if the result line had some, else its
/// diagnostics from the first that looks like an assertion message (KUnit prints
/// `# case: EXPECTATION FAILED at file:line` then `Expected a == b, but` lines).
fn failure_reason(case: &Case) -> String {
    if !case.comment.is_empty() {
        return case.comment.clone();
    }
    let lines = &case.diagnostics;
    let start = lines
        .iter()
        .position(|l| l.contains("FAIL") || l.contains("Expected") || l.contains("ASSERT"))
        .unwrap_or(0);
    let mut reason = String::new();
    for line in lines.iter().skip(start) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if !reason.is_empty() {
            reason.push_str(" / ");
        }
        reason.push_str(&words.join(" "));
        if reason.len() > REASON_MAX {
            let mut cut = REASON_MAX;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            reason.push_str("...");
            break;
        }
    }
    reason
}

fn add_counts(doc: &Document, counts: &mut Counts) {
    for case in &doc.cases {
        match &case.subtests {
            Some(sub) if !sub.cases.is_empty() || sub.plan.is_some_and(|p| p > 0) => {
                let failed_before = counts.failed;
                add_counts(sub, counts);
                if case.outcome.is_failure() && counts.failed == failed_before {
                    counts.failed = counts.failed.saturating_add(1);
                }
            }
            _ => match case.outcome {
                Outcome::Pass | Outcome::Xfail(_) => {
                    counts.passed = counts.passed.saturating_add(1)
                }
                Outcome::Fail => counts.failed = counts.failed.saturating_add(1),
                Outcome::Skip(_) | Outcome::Todo(_) => {
                    counts.skipped = counts.skipped.saturating_add(1)
                }
            },
        }
    }
    for (first, end) in doc.missing() {
        counts.failed = counts
            .failed
            .saturating_add((end - first).saturating_add(1));
    }
}

/// A document being read, with what is waiting for its next result line.
struct Frame {
    indent: usize,
    doc: Document,
    /// Opened by a `# Subtest:` line rather than a version line (TAP 14 style).
    implicit: bool,
    /// Lines since the last result at this level.
    pending_diag: Vec<String>,
    /// A nested document that ended and waits for this level's next result line.
    pending_sub: Option<Document>,
    /// Numbers of the result lines really printed (not the stand-ins for abandoned subtests).
    printed: Vec<u32>,
}

/// Reason given to a case the parser had to create for a nested document whose parent's result
/// line never came.
const NO_RESULT_LINE: &str = "no result line: the module stopped printing KTAP inside this test";

impl Frame {
    fn new(indent: usize, version: &str, implicit: bool) -> Frame {
        Frame {
            indent,
            doc: Document::new(version),
            implicit,
            pending_diag: Vec::new(),
            pending_sub: None,
            printed: Vec::new(),
        }
    }

    /// Takes a nested document that ended; one already waiting was abandoned without a result
    /// line, so it gets a stand-in failed case rather than being lost.
    fn park(&mut self, sub: Document, diag: Vec<String>) {
        if let Some(old) = self.pending_sub.take() {
            self.add_stand_in(old);
        }
        self.pending_sub = Some(sub);
        self.pending_diag.extend(diag);
    }

    fn add_stand_in(&mut self, sub: Document) {
        let number = self
            .doc
            .cases
            .last()
            .map_or(1, |c| c.number.saturating_add(1));
        let mut diagnostics = std::mem::take(&mut self.pending_diag);
        diagnostics.push(NO_RESULT_LINE.to_string());
        self.doc.cases.push(Case {
            number,
            name: sub.name.clone().unwrap_or_default(),
            outcome: Outcome::Fail,
            subtests: Some(sub),
            diagnostics,
            comment: String::new(),
        });
    }

    /// As many results as planned: later lines cannot belong to this document's cases.
    fn looks_finished(&self) -> bool {
        self.doc
            .plan
            .is_some_and(|plan| u32::try_from(self.doc.cases.len()).is_ok_and(|n| n >= plan))
    }

    /// Finishes the document. `closed_by_parent`: its parent's result line ended it (rather than
    /// the input ending or another document starting).
    fn close(mut self, closed_by_parent: bool) -> (Document, Vec<String>) {
        self.doc.complete = match self.doc.plan {
            Some(plan) => {
                self.printed.sort_unstable();
                self.printed.dedup();
                let present = self
                    .printed
                    .iter()
                    .filter(|&&n| n >= 1 && n <= plan)
                    .count();
                u32::try_from(present).is_ok_and(|present| present == plan)
            }
            None => closed_by_parent,
        };
        if let Some(sub) = self.pending_sub.take() {
            self.add_stand_in(sub);
        }
        (self.doc, self.pending_diag)
    }
}

#[derive(Default)]
struct Parser {
    done: Vec<Document>,
    /// Open documents, outermost first; `stack[0]` is the top-level one.
    stack: Vec<Frame>,
}

impl Parser {
    fn line(&mut self, raw: &str) {
        match classify(raw) {
            Line::Version { indent, version } => self.version(raw, indent, version),
            Line::Plan { indent, count } => self.plan(raw, indent, count),
            Line::SubtestHeader { indent, name } => self.subtest(raw, indent, name),
            Line::TestResult {
                indent,
                ok,
                number,
                description,
                directive,
                reason,
            } => self.result(raw, indent, ok, number, description, directive, reason),
            Line::Diagnostic { text, .. } => self.diagnostic(text),
            Line::Other => self.diagnostic(strip_prefixes(raw).trim()),
        }
    }

    fn diagnostic(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.stack.len() == 1 && self.stack.first().is_some_and(Frame::looks_finished) {
            // Noise after a finished document would be kept until the end only to be dropped.
            return;
        }
        if let Some(frame) = self.stack.last_mut() {
            frame.pending_diag.push(text.to_string());
        }
    }

    /// A structural line that fits no open document is kept as text, as ktap.rst says of
    /// unknown lines.
    fn stray(&mut self, raw: &str) {
        self.diagnostic(strip_prefixes(raw).trim());
    }

    /// The innermost open document whose lines are at exactly `indent`.
    fn level(&self, indent: usize) -> Option<usize> {
        self.stack.iter().rposition(|f| f.indent == indent)
    }

    fn version(&mut self, raw: &str, indent: usize, version: &str) {
        match self.stack.first() {
            Some(top) if indent > top.indent => {}
            _ => {
                // Not nested in anything open: a new top-level document.
                self.finish_all();
                self.stack.push(Frame::new(indent, version, false));
                return;
            }
        }
        if let Some(last) = self.stack.last_mut() {
            // `# Subtest:` first, version second: still one document.
            if last.indent == indent
                && last.implicit
                && last.doc.plan.is_none()
                && last.doc.cases.is_empty()
            {
                last.doc.version = version.to_string();
                last.implicit = false;
                return;
            }
        }
        // Open documents at this depth or deeper ended without their parent's result line.
        self.unwind(|f| f.indent >= indent);
        self.push(raw, Frame::new(indent, version, false));
    }

    fn plan(&mut self, raw: &str, indent: usize, count: u32) {
        let Some(level) = self.level(indent) else {
            return self.stray(raw);
        };
        self.unwind_above(level);
        let Some(frame) = self.stack.last_mut() else {
            return;
        };
        match frame.doc.plan {
            None => frame.doc.plan = Some(count),
            // A second plan at one level is not KTAP.
            Some(_) => self.stray(raw),
        }
    }

    fn subtest(&mut self, raw: &str, indent: usize, name: &str) {
        let Some(top) = self.stack.first() else {
            return;
        };
        if indent < top.indent {
            return self.stray(raw);
        }
        self.unwind(|f| f.indent > indent);
        let Some(last) = self.stack.last_mut() else {
            return;
        };
        if last.indent == indent && last.doc.name.is_none() && last.doc.cases.is_empty() {
            last.doc.name = Some(name.to_string());
            return;
        }
        if last.indent == indent {
            if self.stack.len() == 1 {
                return self.stray(raw);
            }
            // A sibling of a subtest whose parent result never came (TAP 14 style has no version
            // line to mark the new start).
            self.unwind(|f| f.indent >= indent);
        }
        let mut frame = Frame::new(indent, "", true);
        frame.doc.name = Some(name.to_string());
        self.push(raw, frame);
    }

    #[allow(clippy::too_many_arguments)]
    fn result(
        &mut self,
        raw: &str,
        indent: usize,
        ok: bool,
        number: u32,
        description: &str,
        directive: Option<Directive>,
        reason: &str,
    ) {
        let Some(level) = self.level(indent) else {
            return self.stray(raw);
        };
        // Close the documents nested below this level: the one right below belongs to this result,
        // any deeper ones were abandoned.
        let mut carried: Option<(Document, Vec<String>)> = None;
        while self.stack.len() > level + 1 {
            let Some(mut frame) = self.stack.pop() else {
                break;
            };
            if let Some((doc, diag)) = carried.take() {
                frame.park(doc, diag);
            }
            carried = Some(frame.close(self.stack.len() == level + 1));
        }
        let Some(frame) = self.stack.last_mut() else {
            return;
        };
        let subtests = match carried {
            Some((doc, diag)) => {
                if let Some(old) = frame.pending_sub.take() {
                    frame.add_stand_in(old);
                }
                frame.pending_diag.extend(diag);
                Some(doc)
            }
            None => frame.pending_sub.take(),
        };
        let diagnostics = std::mem::take(&mut frame.pending_diag);
        let comment = if directive.is_none() {
            reason.to_string()
        } else {
            String::new()
        };
        frame.printed.push(number);
        frame.doc.cases.push(Case {
            number,
            name: description.to_string(),
            outcome: Outcome::from_result(ok, directive, reason),
            subtests,
            diagnostics,
            comment,
        });
    }

    /// Opens a nested frame unless that would nest too deep (then the line is kept as text).
    fn push(&mut self, raw: &str, frame: Frame) {
        if self.stack.len() >= MAX_DEPTH {
            self.stray(raw);
        } else {
            self.stack.push(frame);
        }
    }

    /// Closes nested frames (never the top-level one) while `ends` holds for the innermost,
    /// handing each document to its parent.
    fn unwind(&mut self, ends: impl Fn(&Frame) -> bool) {
        while self.stack.len() > 1 && self.stack.last().is_some_and(&ends) {
            self.unwind_one();
        }
    }

    fn unwind_one(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let (doc, diag) = frame.close(false);
        if let Some(parent) = self.stack.last_mut() {
            parent.park(doc, diag);
        }
    }

    /// Closes every frame nested inside `stack[level]`.
    fn unwind_above(&mut self, level: usize) {
        while self.stack.len() > level + 1 {
            self.unwind_one();
        }
    }

    fn finish_all(&mut self) {
        self.unwind(|_| true);
        if let Some(top) = self.stack.pop() {
            self.done.push(top.close(false).0);
        }
    }

    fn finish(mut self) -> Vec<Document> {
        self.finish_all();
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(passed: u32, failed: u32, skipped: u32) -> Counts {
        Counts {
            passed,
            failed,
            skipped,
        }
    }

    fn one(log: &str) -> Document {
        let mut docs = parse_text(log);
        assert_eq!(docs.len(), 1, "{docs:#?}");
        docs.remove(0)
    }

    fn names(doc: &Document) -> Vec<&str> {
        doc.cases.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn flat_document() {
        let doc = one(
            "KTAP version 1\n1..3\nok 1 - first\nnot ok 2 second\nok 3 third # SKIP no device\n",
        );
        assert_eq!(doc.version, "1");
        assert_eq!(doc.plan, Some(3));
        assert!(doc.complete);
        assert_eq!(names(&doc), ["first", "second", "third"]);
        assert_eq!(doc.cases[1].outcome, Outcome::Fail);
        assert_eq!(doc.cases[2].outcome, Outcome::Skip("no device".into()));
        assert_eq!(doc.counts(), counts(1, 1, 1));
        assert_eq!(
            doc.failures(),
            vec![Failure {
                path: "second".into(),
                number: 2,
                reason: String::new()
            }]
        );
        assert!(!doc.passed());
    }

    #[test]
    fn directive_semantics_follow_ktap_rst() {
        let doc = one("KTAP version 1\n1..4\nnot ok 1 a # SKIP x\nnot ok 2 b # TODO y\nnot ok 3 c # XFAIL z\nok 4 d # TODO\n");
        assert_eq!(doc.cases[0].outcome, Outcome::Skip("x".into()));
        assert_eq!(doc.cases[1].outcome, Outcome::Todo("y".into()));
        assert_eq!(doc.cases[2].outcome, Outcome::Xfail("z".into()));
        assert!(doc.failures().is_empty());
        assert_eq!(doc.counts(), counts(1, 0, 3));
        assert!(doc.passed());
    }

    const KUNIT: &str = "\
[    1.100000] KTAP version 1
[    1.100001] 1..2
[    1.100002]     KTAP version 1
[    1.100003]     # Subtest: demo
[    1.100004]     # module: demo_test
[    1.100005]     1..3
[    1.100006]     ok 1 demo_adds
[    1.100007]     # demo_divides: EXPECTATION FAILED at demo_test.c:31
[    1.100008]     Expected 6 / 2 == 4, but
[    1.100009]         6 / 2 == 3 (0x3)
[    1.100010]     not ok 2 demo_divides
[    1.100011]         KTAP version 1
[    1.100012]         # Subtest: demo_params
[    1.100013]         ok 1 zero
[    1.100014]         ok 2 one # SKIP odd
[    1.100015]     # demo_params: pass:1 fail:0 skip:1 total:2
[    1.100016]     ok 3 demo_params
[    1.100017] # demo: pass:2 fail:1 skip:0 total:3
[    1.100018] # Totals: pass:2 fail:1 skip:1 total:4
[    1.100019] not ok 1 demo
[    1.100020]     KTAP version 1
[    1.100021]     # Subtest: other
[    1.100022]     1..1
[    1.100023]     ok 1 other_works
[    1.100024] ok 2 other
";

    #[test]
    fn kunit_suites_and_parameterised_cases_nest() {
        let doc = one(KUNIT);
        assert!(doc.complete);
        assert_eq!(names(&doc), ["demo", "other"]);
        let demo = doc.cases[0].subtests.as_ref().expect("suite document");
        assert_eq!(demo.name.as_deref(), Some("demo"));
        assert_eq!(demo.plan, Some(3));
        assert!(demo.complete);
        assert_eq!(names(demo), ["demo_adds", "demo_divides", "demo_params"]);
        let params = demo.cases[2].subtests.as_ref().expect("parameter document");
        assert_eq!(params.name.as_deref(), Some("demo_params"));
        assert_eq!(params.plan, None);
        assert!(params.complete, "closed by its parent's result line");
        assert_eq!(names(params), ["zero", "one"]);
        assert!(demo.cases[2]
            .diagnostics
            .iter()
            .any(|d| d.contains("pass:1 fail:0 skip:1")));
        assert_eq!(
            demo.cases[1].diagnostics,
            [
                "demo_divides: EXPECTATION FAILED at demo_test.c:31",
                "Expected 6 / 2 == 4, but",
                "6 / 2 == 3 (0x3)"
            ]
        );
        assert_eq!(doc.counts(), counts(3, 1, 1));
        let failures = doc.failures();
        assert_eq!(
            failures.len(),
            1,
            "the suite's own not ok is explained by its case: {failures:?}"
        );
        assert_eq!(failures[0].path, "demo.demo_divides");
        assert_eq!(failures[0].number, 2);
        assert_eq!(
            failures[0].reason,
            "demo_divides: EXPECTATION FAILED at demo_test.c:31 / Expected 6 / 2 == 4, but / 6 / 2 == 3 (0x3)"
        );
    }

    #[test]
    fn module_prefixes_and_interleaved_noise() {
        let log = "\
[    2.0] demo: loading out-of-tree module taints kernel.
[    2.1] demo: KTAP version 1
[    2.1] demo: 1..2
[    2.2] random: crng init done
[    2.3] demo: # checking the queue
[    2.3] demo: ok 1 - queue_works
[    2.4] demo:     ok 5 - indented noise that is not a subtest
[    2.5] demo: not ok 2 - flush_works # TIMEOUT 5 seconds
";
        let doc = one(log);
        assert!(doc.complete);
        assert_eq!(names(&doc), ["queue_works", "flush_works"]);
        assert_eq!(
            doc.cases[0].diagnostics,
            ["random: crng init done", "checking the queue"]
        );
        // An indented result with no subtest header is not a subtest: it stays text.
        assert_eq!(
            doc.cases[1].diagnostics,
            ["ok 5 - indented noise that is not a subtest"]
        );
        assert_eq!(doc.cases[1].comment, "TIMEOUT 5 seconds");
        assert_eq!(doc.cases[1].subtests, None);
        assert_eq!(doc.failures()[0].reason, "TIMEOUT 5 seconds");
        assert_eq!(doc.failures()[0].path, "flush_works");
    }

    #[test]
    fn kunit_boot_document_then_module_document() {
        let log = "KTAP version 1\n1..0\nrandom: noise\nKTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..1\n    ok 1 c\nok 1 s\n";
        let docs = parse_text(log);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].plan, Some(0));
        assert!(docs[0].complete && docs[0].cases.is_empty());
        assert!(docs[1].complete);
        assert_eq!(docs[1].counts(), counts(1, 0, 0));
    }

    #[test]
    fn truncated_document_reports_missing_results() {
        let doc = one("KTAP version 1\n1..5\nok 1 a\nok 2 b\nok 3 c\n");
        assert!(!doc.complete);
        assert_eq!(
            doc.failures(),
            vec![Failure {
                path: "ktap".into(),
                number: 4,
                reason: "missing results 4..5: the module stopped printing KTAP".into()
            }]
        );
        assert_eq!(doc.counts(), counts(3, 2, 0));
    }

    #[test]
    fn skipped_numbers_are_missing_results() {
        let doc = one("KTAP version 1\n1..4\nok 1 a\nok 2 b\nok 4 d\n");
        assert!(!doc.complete);
        let f = doc.failures();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].number, f[0].reason.as_str()),
            (3, "missing result 3: no result line has this number")
        );
    }

    #[test]
    fn plan_may_come_last() {
        let doc = one("KTAP version 1\nok 1 a\nok 2 b\n1..2\n");
        assert_eq!(doc.plan, Some(2));
        assert!(doc.complete);
    }

    #[test]
    fn no_plan_at_top_level_is_not_complete() {
        let doc = one("KTAP version 1\nok 1 a\n");
        assert!(!doc.complete);
        assert!(doc.failures().is_empty());
    }

    #[test]
    fn crash_inside_a_suite_keeps_what_was_printed() {
        let log = "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: s\n    1..3\n    ok 1 a\n    not ok 2 b\nBUG: kernel NULL pointer dereference, address: 0000000000000000\n";
        let doc = one(log);
        assert!(!doc.complete);
        let suite = &doc.cases[0];
        assert_eq!(
            (suite.number, suite.name.as_str(), &suite.outcome),
            (1, "s", &Outcome::Fail)
        );
        assert!(suite
            .diagnostics
            .last()
            .is_some_and(|d| d == NO_RESULT_LINE));
        let sub = suite.subtests.as_ref().expect("subtests kept");
        assert!(!sub.complete);
        let paths: Vec<(String, u32)> = doc
            .failures()
            .into_iter()
            .map(|f| (f.path, f.number))
            .collect();
        assert_eq!(
            paths,
            [
                ("s.b".to_string(), 2),
                ("s".to_string(), 3),
                ("ktap".to_string(), 2)
            ]
        );
    }

    #[test]
    fn tap14_subtests_without_version_lines() {
        let log = "TAP version 14\n1..2\n\t# Subtest: a\n\t1..2\n\tok 1 - x\n\tok 2 - y\nok 1 - a\n\t# Subtest: b\n\t1..1\n\tnot ok 1 - z\nnot ok 2 - b\n";
        let doc = one(log);
        assert!(doc.complete);
        let b = doc.cases[1].subtests.as_ref().expect("b's subtests");
        assert_eq!(b.name.as_deref(), Some("b"));
        assert_eq!(b.version, "");
        assert_eq!(doc.failures()[0].path, "b.z");
    }

    #[test]
    fn ktap_rst_two_space_nesting_three_levels() {
        let log = "KTAP version 1\n1..1\n  KTAP version 1\n  1..2\n    KTAP version 1\n    1..2\n    not ok 1 test_1\n    ok 2 test_2\n  not ok 1 test_3\n  ok 2 test_4 # SKIP\nnot ok 1 example_test_1\n";
        let doc = one(log);
        assert!(doc.complete);
        let paths: Vec<String> = doc.failures().into_iter().map(|f| f.path).collect();
        assert_eq!(paths, ["example_test_1.test_3.test_1"]);
        assert_eq!(doc.counts(), counts(1, 1, 1));
    }

    #[test]
    fn failed_parent_with_passing_children_is_named() {
        let doc = one("KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  ok 1 a\n# suite init failed\nnot ok 1 suite\n");
        let f = doc.failures();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].path, "suite");
        assert_eq!(f[0].reason, "suite init failed");
        assert_eq!(doc.counts(), counts(1, 1, 0));
    }

    #[test]
    fn huge_plans_cost_nothing() {
        let doc = one("KTAP version 1\n1..4294967295\nok 1 a\n");
        assert_eq!(doc.missing(), vec![(2, u32::MAX)]);
        assert_eq!(doc.counts().failed, u32::MAX - 1);
        let doc = one("KTAP version 1\n1..4294967295\nok 4294967295 last\n");
        assert_eq!(doc.missing(), vec![(1, u32::MAX - 1)]);
    }

    #[test]
    fn lines_before_any_version_are_ignored() {
        assert!(parse_text("ok 1 a\n1..1\n# Subtest: x\n").is_empty());
    }

    #[test]
    fn nesting_is_capped() {
        let mut log = String::from("KTAP version 1\n");
        for depth in 1..200 {
            log.push_str(&" ".repeat(depth));
            log.push_str("KTAP version 1\n");
        }
        let docs = parse_text(&log);
        assert_eq!(docs.len(), 1);
        let mut depth = 0;
        let mut doc = &docs[0];
        while let Some(sub) = doc.cases.first().and_then(|c| c.subtests.as_ref()) {
            depth += 1;
            doc = sub;
        }
        assert_eq!(depth, MAX_DEPTH - 1);
    }
}
