//! The HTML report of a real run, rendered by headless Chromium and read back from the DOM the
//! browser built (not from the file kmodlab wrote): its rows are the JSON report's verdicts in
//! order, its summary is the terminal's line, a crash's marker line is highlighted in the crashed
//! test's section, and what the tasklet example and a timer callback printed is drawn as interrupt
//! context on the lane of the CPU it ran on.

use kmodlab::cli::EXIT_FAIL;
use kmodlab_e2e::{fixture, kmodlab};
use regex::Regex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A module written by the test: it prints exactly one line, from a timer callback, naming its
/// CPU, so the one interrupt mark it makes can be checked against the lane it lands on.
const IRQ_MODULE: &str = "html_irq_demo";

const IRQ_SOURCE: &str = r#"// SPDX-License-Identifier: GPL-2.0
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/completion.h>
#include <linux/interrupt.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/smp.h>
#include <linux/timer.h>

static struct timer_list timer;
static DECLARE_COMPLETION(fired);

static void timer_fn(struct timer_list *t)
{
	pr_info("timer fired on CPU %d in %s\n", smp_processor_id(),
		in_serving_softirq() ? "softirq" : "another context");
	complete(&fired);
}

static int __init html_irq_demo_init(void)
{
	timer_setup(&timer, timer_fn, 0);
	mod_timer(&timer, jiffies + 1);
	if (!wait_for_completion_timeout(&fired, 5 * HZ))
		return -ETIMEDOUT;
	return 0;
}

static void __exit html_irq_demo_exit(void)
{
	timer_delete_sync(&timer);
}

module_init(html_irq_demo_init);
module_exit(html_irq_demo_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodlab e2e: prints from a timer callback");
"#;

const IRQ_SPEC: &str = r#"[module]
language = "c"
description = "prints from a timer callback, in softirq context"

[[test]]
name = "prints_from_a_timer"
timeout_s = 10
expect = ['html_irq_demo: timer fired on CPU [0-9]+ in softirq']
"#;

fn write_irq_module(parent: &Path) -> PathBuf {
    let dir = parent.join(IRQ_MODULE);
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join(format!("{IRQ_MODULE}.c")), IRQ_SOURCE).expect("write source");
    std::fs::write(dir.join("Kbuild"), format!("obj-m += {IRQ_MODULE}.o\n")).expect("Kbuild");
    std::fs::write(dir.join("kmodlab.toml"), IRQ_SPEC).expect("spec");
    dir
}

/// The DOM Chromium built from `page`, serialised. Fails (never skips) without Chromium, naming
/// the package: `cargo xtask ci` installs it.
fn rendered_dom(page: &Path, profile: &Path) -> String {
    let chromium = kmodlab::host::setup::require_tool(kmodlab::host::setup::CHROMIUM)
        .unwrap_or_else(|e| panic!("the HTML report test needs headless Chromium: {e:#}"));
    let out = Command::new("timeout")
        .arg("120")
        .arg(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running Chromium under coreutils' timeout");
    assert!(
        out.status.success(),
        "{} --dump-dom failed ({}):\n{}",
        chromium.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// The attributes of every start tag named `name` in `html`, in document order.
fn start_tags(html: &str, name: &str) -> Vec<HashMap<String, String>> {
    let tag = Regex::new(&format!(r"<{name}\b([^>]*)>")).expect("regex");
    let attribute = Regex::new(r#"([\w-]+)(?:="([^"]*)")?"#).expect("regex");
    tag.captures_iter(html)
        .map(|c| {
            attribute
                .captures_iter(&c[1])
                .map(|a| {
                    let value = a.get(2).map_or("", |v| v.as_str());
                    (a[1].to_string(), decode(value))
                })
                .collect()
        })
        .collect()
}

fn has_class(attributes: &HashMap<String, String>, class: &str) -> bool {
    attributes
        .get("class")
        .is_some_and(|c| c.split_whitespace().any(|word| word == class))
}

/// Text as the serialiser wrote it, back to characters, tags removed.
fn text_of(html: &str) -> String {
    let tags = Regex::new(r"<[^>]*>").expect("regex");
    decode(&tags.replace_all(html, ""))
}

fn decode(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Each `<section class="test">`: its `data-id` and its markup.
fn sections(dom: &str) -> HashMap<String, String> {
    let section =
        Regex::new(r#"(?s)<section class="test"[^>]*data-id="([^"]*)"[^>]*>.*?</section>"#)
            .expect("regex");
    section
        .captures_iter(dom)
        .map(|c| (decode(&c[1]), c[0].to_string()))
        .collect()
}

/// The texts of the highlighted lines (`.fail-line` spans) of a section.
fn fail_lines(section: &str) -> Vec<String> {
    let line =
        Regex::new(r#"(?s)<span class="[^"]*\bfail-line\b[^"]*">(.*?)</span>"#).expect("regex");
    line.captures_iter(section)
        .map(|c| text_of(&c[1]))
        .collect()
}

/// `terminal's summary line` from the JSON counts, as `N passed, N failed, N skipped` and what the
/// failures were.
fn summary_from_counts(counts: &serde_json::Value) -> String {
    let n = |key: &str| {
        counts[key]
            .as_u64()
            .unwrap_or_else(|| panic!("counts.{key}"))
    };
    let mut line = format!(
        "{} passed, {} failed, {} skipped",
        n("passed"),
        n("failed"),
        n("skipped")
    );
    let kinds: Vec<String> = [
        ("crashed", "crashed"),
        ("timed_out", "timed out"),
        ("errored", "errored"),
    ]
    .iter()
    .filter(|(key, _)| n(key) > 0)
    .map(|(key, word)| format!("{} {word}", n(key)))
    .collect();
    if !kinds.is_empty() {
        line.push_str(&format!(" ({})", kinds.join(", ")));
    }
    line
}

#[test]
fn chromium_renders_the_html_report_as_the_run_judged_it() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let irq_module = write_irq_module(dir.path()).display().to_string();
    let (html, json, runs) = (
        dir.path().join("run.html"),
        dir.path().join("run.json"),
        dir.path().join("runs"),
    );
    let path = |p: &Path| p.display().to_string();
    let (ktap_fail, warn_init) = (fixture("ktap_fail"), fixture("warn_init"));
    // The crash last: it ends its VM, and nothing after it needs another boot.
    let code = kmodlab(&[
        "test",
        "tasklet",
        "workqueue",
        &irq_module,
        &ktap_fail,
        &warn_init,
        "--no-setup",
        "--html",
        &path(&html),
        "--json",
        &path(&json),
        "--runs-dir",
        &path(&runs),
    ]);
    assert_eq!(code, EXIT_FAIL);
    let ran = started.elapsed();

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON")).expect("JSON");
    let verdicts = report["verdicts"].as_array().expect("verdicts");
    let field = |v: &serde_json::Value, key: &str| v[key].as_str().unwrap_or("").to_string();
    let outcome_of = |id: &str| {
        verdicts
            .iter()
            .find(|v| v["id"] == id)
            .map(|v| field(v, "outcome"))
            .unwrap_or_else(|| panic!("no verdict for {id}"))
    };
    let irq_id = format!("{IRQ_MODULE}/prints_from_a_timer");
    assert_eq!(outcome_of(&irq_id), "PASS", "{:#}", report);
    assert_eq!(outcome_of("warn_init/warns"), "CRASH");

    let rendering = Instant::now();
    let dom = rendered_dom(&html, &dir.path().join("chromium-profile"));
    let rendered = rendering.elapsed();

    // Every row is a verdict of the JSON report, in the same order, with the same reason.
    let rows: Vec<(String, String)> = start_tags(&dom, "tr")
        .into_iter()
        .filter(|attributes| has_class(attributes, "verdict"))
        .map(|a| (a["data-id"].clone(), a["data-outcome"].clone()))
        .collect();
    let expected: Vec<(String, String)> = verdicts
        .iter()
        .map(|v| (field(v, "id"), field(v, "outcome")))
        .collect();
    assert_eq!(rows, expected);
    let reasons: Vec<String> = Regex::new(r#"(?s)<td class="reason">(.*?)</td>"#)
        .expect("regex")
        .captures_iter(&dom)
        .map(|c| text_of(&c[1]))
        .collect();
    let expected_reasons: Vec<String> = verdicts.iter().map(|v| field(v, "reason")).collect();
    assert_eq!(reasons, expected_reasons);

    // The summary is the terminal's closing line.
    let summary = Regex::new(r#"(?s)<p id="summary"[^>]*>(.*?)</p>"#)
        .expect("regex")
        .captures(&dom)
        .map(|c| text_of(&c[1]))
        .expect("a #summary paragraph");
    assert_eq!(summary, summary_from_counts(&report["counts"]));
    assert_eq!(summary, "3 passed, 2 failed, 0 skipped (1 crashed)");

    // The page's script ran in the browser: it shows the filter buttons it hides without one.
    let controls = start_tags(&dom, "div")
        .into_iter()
        .find(|a| a.get("id").map(String::as_str) == Some("controls"))
        .expect("#controls");
    assert!(!controls.contains_key("hidden"), "the script did not run");

    let sections = sections(&dom);
    assert_eq!(sections.len(), verdicts.len(), "one section per verdict");

    // The crash is open, and its marker line is highlighted: the title's kind and function.
    let crash = &sections["warn_init/warns"];
    assert!(crash.contains("<details open"), "a failure starts open");
    let title = verdicts
        .iter()
        .find(|v| v["id"] == "warn_init/warns")
        .and_then(|v| v["title"].as_str())
        .expect("a crash title");
    let (kind, function) = title.split_once(" in ").expect("`KIND in FUNCTION`");
    let lines = fail_lines(crash);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("{kind}:")) && l.contains(function)),
        "no highlighted line names {title}: {lines:#?}"
    );
    // The failed KTAP case is highlighted in its log too.
    let ktap_lines = fail_lines(&sections["ktap_fail/reports_not_ok"]);
    assert!(
        ktap_lines
            .iter()
            .any(|l| l.contains("not ok 2") && l.contains("arithmetic_is_broken")),
        "{ktap_lines:#?}"
    );

    // The timer's message is an interrupt-context mark on the lane of the CPU it names.
    let cpus = 2;
    let irq = &sections[&irq_id];
    let lanes: Vec<String> = start_tags(irq, "g")
        .into_iter()
        .filter(|a| has_class(a, "lane"))
        .map(|a| a["data-lane"].clone())
        .collect();
    assert!(
        lanes.starts_with(&["0".to_string(), "1".to_string()]),
        "a lane per CPU of the VM: {lanes:?}"
    );
    let mark = Regex::new(
        r#"(?s)<path class="mark irq[^"]*" data-lane="([0-9]+)" data-context="irq"[^>]*><title>(.*?)</title>"#,
    )
    .expect("regex");
    let fired: Vec<(u32, String)> = mark
        .captures_iter(irq)
        .map(|c| (c[1].parse().expect("a CPU number"), text_of(&c[2])))
        .filter(|(_, tooltip)| tooltip.contains("timer fired"))
        .collect();
    // The test loads the module twice (`reload`), and the timer fires once per load.
    assert_eq!(
        fired.len(),
        2,
        "one interrupt-context mark for the timer of each load:\n{irq}"
    );
    for (lane, tooltip) in &fired {
        assert!(*lane < cpus, "lane {lane}");
        assert!(
            tooltip.contains(&format!("CPU {lane}, softirq/irq on CPU {lane}"))
                && tooltip.contains(&format!("timer fired on CPU {lane} in softirq")),
            "the mark's lane is the CPU the module printed: {tooltip}"
        );
        // The records table says the same without hovering.
        assert!(
            irq.contains(&format!(
                "<td>{lane}</td><td>softirq/irq on CPU {lane}</td>"
            )),
            "{irq}"
        );
    }

    // The tasklet example prints from its callback: softirq context, on a CPU lane of the VM.
    let tasklet = &sections["tasklet/runs_in_softirq"];
    let tasklet_irq: Vec<(u32, String)> = mark
        .captures_iter(tasklet)
        .map(|c| (c[1].parse().expect("a CPU number"), text_of(&c[2])))
        .collect();
    assert!(
        !tasklet_irq.is_empty(),
        "the tasklet's runs are interrupt-context marks:\n{tasklet}"
    );
    for (lane, tooltip) in &tasklet_irq {
        assert!(*lane < cpus, "lane {lane}");
        assert!(
            tooltip.contains(&format!("softirq/irq on CPU {lane}")),
            "{tooltip}"
        );
    }

    // The examples' records are drawn too, on the VM's CPU lanes, from task context.
    for id in ["tasklet/runs_in_softirq", "workqueue/runs_and_tears_down"] {
        let section = &sections[id];
        let marks = start_tags(section, "circle")
            .into_iter()
            .filter(|a| {
                has_class(a, "mark") && a.get("data-context").map(String::as_str) == Some("task")
            })
            .count();
        assert!(marks > 0, "{id} has task-context marks");
        assert!(
            section.contains("<g class=\"lane\" data-lane=\"1\">"),
            "{id}"
        );
    }

    println!(
        "kmodlab run {:.1}s, Chromium render {:.1}s, whole test {:.1}s",
        ran.as_secs_f64(),
        rendered.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
