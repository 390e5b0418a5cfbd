//! Line-level KTAP recognition shared by the agent (to know when a module's KTAP is complete)
//! and the host's parser (harness/host/src/judge/ktap.rs), so both read lines the same way.
//!
//! The format is the kernel's `Documentation/dev-tools/ktap.rst` (KTAP version 1), plus the
//! TAP 13/14 forms older KUnit and kselftest print. Lines come from a kernel log, so they may carry
//! a printk timestamp and a `modname: ` prefix; everything here tolerates both. The agent runs this
//! as PID 1: nothing in this file may panic, whatever the input.

/// A directive after `#` on a result line that changes what `ok` / `not ok` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Not run; counts as skipped whether the line says `ok` or `not ok`.
    Skip,
    /// Known broken; a `not ok` is not a failure.
    Todo,
    /// Expected to fail; counts as passed.
    Xfail,
}

/// What one kernel log line is, as far as KTAP is concerned.
///
/// `indent` is the column of the first non-blank character after the prefixes are removed, with
/// tabs expanded to the next multiple of 8 (old KUnit indented with tabs). Only comparisons between
/// indents matter: KTAP nests by two spaces, KUnit by four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// `KTAP version 1`, `TAP version 13`, `TAP version 14`.
    Version { indent: usize, version: &'a str },
    /// `1..N`.
    Plan { indent: usize, count: u32 },
    /// `ok N - desc`, `not ok N desc # SKIP reason`. `reason` is the text after `#` (after the
    /// directive word when there is one), empty when there is none.
    TestResult {
        indent: usize,
        ok: bool,
        number: u32,
        description: &'a str,
        directive: Option<Directive>,
        reason: &'a str,
    },
    /// `# text` that is not a subtest header.
    Diagnostic { indent: usize, text: &'a str },
    /// `# Subtest: name` (KUnit and TAP 14 name nested documents this way).
    SubtestHeader { indent: usize, name: &'a str },
    /// Anything else: kernel noise, blank lines, garbage.
    Other,
}

/// Removes printk's `[    1.234567] ` timestamp (and a `[    T1]` caller id after it), if present.
/// Everything else, leading indentation included, is kept.
pub fn strip_timestamp(raw: &str) -> &str {
    let mut rest = raw;
    let mut stripped = false;
    while let Some(after) = strip_bracket_group(rest) {
        rest = after;
        stripped = true;
    }
    if stripped {
        // printk separates the prefix from the text with exactly one space.
        rest.strip_prefix(' ').unwrap_or(rest)
    } else {
        raw
    }
}

/// One `[...]` group holding a timestamp (`1.234`) or a caller id (`T12`, `C0`).
fn strip_bracket_group(s: &str) -> Option<&str> {
    let inner_and_rest = s.strip_prefix('[')?;
    // The groups are short; a far `]` means this is some other bracketed text.
    let close = inner_and_rest.bytes().take(24).position(|b| b == b']')?;
    let inner = inner_and_rest.get(..close)?.trim();
    let is_time = !inner.is_empty()
        && inner.bytes().any(|b| b.is_ascii_digit())
        && inner.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let is_caller = match inner.as_bytes() {
        [b'T' | b'C', digits @ ..] => !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if is_time || is_caller {
        inner_and_rest.get(close + 1..)
    } else {
        None
    }
}

/// Removes the printk timestamp, and a `modname: ` prefix (from `pr_fmt` or Rust's `pr_info!`)
/// when what follows it is a KTAP line. Indentation after the prefix is kept, so
/// `mod:     ok 1 - x` gives `    ok 1 - x`. A `word: ` before non-KTAP text stays: it is
/// ordinary kernel output, not a prefix to remove.
pub fn strip_prefixes(raw: &str) -> &str {
    let text = strip_timestamp(raw);
    if !matches!(classify_text(text), Line::Other) {
        return text;
    }
    match split_module_prefix(text) {
        Some(rest) if !matches!(classify_text(rest), Line::Other) => rest,
        _ => text,
    }
}

/// `name: rest` where `name` looks like a module name or a `pr_fmt` tag.
fn split_module_prefix(text: &str) -> Option<&str> {
    let name_len = text
        .bytes()
        .take(65)
        .position(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'))?;
    if name_len == 0 {
        return None;
    }
    text.get(name_len..)?.strip_prefix(": ")
}

/// Classifies one raw kernel log line (prefixes allowed, see [`strip_prefixes`]).
pub fn classify(raw: &str) -> Line<'_> {
    classify_text(strip_prefixes(raw))
}

/// Classifies text whose prefixes are already gone.
fn classify_text(text: &str) -> Line<'_> {
    let (indent, body) = split_indent(text);
    let body = body.trim_end();
    if body.is_empty() {
        return Line::Other;
    }
    if let Some(version) = version_of(body) {
        return Line::Version { indent, version };
    }
    if let Some(count) = plan_of(body) {
        return Line::Plan { indent, count };
    }
    if let Some(line) = result_of(indent, body) {
        return line;
    }
    if let Some(after_hash) = body.strip_prefix('#') {
        let text = after_hash.trim();
        if let Some(name) = text.strip_prefix("Subtest:") {
            return Line::SubtestHeader {
                indent,
                name: name.trim(),
            };
        }
        return Line::Diagnostic { indent, text };
    }
    Line::Other
}

/// Leading blanks as a column count (tabs to the next multiple of 8), and the text after them.
fn split_indent(text: &str) -> (usize, &str) {
    let mut column = 0usize;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b' ' => column = column.saturating_add(1),
            b'\t' => column = (column / 8).saturating_add(1).saturating_mul(8),
            _ => return (column, text.get(i..).unwrap_or("")),
        }
    }
    (column, "")
}

fn version_of(body: &str) -> Option<&str> {
    let rest = body
        .strip_prefix("KTAP version ")
        .or_else(|| body.strip_prefix("TAP version "))?;
    let version = rest.trim();
    (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())).then_some(version)
}

/// `1..N`, optionally followed by blanks or a `# comment` (TAP allows `1..0 # SKIP why`).
fn plan_of(body: &str) -> Option<u32> {
    let rest = body.strip_prefix("1..")?;
    let (digits, after) = split_digits(rest);
    if !(after.is_empty() || after.starts_with([' ', '\t', '#'])) {
        return None;
    }
    digits.parse().ok()
}

/// The leading ASCII digits of `s` and what follows them.
fn split_digits(s: &str) -> (&str, &str) {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    (s.get(..end).unwrap_or(""), s.get(end..).unwrap_or(""))
}

fn result_of(indent: usize, body: &str) -> Option<Line<'_>> {
    let (ok, rest) = match body.strip_prefix("not ok") {
        Some(rest) => (false, rest),
        None => (true, body.strip_prefix("ok")?),
    };
    // `ok` must be a word of its own followed by the number.
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let (digits, after) = split_digits(rest.trim_start());
    if !(after.is_empty() || after.starts_with([' ', '\t', '#'])) {
        return None;
    }
    let number: u32 = digits.parse().ok()?;
    let after = after.trim_start();
    // TAP writes `ok 1 - name`; KTAP drops the dash. Both mean the same.
    let after = match after.strip_prefix('-') {
        Some(dashed) if dashed.is_empty() || dashed.starts_with([' ', '\t']) => dashed.trim_start(),
        _ => after,
    };
    let (description, comment) = match comment_start(after) {
        Some(hash) => (after.get(..hash).unwrap_or(""), after.get(hash + 1..)),
        None => (after, None),
    };
    let (directive, reason) = match comment {
        Some(comment) => split_directive(comment.trim()),
        None => (None, ""),
    };
    Some(Line::TestResult {
        indent,
        ok,
        number,
        description: description.trim(),
        directive,
        reason,
    })
}

/// Byte index of the `#` that starts a result line's directive: the first one at the start or
/// after a blank, so a name like `case#2` keeps its `#`.
fn comment_start(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b'#' && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t')))
}

/// The directive word (case-insensitive, as ktap.rst and TAP allow) and the text after it. An
/// unknown word is not a directive: the whole comment is the reason and `ok`/`not ok` decides.
fn split_directive(comment: &str) -> (Option<Directive>, &str) {
    let word_end = comment
        .bytes()
        .position(|b| b == b' ' || b == b'\t')
        .unwrap_or(comment.len());
    let word = comment.get(..word_end).unwrap_or("");
    let word = word.strip_suffix(':').unwrap_or(word);
    let directive = if word.eq_ignore_ascii_case("skip") || word.eq_ignore_ascii_case("skipped") {
        Some(Directive::Skip)
    } else if word.eq_ignore_ascii_case("todo") {
        Some(Directive::Todo)
    } else if word.eq_ignore_ascii_case("xfail") {
        Some(Directive::Xfail)
    } else {
        None
    };
    match directive {
        Some(d) => (Some(d), comment.get(word_end..).unwrap_or("").trim()),
        None => (None, comment),
    }
}

/// Tracks whether a module's KTAP document has printed every result its plan announced.
///
/// Feed it only lines logged after the module was loaded: KUnit prints an empty document
/// (`KTAP version 1` / `1..0`) at boot, which is complete by itself. The top-level document is the
/// one whose version line is least indented; a later version line at that indent (or less) before
/// completion starts a new document, since the earlier one was abandoned. Once complete, it stays so.
#[derive(Debug, Default, Clone)]
pub struct Completion {
    complete: bool,
    /// Indentation of the current top-level document's version line; `None` until one is seen.
    top_indent: Option<usize>,
    plan: Option<u32>,
    /// Top-level result lines seen.
    results: u32,
    /// Highest top-level result number seen: KTAP numbers increase, so once the plan's last
    /// number is printed the module has finished, even if it skipped a number on the way.
    highest: u32,
}

impl Completion {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one kernel log line (timestamps and `module: ` prefixes allowed).
    pub fn feed(&mut self, line: &str) {
        if self.complete {
            return;
        }
        match classify(line) {
            Line::Version { indent, .. } if self.top_indent.is_none_or(|top| indent <= top) => {
                *self = Completion {
                    top_indent: Some(indent),
                    ..Completion::default()
                };
            }
            Line::Plan { indent, count }
                if self.top_indent == Some(indent) && self.plan.is_none() =>
            {
                self.plan = Some(count);
            }
            Line::TestResult { indent, number, .. } if self.top_indent == Some(indent) => {
                self.results = self.results.saturating_add(1);
                self.highest = self.highest.max(number);
            }
            _ => {}
        }
        if let Some(plan) = self.plan {
            self.complete = self.results >= plan || self.highest >= plan;
        }
    }

    /// True once a top-level document has its plan and all the results the plan announced.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_caller_ids_are_removed() {
        assert_eq!(strip_timestamp("[    1.234567] hello"), "hello");
        assert_eq!(strip_timestamp("[    0.060000][    T1] ok 1 x"), "ok 1 x");
        assert_eq!(strip_timestamp("[12345.000001]     ok 1 x"), "    ok 1 x");
        assert_eq!(strip_timestamp("[ cut here ] x"), "[ cut here ] x");
        assert_eq!(
            strip_timestamp("[<ffffffff81000000>] foo"),
            "[<ffffffff81000000>] foo"
        );
        assert_eq!(strip_timestamp("plain"), "plain");
    }

    #[test]
    fn module_prefix_goes_only_before_ktap() {
        assert_eq!(strip_prefixes("hello: ok 1 - x"), "ok 1 - x");
        assert_eq!(strip_prefixes("[    2.5] hello: ok 1 - x"), "ok 1 - x");
        assert_eq!(strip_prefixes("mod:     ok 1 - x"), "    ok 1 - x");
        assert_eq!(
            strip_prefixes("rust_demo: KTAP version 1"),
            "KTAP version 1"
        );
        assert_eq!(strip_prefixes("wq-demo: 1..4"), "1..4");
        assert_eq!(strip_prefixes("demo: # Subtest: suite"), "# Subtest: suite");
        // Ordinary kernel messages keep their tag.
        assert_eq!(
            strip_prefixes("usbcore: registered new interface driver"),
            "usbcore: registered new interface driver"
        );
        assert_eq!(strip_prefixes("hello: ok then"), "hello: ok then");
        assert_eq!(
            strip_prefixes("[    1.0] random: crng init done"),
            "random: crng init done"
        );
        // A name with a blank in it is not a module prefix.
        assert_eq!(strip_prefixes("usb 1-1: ok 1 x"), "usb 1-1: ok 1 x");
    }

    #[test]
    fn version_lines() {
        assert_eq!(
            classify("KTAP version 1"),
            Line::Version {
                indent: 0,
                version: "1"
            }
        );
        assert_eq!(
            classify("TAP version 13"),
            Line::Version {
                indent: 0,
                version: "13"
            }
        );
        assert_eq!(
            classify("[    0.06] TAP version 14\r"),
            Line::Version {
                indent: 0,
                version: "14"
            }
        );
        assert_eq!(
            classify("    KTAP version 1"),
            Line::Version {
                indent: 4,
                version: "1"
            }
        );
        assert_eq!(
            classify("\t\tKTAP version 1"),
            Line::Version {
                indent: 16,
                version: "1"
            }
        );
        assert_eq!(classify("KTAP version one"), Line::Other);
        assert_eq!(classify("KTAP version "), Line::Other);
    }

    #[test]
    fn plan_lines() {
        assert_eq!(
            classify("1..5"),
            Line::Plan {
                indent: 0,
                count: 5
            }
        );
        assert_eq!(
            classify("  1..0 # SKIP no hardware"),
            Line::Plan {
                indent: 2,
                count: 0
            }
        );
        assert_eq!(classify("1..99999999999"), Line::Other);
        assert_eq!(classify("1..x"), Line::Other);
        assert_eq!(classify("1..5abc"), Line::Other);
        assert_eq!(classify("2..5"), Line::Other);
    }

    fn result(line: &str) -> (bool, u32, &str, Option<Directive>, &str) {
        match classify(line) {
            Line::TestResult {
                ok,
                number,
                description,
                directive,
                reason,
                ..
            } => (ok, number, description, directive, reason),
            other => panic!("{line:?} classified as {other:?}"),
        }
    }

    #[test]
    fn result_lines() {
        assert_eq!(
            result("ok 1 - kunit_resource_test"),
            (true, 1, "kunit_resource_test", None, "")
        );
        assert_eq!(
            result("ok 2 example_simple_test"),
            (true, 2, "example_simple_test", None, "")
        );
        assert_eq!(result("not ok 3 case"), (false, 3, "case", None, ""));
        assert_eq!(result("ok 4"), (true, 4, "", None, ""));
        assert_eq!(result("ok 5 -"), (true, 5, "", None, ""));
        assert_eq!(result("ok 6 - a - b"), (true, 6, "a - b", None, ""));
        assert_eq!(
            result("ok 7 case#2 # rcode=0"),
            (true, 7, "case#2", None, "rcode=0")
        );
        assert_eq!(
            result("not ok 8 t # TIMEOUT 30 seconds"),
            (false, 8, "t", None, "TIMEOUT 30 seconds")
        );
        assert_eq!(
            result("ok 9 # SKIP no device"),
            (true, 9, "", Some(Directive::Skip), "no device")
        );
        assert_eq!(result("ok 10 - x #"), (true, 10, "x", None, ""));
        assert_eq!(
            classify("    ok 1 example value 3 # SKIP unsupported"),
            Line::TestResult {
                indent: 4,
                ok: true,
                number: 1,
                description: "example value 3",
                directive: Some(Directive::Skip),
                reason: "unsupported"
            }
        );
    }

    #[test]
    fn directives_are_case_insensitive() {
        assert_eq!(result("not ok 1 t # skip why").3, Some(Directive::Skip));
        assert_eq!(
            result("not ok 1 t # Skipped: why"),
            (false, 1, "t", Some(Directive::Skip), "why")
        );
        assert_eq!(
            result("not ok 1 t # TODO later"),
            (false, 1, "t", Some(Directive::Todo), "later")
        );
        assert_eq!(
            result("not ok 1 t # todo"),
            (false, 1, "t", Some(Directive::Todo), "")
        );
        assert_eq!(
            result("ok 1 t # XFAIL known bug"),
            (true, 1, "t", Some(Directive::Xfail), "known bug")
        );
        assert_eq!(
            result("ok 1 t # xFail"),
            (true, 1, "t", Some(Directive::Xfail), "")
        );
        assert_eq!(result("ok 1 t # skipping is not a word we know").3, None);
    }

    #[test]
    fn near_misses_are_other() {
        for line in [
            "okay 1 x",
            "ok x",
            "ok",
            "not ok",
            "not okay 2",
            "ok 1x",
            "ok 99999999999 x",
            "",
            "   ",
            "foo",
        ] {
            assert_eq!(classify(line), Line::Other, "{line:?}");
        }
    }

    #[test]
    fn diagnostics_and_subtest_headers() {
        assert_eq!(
            classify("    # Subtest: example"),
            Line::SubtestHeader {
                indent: 4,
                name: "example"
            }
        );
        assert_eq!(
            classify("    # example_simple_test: initializing"),
            Line::Diagnostic {
                indent: 4,
                text: "example_simple_test: initializing"
            }
        );
        assert_eq!(
            classify("#"),
            Line::Diagnostic {
                indent: 0,
                text: ""
            }
        );
        assert_eq!(
            classify("# Totals: pass:1 fail:0"),
            Line::Diagnostic {
                indent: 0,
                text: "Totals: pass:1 fail:0"
            }
        );
    }

    #[test]
    fn classify_never_slices_inside_a_character() {
        for line in [
            "ok 1 é#ü",
            "[é] ok 1",
            "é: ok 1 x",
            "ok 1 - ü # SKIP ß",
            "\t\u{a0}ok 1",
            "1..\u{300}",
        ] {
            let _ = classify(line);
            let _ = strip_prefixes(line);
        }
    }

    fn fed(lines: &[&str]) -> Completion {
        let mut c = Completion::new();
        for line in lines {
            c.feed(line);
        }
        c
    }

    #[test]
    fn completion_needs_plan_and_every_result() {
        let log = ["KTAP version 1", "1..2", "ok 1 a", "not ok 2 b"];
        for n in 0..log.len() {
            assert!(!fed(&log[..n]).is_complete(), "after {n} lines");
        }
        assert!(fed(&log).is_complete());
    }

    #[test]
    fn completion_accepts_the_plan_at_the_end() {
        assert!(!fed(&["KTAP version 1", "ok 1 a", "ok 2 b"]).is_complete());
        assert!(fed(&["KTAP version 1", "ok 1 a", "ok 2 b", "1..2"]).is_complete());
        assert!(!fed(&["KTAP version 1", "ok 1 a", "1..2"]).is_complete());
    }

    #[test]
    fn completion_of_an_empty_plan_is_immediate() {
        assert!(fed(&["KTAP version 1", "1..0"]).is_complete());
    }

    #[test]
    fn completion_ignores_nested_results_and_earlier_lines() {
        let log = [
            "ok 1 before the version line",
            "[    1.0] kunit_demo: KTAP version 1",
            "[    1.0] kunit_demo: 1..1",
            "[    1.0] kunit_demo:     KTAP version 1",
            "[    1.0] kunit_demo:     # Subtest: suite",
            "[    1.0] kunit_demo:     1..1",
            "[    1.0] kunit_demo:     ok 1 case",
        ];
        assert!(!fed(&log).is_complete());
        let mut done = log.to_vec();
        done.push("[    1.0] kunit_demo: ok 1 suite");
        assert!(fed(&done).is_complete());
    }

    #[test]
    fn completion_restarts_on_a_new_top_level_document() {
        // An abandoned document, then a fresh one: only the fresh one's results count.
        let log = [
            "KTAP version 1",
            "1..3",
            "ok 1 a",
            "KTAP version 1",
            "1..2",
            "ok 1 a",
        ];
        assert!(!fed(&log).is_complete());
        let mut done = log.to_vec();
        done.push("ok 2 b");
        assert!(fed(&done).is_complete());
    }

    #[test]
    fn completion_is_reached_when_the_last_number_is_printed() {
        assert!(fed(&["KTAP version 1", "1..3", "ok 1 a", "ok 3 c"]).is_complete());
    }
}
