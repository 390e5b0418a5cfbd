//! JUnit XML (`--junit FILE`), in the shape CI services read (GitLab, GitHub actions that publish
//! test results, Jenkins): `<testsuites>` > one `<testsuite>` per module > one `<testcase>` per
//! test, `classname` the module and `name` the test.
//!
//! FAIL, CRASH and TIMEOUT are `<failure type="...">` (the test's fault), ERROR is `<error>` (the
//! kernel refused a load or unload), SKIP is `<skipped>`. The details go in the element's body and
//! the test's kernel log window in `<system-out>`.
//!
//! A small writer of our own: the document has five element kinds, and what matters is the
//! escaping, which is done here with the kernel log in mind (control bytes are common there and
//! most are not allowed anywhere in XML 1.0, not even as character references).

use super::ktap::by_module;
use super::{escape_markup, Counts, Markup};
use crate::judge::verdict::{Outcome, Verdict};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Writes the document to `path`. The kernel release, when known, is each suite's `kernel` property.
pub fn write(path: &Path, verdicts: &[Verdict], kernel_release: Option<&str>) -> Result<()> {
    std::fs::write(path, document(verdicts, kernel_release))
        .with_context(|| format!("writing the JUnit report {}", path.display()))
}

/// The whole JUnit XML document.
pub fn document(verdicts: &[Verdict], kernel_release: Option<&str>) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let all: Vec<&Verdict> = verdicts.iter().collect();
    let _ = writeln!(
        out,
        "<testsuites name=\"kmodlab\"{}>",
        counts_attributes(&all)
    );
    for (id, (module, tests)) in by_module(verdicts).into_iter().enumerate() {
        let mut attributes = format!(" name=\"{}\"", attr(module));
        attributes.push_str(&counts_attributes(&tests));
        let _ = write!(attributes, " id=\"{id}\"");
        let _ = writeln!(out, "  <testsuite{attributes}>");
        if let Some(release) = kernel_release {
            out.push_str("    <properties>\n");
            let _ = writeln!(
                out,
                "      <property name=\"kernel\" value=\"{}\"/>",
                attr(release)
            );
            out.push_str("    </properties>\n");
        }
        for verdict in tests {
            testcase(&mut out, verdict);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// ` tests="4" failures="2" errors="1" skipped="0" time="0.360"`, as JUnit counts them: crashes
/// and timeouts are failures, refused loads errors.
fn counts_attributes(verdicts: &[&Verdict]) -> String {
    let counts = Counts::of(verdicts.iter().copied());
    let time: Duration = verdicts.iter().map(|v| v.duration).sum();
    format!(
        " tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\"",
        counts.total,
        counts.failed - counts.errored,
        counts.errored,
        counts.skipped,
        seconds(time)
    )
}

fn testcase(out: &mut String, v: &Verdict) {
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
        attr(&v.module),
        attr(&v.test),
        seconds(v.duration)
    );
    let outcome_element = match v.outcome {
        Outcome::Pass => None,
        Outcome::Skip => Some("skipped"),
        Outcome::Error => Some("error"),
        Outcome::Fail | Outcome::Crash | Outcome::Timeout => Some("failure"),
    };
    if outcome_element.is_none() && v.log.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    if let Some(element) = outcome_element {
        let mut message = v.reason.clone();
        if let Some(errno) = v.errno {
            let _ = write!(message, " (errno {errno})");
        }
        let _ = write!(out, "      <{element} message=\"{}\"", attr(&message));
        if element != "skipped" {
            let _ = write!(out, " type=\"{}\"", v.outcome.label());
        }
        // CI pages often show only the body: without details it repeats the reason.
        let body = if v.details.is_empty() {
            v.reason.clone()
        } else {
            v.details.join("\n")
        };
        if body.is_empty() {
            out.push_str("/>\n");
        } else {
            let _ = writeln!(out, ">{}</{element}>", text(&body));
        }
    }
    if !v.log.is_empty() {
        let _ = writeln!(
            out,
            "      <system-out>{}</system-out>",
            text(&(v.log.join("\n") + "\n"))
        );
    }
    out.push_str("    </testcase>\n");
}

/// Seconds with millisecond precision, as JUnit readers expect (`0.140`).
fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// Character data: `&`, `<` and `>` as entities, characters XML 1.0 forbids made visible.
pub fn text(s: &str) -> String {
    escape_markup(s, Markup::XmlText)
}

/// An attribute value in double quotes: also `"`, and newlines and tabs as character references
/// so that readers do not normalise them into spaces.
pub fn attr(s: &str) -> String {
    escape_markup(s, Markup::XmlAttribute)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(module: &str, test: &str, outcome: Outcome, reason: &str) -> Verdict {
        Verdict {
            duration: Duration::from_millis(140),
            ..crate::test_support::verdict(module, test, outcome, reason)
        }
    }

    #[test]
    fn escaping_covers_markup_quotes_and_forbidden_characters() {
        assert_eq!(text("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(attr("say \"hi\"\n\tnow"), "say &quot;hi&quot;&#10;&#9;now");
        assert_eq!(text("line\nnext\ttab"), "line\nnext\ttab");
        assert_eq!(text("cr\r"), "cr&#13;");
        assert_eq!(
            text("\u{0}\u{1b}[31m\u{b}\u{c}"),
            "\\x00\\x1b[31m\\x0b\\x0c"
        );
        assert_eq!(
            text("\u{fffe}\u{ffff}ok\u{fffd}"),
            "\\xfffe\\xffffok\u{fffd}"
        );
        assert_eq!(text("ünïcødé 🐧"), "ünïcødé 🐧");
    }

    #[test]
    fn outcomes_map_to_junit_elements() {
        let crash = Verdict {
            duration: Duration::from_millis(140),
            ..crate::test_support::warn_init_crash("RIP: <x>", "[    1.3] WARNING: CPU: 0 PID: 36")
        };
        let mut error = verdict("init_enodev", "fails", Outcome::Error, "load: ENODEV");
        error.errno = Some(19);
        let verdicts = vec![
            verdict("hello", "greets", Outcome::Pass, ""),
            verdict(
                "hello",
                "later",
                Outcome::Skip,
                "the kernel lacks CONFIG_RUST",
            ),
            crash,
            error,
            verdict(
                "init_hang",
                "hangs",
                Outcome::Timeout,
                "load: did not return",
            ),
        ];
        let xml = document(&verdicts, Some("6.12.117"));
        assert!(xml.contains(
            "<testsuites name=\"kmodlab\" tests=\"5\" failures=\"2\" errors=\"1\" skipped=\"1\" time=\"0.700\">"
        ), "{xml}");
        assert!(xml.contains("<testsuite name=\"hello\" tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"1\" time=\"0.280\" id=\"0\">"), "{xml}");
        assert!(xml.contains("<property name=\"kernel\" value=\"6.12.117\"/>"));
        assert!(xml.contains("<testcase classname=\"hello\" name=\"greets\" time=\"0.140\"/>"));
        assert!(xml.contains(
            "<skipped message=\"the kernel lacks CONFIG_RUST\">the kernel lacks CONFIG_RUST</skipped>"
        ));
        assert!(xml.contains(
            "<failure message=\"WARNING in warn_init_trigger\" type=\"CRASH\">------------[ cut here ]------------\nRIP: &lt;x&gt;</failure>"
        ), "{xml}");
        assert!(xml.contains("<system-out>[    1.3] WARNING: CPU: 0 PID: 36\n</system-out>"));
        assert!(xml.contains(
            "<error message=\"load: ENODEV (errno 19)\" type=\"ERROR\">load: ENODEV</error>"
        ));
        assert!(xml.contains(
            "<failure message=\"load: did not return\" type=\"TIMEOUT\">load: did not return</failure>"
        ));
        assert!(xml.ends_with("</testsuites>\n"));
    }
}
