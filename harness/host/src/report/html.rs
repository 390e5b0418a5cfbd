//! HTML (`--html FILE`): one self-contained page (no external files, no network) for people: the
//! run's facts and summary, a table of verdicts, and per test its failure report, its kernel log
//! with the failure lines marked, and a timeline of its kernel messages by CPU.
//!
//! Everything the kernel or a module printed is untrusted text and goes through [`escape`]. The page
//! is complete without JavaScript; a small script only adds filtering and expand/collapse buttons.
//!
//! Stable hooks for tools that read the page back (the end-to-end test does, through Chromium):
//! `tr.verdict[data-id][data-outcome]` per verdict in order, `#summary`, `section.test[data-id]`,
//! `.fail-line` on highlighted lines, and `.mark[data-lane][data-context]` per timeline mark.

mod timeline;

use super::json::RunInfo;
use crate::judge::verdict::Verdict;
use anyhow::{Context, Result};
use kmodlab_protocol::ktap::strip_timestamp;
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Writes the page to `path`, whole or not at all: it goes to a temporary file beside it first, so
/// a browser reloading the page (`watch --html` rewrites it every round) never reads half of it.
pub fn write(path: &Path, verdicts: &[Verdict], info: &RunInfo) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {} for the HTML report", dir.display()))?;
    std::io::Write::write_all(&mut file, render(verdicts, info).as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing the HTML report {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("writing the HTML report {}", path.display()))?;
    Ok(())
}

/// The whole page.
pub fn render(verdicts: &[Verdict], info: &RunInfo) -> String {
    let summary = super::summary_line(verdicts);
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>kmodlab: {}</title>", escape(&summary));
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    header(&mut out, verdicts, info, &summary);
    out.push_str("<main>\n");
    controls(&mut out, verdicts);
    verdict_table(&mut out, verdicts);
    for (index, verdict) in verdicts.iter().enumerate() {
        test_section(&mut out, index, verdict, info.cpus);
    }
    out.push_str("</main>\n");
    let _ = writeln!(out, "<script>{SCRIPT}</script>\n</body>\n</html>");
    out
}

/// Text for HTML element content and double-quoted attribute values. Control characters other
/// than newline and tab are shown the way the kernel's /dev/kmsg escapes bytes (`\x1b`), so an
/// escape sequence in a module's output can neither reach the page raw nor vanish from it.
pub fn escape(text: &str) -> String {
    super::escape_markup(text, super::Markup::Html)
}

fn header(out: &mut String, verdicts: &[Verdict], info: &RunInfo, summary: &str) {
    out.push_str("<header>\n<h1>kmodlab test report</h1>\n<dl class=\"facts\">\n");
    let mut fact = |name: &str, value: &str| {
        let _ = writeln!(out, "<dt>{name}</dt><dd>{value}</dd>");
    };
    fact("kmodlab", &escape(env!("CARGO_PKG_VERSION")));
    fact(
        "kernel",
        &info
            .kernel_release
            .as_deref()
            .map_or_else(|| "unknown".to_string(), escape),
    );
    let vms = match (info.vms, info.cpus) {
        (0, _) => "none (judged from a log)".to_string(),
        (1, Some(cpus)) => format!("1 VM with {} CPU{}", cpus, plural(cpus as usize)),
        (n, Some(cpus)) => format!("{n} VMs with {} CPU{} each", cpus, plural(cpus as usize)),
        (n, None) => format!("{n} VM{}", plural(n as usize)),
    };
    fact("VMs", &vms);
    // `parse` has no run time to give.
    let duration = match info.duration {
        Duration::ZERO => "unknown".to_string(),
        d => format!("{:.1} s", d.as_secs_f64()),
    };
    fact("duration", &duration);
    fact(
        "run folder",
        &info.run_folder.as_ref().map_or_else(
            || "none (judged from a plain log)".to_string(),
            |folder| format!("<code>{}</code>", escape(&folder.display().to_string())),
        ),
    );
    out.push_str("</dl>\n");
    let class = if verdicts.iter().any(|v| v.outcome.is_failure()) {
        "summary bad"
    } else {
        "summary ok"
    };
    let _ = writeln!(
        out,
        "<p id=\"summary\" class=\"{class}\">{}</p>\n</header>",
        escape(summary)
    );
}

/// Filter and expand buttons, hidden until the script shows them: without JavaScript they would
/// do nothing.
fn controls(out: &mut String, verdicts: &[Verdict]) {
    out.push_str("<div id=\"controls\" class=\"controls\" hidden>Show: ");
    out.push_str("<button type=\"button\" data-show=\"all\" class=\"on\">all</button>");
    let failures = super::Counts::of(verdicts).failed;
    let _ = write!(
        out,
        "<button type=\"button\" data-show=\"failures\">failures ({failures})</button>"
    );
    let outcomes: BTreeSet<_> = verdicts.iter().map(|v| v.outcome).collect();
    for outcome in outcomes {
        let count = verdicts.iter().filter(|v| v.outcome == outcome).count();
        let _ = write!(
            out,
            "<button type=\"button\" data-show=\"{0}\">{0} ({count})</button>",
            outcome.label()
        );
    }
    out.push_str(
        " <span class=\"gap\"></span><button type=\"button\" data-expand=\"1\">expand all</button>\
         <button type=\"button\" data-expand=\"0\">collapse all</button></div>\n",
    );
}

fn verdict_table(out: &mut String, verdicts: &[Verdict]) {
    out.push_str(
        "<table class=\"verdicts\">\n<thead><tr><th>outcome</th><th>test</th>\
         <th class=\"num\">duration</th><th>reason</th></tr></thead>\n<tbody>\n",
    );
    for (index, v) in verdicts.iter().enumerate() {
        let id = escape(&v.id());
        let label = v.outcome.label();
        let _ = writeln!(
            out,
            "<tr class=\"verdict\" data-id=\"{id}\" data-outcome=\"{label}\">\
             <td>{badge}</td><td><a href=\"#{anchor}\">{id}</a></td>\
             <td class=\"num\">{duration}</td><td class=\"reason\">{reason}</td></tr>",
            badge = badge(label),
            anchor = anchor(index, v),
            duration = seconds(v.duration),
            reason = escape(&v.reason),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn badge(label: &str) -> String {
    format!("<span class=\"badge o-{label}\">{label}</span>")
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `test-3-workqueue-runs_and_tears_down`: the index keeps it unique, the rest makes links readable.
fn anchor(index: usize, v: &Verdict) -> String {
    let slug: String = v
        .id()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("test-{}-{slug}", index + 1)
}

fn test_section(out: &mut String, index: usize, v: &Verdict, cpus: Option<u32>) {
    let label = v.outcome.label();
    let open = if v.outcome.is_failure() { " open" } else { "" };
    let _ = writeln!(
        out,
        "<section class=\"test\" id=\"{anchor}\" data-id=\"{id}\" data-outcome=\"{label}\">\n\
         <details{open}>\n<summary>{badge} <span class=\"test-id\">{id}</span> \
         <span class=\"duration\">{duration}</span> <span class=\"reason\">{reason}</span></summary>\n\
         <div class=\"body\">",
        anchor = anchor(index, v),
        id = escape(&v.id()),
        badge = badge(label),
        duration = seconds(v.duration),
        reason = escape(&v.reason),
    );
    let evidence = &v.evidence;
    if !v.details.is_empty() {
        out.push_str("<h3>Failure report</h3>\n<pre class=\"report\">");
        let failed: HashSet<usize> = evidence.details.iter().copied().collect();
        for (i, line) in v.details.iter().enumerate() {
            let class = if failed.contains(&i) {
                "line fail-line"
            } else {
                "line"
            };
            push_line(out, class, line);
        }
        out.push_str("</pre>\n");
    }
    if v.log.is_empty() {
        out.push_str("<p class=\"empty\">No kernel messages were recorded for this test.</p>\n");
    } else {
        let _ = writeln!(
            out,
            "<h3>Kernel log <span class=\"muted\">({} line{})</span></h3>",
            v.log.len(),
            plural(v.log.len())
        );
        out.push_str("<pre class=\"log\">");
        let failed: HashSet<usize> = evidence.log.iter().copied().collect();
        let report: HashSet<usize> = evidence.report.iter().copied().collect();
        for (i, line) in v.log.iter().enumerate() {
            let class = if failed.contains(&i) {
                LineKind::Failure.class()
            } else if report.contains(&i) {
                LineKind::Report.class()
            } else if is_program_line(line) {
                "line program-line"
            } else {
                LineKind::Plain.class()
            };
            push_line(out, class, line);
        }
        out.push_str("</pre>\n");
    }
    timeline::timeline(out, v, cpus);
    out.push_str("</div>\n</details>\n</section>\n");
}

/// A line of a `<pre>`: its own block so that highlighting spans the whole width. The newline
/// stays inside the element, so copying the text keeps the lines apart.
fn push_line(out: &mut String, class: &str, line: &str) {
    let _ = write!(out, "<span class=\"{class}\">{}\n</span>", escape(line));
}

/// `[program NAME] ...` and `[NAME] output` lines the verdict adds for the test's programs.
fn is_program_line(line: &str) -> bool {
    line.starts_with("[program ") || (line.starts_with('[') && strip_timestamp(line) == line)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    /// Shows the failure (the verdict's evidence): a kernel failure marker, a KTAP `not ok`, the
    /// line the reason quotes.
    Failure,
    /// Belongs to the crash report of the verdict's details.
    Report,
    Plain,
}

impl LineKind {
    fn class(self) -> &'static str {
        match self {
            LineKind::Failure => "line fail-line",
            LineKind::Report => "line report-line",
            LineKind::Plain => "line",
        }
    }
}

const STYLE: &str = r#"
:root { --pass: #1a7f37; --fail: #cf222e; --crash: #82071e; --timeout: #bc4c00; --error: #8250df;
  --skip: #6e7781; --irq: #d97706; --task: #2563eb; --muted: #57606a; --rule: #d0d7de; --code-bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
  margin: 0 auto; max-width: 1240px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.muted { color: var(--muted); font-weight: normal; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0 0 12px; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; word-break: break-all; }
.summary { font-size: 16px; font-weight: 600; padding: 8px 12px; border-radius: 6px; border-left: 6px solid; }
.summary.ok { background: #dafbe1; border-color: var(--pass); }
.summary.bad { background: #ffebe9; border-color: var(--fail); }
.controls { margin: 12px 0; }
.controls button { font: inherit; font-size: 12px; margin: 0 4px 4px 0; padding: 2px 10px; border: 1px solid var(--rule);
  border-radius: 12px; background: #fff; cursor: pointer; }
.controls button.on { background: #1f2328; color: #fff; border-color: #1f2328; }
.controls .gap { display: inline-block; width: 16px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--rule); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.verdicts td.reason { word-break: break-word; }
.badge { display: inline-block; min-width: 64px; text-align: center; color: #fff; border-radius: 4px;
  font: 600 12px/20px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.o-PASS { background: var(--pass); } .o-FAIL { background: var(--fail); } .o-CRASH { background: var(--crash); }
.o-TIMEOUT { background: var(--timeout); } .o-ERROR { background: var(--error); } .o-SKIP { background: var(--skip); }
section.test { margin: 12px 0; border: 1px solid var(--rule); border-radius: 8px; }
section.test > details > summary { padding: 8px 12px; cursor: pointer; }
section.test > details[open] > summary { border-bottom: 1px solid var(--rule); }
.test-id { font-weight: 600; }
.duration { color: var(--muted); margin: 0 6px; }
summary .reason { word-break: break-word; }
.body { padding: 0 12px 12px; }
pre { font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--code-bg);
  border: 1px solid var(--rule); border-radius: 6px; padding: 6px 0; margin: 0; overflow-x: auto; max-height: 36em; }
pre.report { border-color: var(--fail); }
pre .line { display: block; padding: 0 10px; white-space: pre; min-height: 1.45em; }
.fail-line { background: #ffebe9; color: var(--crash); font-weight: 600; box-shadow: inset 4px 0 var(--fail); }
.report-line { background: #fff4f3; }
.program-line { color: #0550ae; }
.note, .empty { color: var(--muted); font-style: italic; }
.chart { overflow-x: auto; }
svg.timeline { display: block; font: 11px system-ui, sans-serif; }
.lane-bg { fill: #fff; } .lane-bg.odd { fill: #f6f8fa; }
.lane-label { fill: #1f2328; font-weight: 600; } .lane-count { fill: var(--muted); font-weight: normal; }
.grid { stroke: var(--rule); stroke-width: 1; }
.tick, .axis-title { fill: var(--muted); }
.mark { stroke: #fff; stroke-width: 1; }
.mark.task { fill: var(--task); } .mark.irq { fill: var(--irq); } .mark.unknown { fill: var(--skip); }
.mark.fail { fill: var(--fail); stroke: var(--crash); }
.mark:hover { stroke: #000; stroke-width: 2; }
.legend { font-size: 12px; color: var(--muted); }
.legend svg { vertical-align: middle; }
table.records { font-size: 12px; margin-top: 4px; }
table.records td { padding: 2px 8px; }
table.records td:nth-child(2), table.records td:nth-child(4) { white-space: nowrap; }
table.records td.msg { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap;
  word-break: break-word; }
table.records tr[data-context="irq"] td:nth-child(4) { color: var(--irq); font-weight: 600; }
table.records tr.fail-line td:first-child { box-shadow: inset 4px 0 var(--fail); }
[hidden] { display: none !important; }
"#;

/// Filtering by outcome and expanding or collapsing every test; a link to a test opens it.
const SCRIPT: &str = r#"
(function () {
  var controls = document.getElementById('controls');
  if (!controls) return;
  controls.hidden = false;
  function show(which) {
    document.querySelectorAll('tr.verdict, section.test').forEach(function (el) {
      var outcome = el.getAttribute('data-outcome');
      var failed = outcome !== 'PASS' && outcome !== 'SKIP';
      el.hidden = !(which === 'all' || which === outcome || (which === 'failures' && failed));
    });
    controls.querySelectorAll('[data-show]').forEach(function (b) {
      b.classList.toggle('on', b.getAttribute('data-show') === which);
    });
  }
  controls.addEventListener('click', function (event) {
    var button = event.target.closest('button');
    if (!button) return;
    if (button.dataset.show) show(button.dataset.show);
    if (button.dataset.expand) {
      document.querySelectorAll('section.test > details').forEach(function (d) {
        d.open = button.dataset.expand === '1';
      });
    }
  });
  function openTarget() {
    var target = location.hash && document.getElementById(location.hash.slice(1));
    var details = target && target.querySelector('details');
    if (details) details.open = true;
  }
  window.addEventListener('hashchange', openTarget);
  openTarget();
})();
"#;

#[cfg(test)]
mod tests {
    use super::timeline::{lanes, stamp, TIMELINE_RECORDS};
    use super::*;
    use crate::judge::verdict::Outcome;
    use kmodlab_protocol::{Caller, KmsgRecord};
    use std::time::Duration;

    fn record(ts_us: u64, text: &str, caller: Option<Caller>) -> KmsgRecord {
        KmsgRecord {
            seq: ts_us,
            level: 6,
            facility: 0,
            ts_us,
            text: text.into(),
            caller,
        }
    }

    fn verdict(test: &str, outcome: Outcome, records: Vec<KmsgRecord>) -> Verdict {
        let log = records
            .iter()
            .flat_map(|r| r.lines().map(move |l| format!("{} {l}", stamp(r.ts_us))))
            .collect();
        Verdict {
            log,
            records,
            ..crate::test_support::verdict("demo", test, outcome, "")
        }
    }

    fn info() -> RunInfo {
        RunInfo {
            run_folder: Some("/tmp/runs/1".into()),
            kernel_release: Some("6.12.117".into()),
            vms: 1,
            duration: Duration::from_millis(2500),
            cpus: Some(2),
        }
    }

    fn task(pid: u32, comm: &str, cpu: u32) -> Option<Caller> {
        Some(Caller::Task {
            pid,
            comm: Some(comm.into()),
            cpu: Some(cpu),
        })
    }

    /// The part of `page` from `start` up to the next `end`.
    fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
        let from = page
            .find(start)
            .unwrap_or_else(|| panic!("{start} in page"));
        let rest = &page[from..];
        &rest[..rest.find(end).unwrap_or(rest.len())]
    }

    #[test]
    fn kernel_text_is_escaped_everywhere() {
        let mut v = verdict(
            "x",
            Outcome::Fail,
            vec![record(
                1_000_000,
                "<script>alert(1)</script> & \"q\" \u{1b}[31m",
                task(7, "insmod<b>", 0),
            )],
        );
        v.reason = "<img src=x onerror=alert(1)>".into();
        v.details = vec!["<script>detail</script>".into()];
        v.module = "<mod>".into();
        let page = render(&[v], &info());
        assert!(!page.contains("<script>alert"), "raw script tag");
        assert!(!page.contains("<script>detail"), "raw script tag");
        assert!(!page.contains("<img"), "raw img tag");
        assert!(!page.contains("<mod>") && !page.contains("<b>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot;"));
        assert!(page.contains("task insmod&lt;b&gt; [7]"));
        assert!(page.contains("data-id=\"&lt;mod&gt;/x\""));
        // The ESC byte is shown, as /dev/kmsg would escape it, and never written raw.
        assert!(!page.contains('\u{1b}'));
        assert!(page.contains("\\x1b[31m"));
        // The page's own script is the only one.
        assert_eq!(page.matches("<script>").count(), 1);
    }

    #[test]
    fn escape_covers_markup_quotes_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"'\u{0}\u{7f}\u{85}\tz\n"),
            "a&lt;b&gt;&amp;&quot;&#39;\\x00\\x7f\\x85\tz\n"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn a_flood_of_records_is_capped_but_keeps_its_failure_lines() {
        let mut records: Vec<KmsgRecord> = (0..TIMELINE_RECORDS as u64 + 500)
            .map(|i| record(1_000 + i, "chatter", task(50, "insmod", 0)))
            .collect();
        records.push(record(
            900_000,
            "BUG: kernel NULL pointer dereference, address: 0000000000000000",
            task(50, "insmod", 1),
        ));
        let flood = verdict("floods", Outcome::Crash, records).with_evidence();
        let page = render(&[flood], &info());
        assert!(
            page.contains("2501 kernel messages: the timeline"),
            "the cap is said"
        );
        let rows = page.matches("<tr data-context=").count() + page.matches("<tr class=").count();
        // Every verdict row is a `tr class="verdict"`; the rest are records.
        let record_rows = rows - 1;
        assert_eq!(
            record_rows,
            TIMELINE_RECORDS + 1,
            "the first ones and the failure"
        );
        assert!(page.contains("BUG: kernel NULL pointer dereference, address"));
        assert_eq!(page.matches("<title>").count(), TIMELINE_RECORDS + 1 + 1);
    }

    #[test]
    fn the_page_replaces_the_file_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("report.html");
        std::fs::write(&path, "old").expect("old page");
        write(&path, &[], &info()).expect("written");
        let page = std::fs::read_to_string(&path).expect("read back");
        assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
        // Nothing is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn marker_and_not_ok_lines_are_highlighted_and_the_report_is_marked() {
        let mut v = verdict(
            "warns",
            Outcome::Crash,
            vec![
                record(1_000_000, "demo: loading", task(50, "insmod", 0)),
                record(
                    1_000_100,
                    "------------[ cut here ]------------",
                    task(50, "insmod", 0),
                ),
                record(
                    1_000_200,
                    "WARNING: CPU: 0 PID: 50 at demo.c:10 demo_trigger+0x9/0x10 [demo]",
                    task(50, "insmod", 0),
                ),
                record(
                    1_000_250,
                    "demo: # arithmetic: 2 + 2 == 5",
                    task(50, "insmod", 0),
                ),
                record(1_000_300, "not ok 2 arithmetic", task(50, "insmod", 0)),
                record(1_000_400, "ok 3 fine", task(50, "insmod", 0)),
            ],
        );
        v.reason = "WARNING in demo_trigger".into();
        v.details = vec![
            "------------[ cut here ]------------".into(),
            "WARNING: CPU: 0 PID: 50 at demo.c:10 demo_trigger+0x9/0x10 [demo]".into(),
        ];
        let page = render(&[v.with_evidence()], &info());
        let log = between(&page, "<pre class=\"log\">", "</pre>");
        assert!(log.contains(
            "<span class=\"line fail-line\">[    1.000200] WARNING: CPU: 0 PID: 50 at demo.c:10"
        ));
        assert!(log.contains("<span class=\"line fail-line\">[    1.000300] not ok 2 arithmetic"));
        assert!(log.contains("<span class=\"line report-line\">[    1.000100] ------------[ cut"));
        assert!(log.contains("<span class=\"line\">[    1.000400] ok 3 fine\n</span>"));
        assert!(log.contains("<span class=\"line\">[    1.000000] demo: loading"));
        // A crash's reason quotes no line: the KTAP diagnostic stays plain.
        assert!(log.contains("<span class=\"line\">[    1.000250] demo: # arithmetic"));
        let report = between(&page, "<pre class=\"report\">", "</pre>");
        assert!(report.contains("<span class=\"line fail-line\">WARNING: CPU: 0"));
        // A failing test is open; the timeline marks the failure records.
        assert!(page.contains("<details open>"));
        assert_eq!(
            page.matches("class=\"mark task fail\" data-lane").count(),
            2
        );
        assert_eq!(page.matches("<tr class=\"fail-line\"").count(), 2);
    }

    #[test]
    fn a_line_the_reason_quotes_is_highlighted() {
        let mut v = verdict(
            "t",
            Outcome::Fail,
            vec![
                record(2_000_000, "refcount_t: underflow", task(1, "a", 0)),
                record(2_000_100, "demo: # arithmetic: 2 + 2 == 5", task(1, "a", 0)),
            ],
        );
        v.reason = "forbidden /refcount_t: / appeared: refcount_t: underflow".into();
        let page = render(&[v.clone().with_evidence()], &info());
        assert!(
            page.contains("<span class=\"line fail-line\">[    2.000000] refcount_t: underflow")
        );
        // A KTAP failure's reason ends with the diagnostic that explains it.
        v.reason = "not ok 2 arithmetic: 2 + 2 == 5".into();
        let page = render(&[v.with_evidence()], &info());
        assert!(page.contains("<span class=\"line fail-line\">[    2.000100] demo: # arithmetic"));
    }

    #[test]
    fn lanes_cover_every_cpu_and_the_unknown_one_and_contexts_differ() {
        let v = verdict(
            "lanes",
            Outcome::Pass,
            vec![
                record(1_000_000, "from init", task(45, "insmod", 0)),
                record(1_002_000, "tasklet ran", Some(Caller::Interrupt { cpu: 1 })),
                record(
                    1_004_000,
                    "after exit",
                    Some(Caller::Task {
                        pid: 46,
                        comm: None,
                        cpu: None,
                    }),
                ),
                record(
                    1_010_000,
                    "on a CPU beyond the VM's",
                    task(47, "kworker/3:1", 3),
                ),
            ],
        );
        let page = render(std::slice::from_ref(&v), &info());
        let lane_keys: Vec<&str> = page
            .match_indices("<g class=\"lane\" data-lane=\"")
            .map(|(i, m)| {
                let rest = &page[i + m.len()..];
                &rest[..rest.find('"').unwrap_or(0)]
            })
            .collect();
        assert_eq!(lane_keys, ["0", "1", "3", "unknown"]);
        assert!(page.contains(">CPU 1<tspan class=\"lane-count\"> (1)</tspan>"));
        assert!(page.contains(">unknown CPU<tspan class=\"lane-count\"> (1)</tspan>"));
        assert!(page.contains("<path class=\"mark irq\" data-lane=\"1\" data-context=\"irq\""));
        assert!(page.contains("<circle class=\"mark task\" data-lane=\"0\" data-context=\"task\""));
        assert!(page
            .contains("<circle class=\"mark task\" data-lane=\"unknown\" data-context=\"task\""));
        // Tooltips name the time since the first record, the CPU and the context.
        assert!(page.contains(
            "<title>+2.000 ms [    1.002000] CPU 1, softirq/irq on CPU 1\ntasklet ran</title>"
        ));
        assert!(page.contains("CPU 3, task kworker/3:1 [47]\non a CPU beyond the VM&#39;s</title>"));
        assert!(page.contains("task [46] (had exited when read)"));
        // The axis is in milliseconds over the 10 ms the records span.
        assert!(page.contains(">10</text>") && page.contains("ms since the test"));
        // The records are readable without hovering.
        assert!(page.contains(
            "<tr data-context=\"irq\"><td class=\"num\">2.000</td><td>[    1.002000]</td>\
             <td>1</td><td>softirq/irq on CPU 1</td><td>info</td><td class=\"msg\">tasklet ran</td></tr>"
        ));
        // A passing test starts closed.
        assert!(!page.contains("<details open>"));
        let records: Vec<&KmsgRecord> = v.records.iter().collect();
        assert_eq!(lanes(&records, None).len(), 4);
    }

    #[test]
    fn without_callers_the_page_says_so_instead_of_drawing_lanes() {
        let v = verdict(
            "plain",
            Outcome::Pass,
            vec![record(1_000_000, "a", None), record(1_500_000, "b", None)],
        );
        let page = render(&[v], &info());
        assert!(page.contains(
            "this kernel does not record which CPU printed each message (CONFIG_PRINTK_CALLER is off)"
        ));
        assert!(!page.contains("<svg class=\"timeline\""));
        assert!(!page.contains("class=\"mark"));
        assert!(page.contains("[    1.500000] b"));
    }

    #[test]
    fn a_skip_without_log_has_its_row_reason_and_no_timeline() {
        let v = Verdict::skipped(
            "rust_hello",
            "greets",
            "the kernel lacks CONFIG_RUST".into(),
        );
        let page = render(&[v], &info());
        assert!(page.contains(
            "<tr class=\"verdict\" data-id=\"rust_hello/greets\" data-outcome=\"SKIP\">"
        ));
        assert!(page.contains("<td class=\"reason\">the kernel lacks CONFIG_RUST</td>"));
        assert!(page.contains("No kernel messages were recorded for this test."));
        assert!(!page.contains("<svg class=\"timeline\""));
        assert!(!page.contains("<pre"));
        assert!(page
            .contains("<p id=\"summary\" class=\"summary ok\">0 passed, 0 failed, 1 skipped</p>"));
    }

    #[test]
    fn the_header_has_the_facts_and_the_terminals_summary() {
        let mut crash = verdict("b", Outcome::Crash, vec![]);
        crash.reason = "WARNING in f".into();
        let verdicts = [verdict("a", Outcome::Pass, vec![]), crash];
        let page = render(&verdicts, &info());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains(&format!("<dd>{}</dd>", env!("CARGO_PKG_VERSION"))));
        assert!(page.contains("<dd>6.12.117</dd>"));
        assert!(page.contains("<dd>1 VM with 2 CPUs</dd>"));
        assert!(page.contains("<dd>2.5 s</dd>"));
        assert!(page.contains("<code>/tmp/runs/1</code>"));
        assert!(page.contains(&format!(
            "<p id=\"summary\" class=\"summary bad\">{}</p>",
            super::super::summary_line(&verdicts)
        )));
        // Rows in order, linked to their sections.
        let a = page
            .find("data-id=\"demo/a\" data-outcome=\"PASS\"")
            .unwrap_or(usize::MAX);
        let b = page
            .find("data-id=\"demo/b\" data-outcome=\"CRASH\"")
            .unwrap_or(0);
        assert!(a < b);
        assert!(page.contains("<a href=\"#test-2-demo-b\">demo/b</a>"));
        assert!(page.contains("<section class=\"test\" id=\"test-2-demo-b\""));
    }
}
