//! Properties of KTAP reading: arbitrary input never panics, and on a valid log interleaved with
//! kernel noise and cut anywhere, the agent's `Completion` says complete exactly when every
//! planned result has been fed (and the host's parser agrees).

use kmodlab::judge::ktap::{parse, Counts, Outcome};
use kmodlab_protocol::ktap::{classify, strip_prefixes, Completion};
use proptest::prelude::*;

/// Lines that look like KTAP or almost like it, with odd prefixes and indents, plus arbitrary text.
fn ktap_ish_line() -> impl Strategy<Value = String> {
    let body = prop_oneof![
        Just("KTAP version 1".to_string()),
        "T?A?P version [0-9a-z]{0,3}",
        "1\\.\\.[0-9]{0,11}( #.*)?",
        "(not )?ok( [0-9]{0,11})?( -)?( [a-zé#]{0,6})?( # ?(SKIP|skip|TODO|XFAIL|TIMEOUT|x)?:?.{0,6})?",
        "# Subtest:.{0,8}",
        "#.{0,10}",
        ".{0,30}",
        any::<String>(),
    ];
    let indent = prop_oneof![Just(String::new()), "[ \t]{1,12}"];
    let prefix = prop_oneof![
        Just(String::new()),
        Just("[    1.234567] ".to_string()),
        Just("[    0.1][    T1] ".to_string()),
        "[a-z_]{1,8}: ",
        "\\[[0-9. ]{0,8}\\]?",
    ];
    (prefix, indent, body).prop_map(|(p, i, b)| format!("{p}{i}{b}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn nothing_panics_on_arbitrary_lines(lines in prop::collection::vec(ktap_ish_line(), 0..40)) {
        let mut completion = Completion::new();
        for line in &lines {
            let _ = classify(line);
            let _ = strip_prefixes(line);
            completion.feed(line);
        }
        let _ = completion.is_complete();
        for doc in parse(lines.iter().map(String::as_str)) {
            let _ = doc.failures();
            let _ = doc.counts();
            let _ = doc.missing();
        }
    }

    #[test]
    fn nothing_panics_on_arbitrary_text(text in any::<String>()) {
        let mut completion = Completion::new();
        for line in text.lines() {
            completion.feed(line);
        }
        for doc in parse(text.lines()) {
            let _ = doc.failures();
            let _ = doc.counts();
        }
    }
}

/// How a generated module writes each line.
#[derive(Debug, Clone, Copy)]
enum Style {
    Bare,
    Timestamped,
    ModulePrefixed,
}

#[derive(Debug, Clone)]
struct GeneratedCase {
    ok: bool,
    skip: bool,
    /// Results of a nested (KUnit suite style) document, if this case has one.
    subtests: Option<Vec<bool>>,
}

fn case() -> impl Strategy<Value = GeneratedCase> {
    (
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::option::weighted(0.3, prop::collection::vec(any::<bool>(), 0..4)),
    )
        .prop_map(|(ok, skip, subtests)| GeneratedCase { ok, skip, subtests })
}

/// A valid document as lines, and the index of the line after which it is complete.
fn document(cases: &[GeneratedCase], plan_last: bool, style: Style) -> (Vec<String>, usize) {
    let mut body: Vec<String> = vec!["KTAP version 1".into()];
    if !plan_last {
        body.push(format!("1..{}", cases.len()));
    }
    for (i, case) in cases.iter().enumerate() {
        let n = i + 1;
        if let Some(subs) = &case.subtests {
            body.push("    KTAP version 1".into());
            body.push(format!("    # Subtest: suite{n}"));
            body.push(format!("    1..{}", subs.len()));
            for (j, ok) in subs.iter().enumerate() {
                body.push(format!(
                    "    {} {} sub{j}",
                    if *ok { "ok" } else { "not ok" },
                    j + 1
                ));
            }
        }
        body.push(format!("# case{n}: done"));
        let directive = if case.skip { " # SKIP not here" } else { "" };
        body.push(format!(
            "{} {n} - case{n}{directive}",
            if case.ok { "ok" } else { "not ok" }
        ));
    }
    if plan_last {
        body.push(format!("1..{}", cases.len()));
    }
    // Complete after the plan and the last top-level result, whichever comes later: that is
    // simply the last line here, or the plan line when there are no cases.
    let last_required = if cases.is_empty() {
        body.iter().position(|l| l.starts_with("1..")).unwrap_or(0)
    } else {
        body.len() - 1
    };
    let lines = body
        .into_iter()
        .enumerate()
        .map(|(i, l)| match style {
            Style::Bare => l,
            Style::Timestamped => format!("[{:5}.{:06}] {l}", i / 100, i % 1_000_000),
            Style::ModulePrefixed => format!("[    2.{i:06}] demo: {l}"),
        })
        .collect();
    (lines, last_required)
}

/// Kernel messages that must never count as KTAP at the top level.
fn noise() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "random: crng init done",
        "[    1.000000] virtio_blk virtio0: [vda] 2048 512-byte logical blocks",
        "usb 1-1: ok 1 not a module prefix",
        "ok then",
        "hello: ok",
        "    indented text",
        "        ok 7 deeper than any document",
        "",
        "# a stray diagnostic",
        "[    3.000000] demo: loading out-of-tree module taints kernel.",
    ])
    .prop_map(str::to_string)
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        Just(Style::Bare),
        Just(Style::Timestamped),
        Just(Style::ModulePrefixed)
    ]
}

/// The document's lines with noise inserted: (noise line, position among the document lines).
fn interleave(doc: &[String], noise: &[(String, usize)]) -> (Vec<String>, Vec<usize>) {
    let mut out = Vec::new();
    let mut doc_index_of = Vec::new();
    for (i, line) in doc.iter().enumerate() {
        for (n, _) in noise.iter().filter(|(_, at)| at % (doc.len() + 1) == i) {
            out.push(n.clone());
        }
        doc_index_of.push(out.len());
        out.push(line.clone());
    }
    for (n, _) in noise
        .iter()
        .filter(|(_, at)| at % (doc.len() + 1) == doc.len())
    {
        out.push(n.clone());
    }
    (out, doc_index_of)
}

fn expected_counts(cases: &[GeneratedCase]) -> Counts {
    let mut c = Counts::default();
    for case in cases {
        match &case.subtests {
            Some(subs) if !subs.is_empty() => {
                let failed = subs.iter().filter(|ok| !**ok).count() as u32;
                c.passed += subs.len() as u32 - failed;
                c.failed += failed;
                if failed == 0 && !case.ok && !case.skip {
                    c.failed += 1;
                }
            }
            _ if case.skip => c.skipped += 1,
            _ if case.ok => c.passed += 1,
            _ => c.failed += 1,
        }
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn complete_exactly_when_every_planned_result_was_fed(
        cases in prop::collection::vec(case(), 0..8),
        plan_last in any::<bool>(),
        style in style(),
        noise in prop::collection::vec((noise(), any::<usize>()), 0..12),
    ) {
        let (doc, last_required) = document(&cases, plan_last, style);
        let (log, at) = interleave(&doc, &noise);
        let required_line = at[last_required];
        let mut completion = Completion::new();
        for (i, line) in log.iter().enumerate() {
            completion.feed(line);
            prop_assert_eq!(completion.is_complete(), i >= required_line, "after line {}: {:?}", i, line);
        }

        // The host reads the same log the same way, whole or cut anywhere.
        let docs = parse(log.iter().map(String::as_str));
        prop_assert_eq!(docs.len(), 1);
        prop_assert!(docs[0].complete);
        prop_assert_eq!(docs[0].cases.len(), cases.len());
        prop_assert_eq!(docs[0].counts(), expected_counts(&cases));
        for (doc_case, generated) in docs[0].cases.iter().zip(&cases) {
            if generated.skip {
                prop_assert!(matches!(doc_case.outcome, Outcome::Skip(_)));
            }
            prop_assert_eq!(doc_case.subtests.is_some(), generated.subtests.is_some());
        }
        for cut in 0..log.len() {
            let docs = parse(log[..cut].iter().map(String::as_str));
            let complete = docs.first().is_some_and(|d| d.complete);
            prop_assert_eq!(complete, cut > required_line, "cut at {}", cut);
        }
    }
}
