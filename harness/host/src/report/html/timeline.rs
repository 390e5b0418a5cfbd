//! The timeline of one test's kernel messages: a lane per CPU, a mark per record (a dot for task
//! context, a diamond for interrupt context, red for the verdict's evidence), and the records as a
//! table below it.

use super::escape;
use crate::judge::verdict::Verdict;
use kmodlab_protocol::{Caller, KmsgRecord};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

/// Where a record sits in the timeline: a CPU lane, or the lane of records whose CPU is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Lane {
    Cpu(u32),
    Unknown,
}

impl Lane {
    fn of(record: &KmsgRecord) -> Lane {
        record
            .caller
            .as_ref()
            .and_then(Caller::cpu)
            .map_or(Lane::Unknown, Lane::Cpu)
    }

    fn label(self) -> String {
        match self {
            Lane::Cpu(cpu) => format!("CPU {cpu}"),
            Lane::Unknown => "unknown CPU".into(),
        }
    }

    /// The `data-lane` value: the CPU number, or `unknown`.
    fn key(self) -> String {
        match self {
            Lane::Cpu(cpu) => cpu.to_string(),
            Lane::Unknown => "unknown".into(),
        }
    }
}

/// The lanes of a timeline: every CPU of the VM, any other CPU a record names, and the unknown
/// lane when some record has no CPU.
pub(super) fn lanes(records: &[&KmsgRecord], cpus: Option<u32>) -> Vec<Lane> {
    let mut lanes: BTreeSet<Lane> = (0..cpus.unwrap_or(0)).map(Lane::Cpu).collect();
    lanes.extend(records.iter().map(|r| Lane::of(r)));
    lanes.into_iter().collect()
}

/// `irq` for interrupt context, `task`, or `unknown` when the kernel did not say.
fn context_key(caller: Option<&Caller>) -> &'static str {
    match caller {
        Some(Caller::Interrupt { .. }) => "irq",
        Some(Caller::Task { .. }) => "task",
        None => "unknown",
    }
}

/// Who printed a record, in words.
fn context_text(caller: Option<&Caller>) -> String {
    match caller {
        Some(Caller::Interrupt { cpu }) => format!("softirq/irq on CPU {cpu}"),
        Some(Caller::Task {
            pid,
            comm: Some(comm),
            ..
        }) => format!("task {comm} [{pid}]"),
        Some(Caller::Task {
            pid, comm: None, ..
        }) => {
            format!("task [{pid}] (had exited when read)")
        }
        None => "not recorded".into(),
    }
}

fn level_name(level: u8) -> &'static str {
    match level {
        0 => "emerg",
        1 => "alert",
        2 => "crit",
        3 => "err",
        4 => "warning",
        5 => "notice",
        6 => "info",
        _ => "debug",
    }
}

pub(super) fn stamp(us: u64) -> String {
    crate::judge::records::format_stamp(us)
}

/// Milliseconds with as many decimals as `step_ms` needs, trailing zeros dropped.
fn ms(value: f64, step_ms: f64) -> String {
    let decimals = if step_ms >= 1.0 {
        0
    } else {
        (-step_ms.log10()).ceil() as usize
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// A tick step of 1, 2 or 5 times a power of ten giving at most about eight ticks over `span_ms`.
fn tick_step(span_ms: f64) -> f64 {
    let rough = span_ms / 8.0;
    let power = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * power)
}

// The chart's geometry, in SVG user units (pixels at the default scale).
const CHART_WIDTH: f64 = 1140.0;
const LABEL_WIDTH: f64 = 124.0;
const RIGHT_PAD: f64 = 24.0;
const TOP_PAD: f64 = 8.0;
const LANE_HEIGHT: f64 = 30.0;
const AXIS_HEIGHT: f64 = 40.0;
/// The longest record text a tooltip shows; the table below the chart has it all.
const TOOLTIP_CHARS: usize = 400;

/// The most records a test's timeline and records table show. A module that floods the log can
/// leave a hundred thousand records in one test; drawn in full that page weighs tens of megabytes
/// and no browser scrolls it. The kernel log above the chart keeps every line.
pub(super) const TIMELINE_RECORDS: usize = 2000;

/// A record the timeline shows, and whether it is part of the verdict's evidence.
struct Shown<'a> {
    record: &'a KmsgRecord,
    failed: bool,
}

/// The records the timeline draws: all of them up to [`TIMELINE_RECORDS`], else the first ones
/// and every failure record after them (a crash at the end of a flood is what matters), capped too.
fn timeline_records<'a>(records: &'a [KmsgRecord], failed: &HashSet<usize>) -> Vec<Shown<'a>> {
    let shown = records.iter().enumerate().map(|(i, record)| Shown {
        record,
        failed: failed.contains(&i),
    });
    if records.len() <= TIMELINE_RECORDS {
        return shown.collect();
    }
    let mut shown = shown;
    let mut out: Vec<Shown> = shown.by_ref().take(TIMELINE_RECORDS).collect();
    out.extend(shown.filter(|s| s.failed).take(TIMELINE_RECORDS));
    out
}

/// The test's timeline and records table, or a note saying why there is none.
pub(super) fn timeline(out: &mut String, v: &Verdict, cpus: Option<u32>) {
    let failed: HashSet<usize> = v.evidence.records.iter().copied().collect();
    let records = timeline_records(&v.records, &failed);
    if records.is_empty() {
        if !v.log.is_empty() {
            out.push_str(
                "<p class=\"note\">No timeline: only console text was left for this test (a \
                 plain log, or a kernel that died before kmodlab's agent could send its records), \
                 and it does not say which CPU printed each line.</p>\n",
            );
        }
        return;
    }
    out.push_str("<h3>Kernel messages by CPU</h3>\n");
    if records.len() < v.records.len() {
        let _ = writeln!(
            out,
            "<p class=\"note capped\">{} kernel messages: the timeline and the table show the \
             first {TIMELINE_RECORDS} and the failure lines after them ({} in all). The kernel \
             log above has every line, and the run folder every record.</p>",
            v.records.len(),
            records.len()
        );
    }
    if records.iter().all(|s| s.record.caller.is_none()) {
        out.push_str(
            "<p class=\"note no-caller\">No timeline: this kernel does not record which CPU printed \
             each message (CONFIG_PRINTK_CALLER is off).</p>\n",
        );
        return;
    }
    let scale = Scale::of(&records);
    chart(out, v, &records, cpus, &scale);
    out.push_str(LEGEND);
    records_table(out, &records, scale.start);
}

/// Where a record's time goes on the chart.
struct Scale {
    /// The first record's timestamp, the chart's zero.
    start: u64,
    span_us: f64,
    plot_width: f64,
}

impl Scale {
    fn of(records: &[Shown]) -> Scale {
        let start = records.iter().map(|s| s.record.ts_us).min().unwrap_or(0);
        let end = records
            .iter()
            .map(|s| s.record.ts_us)
            .max()
            .unwrap_or(start);
        Scale {
            start,
            // A single instant still needs a scale: give it a millisecond.
            span_us: (end - start).max(1000) as f64,
            plot_width: CHART_WIDTH - LABEL_WIDTH - RIGHT_PAD,
        }
    }

    fn x(&self, ts_us: u64) -> f64 {
        LABEL_WIDTH + (ts_us - self.start) as f64 / self.span_us * self.plot_width
    }
}

/// The SVG chart: a lane per CPU, the time axis, a mark per record.
fn chart(out: &mut String, v: &Verdict, records: &[Shown], cpus: Option<u32>, scale: &Scale) {
    let plain: Vec<&KmsgRecord> = records.iter().map(|s| s.record).collect();
    let lanes = lanes(&plain, cpus);
    let lanes_bottom = TOP_PAD + lanes.len() as f64 * LANE_HEIGHT;
    let height = lanes_bottom + AXIS_HEIGHT;
    let _ = writeln!(
        out,
        "<div class=\"chart\"><svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{CHART_WIDTH}\" height=\"{height}\" viewBox=\"0 0 {CHART_WIDTH} {height}\" \
         role=\"img\" aria-label=\"kernel messages of {} by CPU over time\">",
        escape(&v.id())
    );
    for (i, lane) in lanes.iter().enumerate() {
        let y = TOP_PAD + i as f64 * LANE_HEIGHT;
        let count = plain.iter().filter(|r| Lane::of(r) == *lane).count();
        let _ = writeln!(
            out,
            "<g class=\"lane\" data-lane=\"{key}\"><rect class=\"lane-bg{odd}\" x=\"0\" y=\"{y}\" \
             width=\"{CHART_WIDTH}\" height=\"{LANE_HEIGHT}\"/><text class=\"lane-label\" x=\"8\" \
             y=\"{ty}\">{label}<tspan class=\"lane-count\"> ({count})</tspan></text></g>",
            key = lane.key(),
            odd = if i % 2 == 1 { " odd" } else { "" },
            ty = y + LANE_HEIGHT / 2.0 + 4.0,
            label = lane.label(),
        );
    }
    axis(out, scale, lanes_bottom);
    marks(out, records, &lanes, scale);
    out.push_str("</svg></div>\n");
}

/// Grid lines and labels at round milliseconds, and the axis title.
fn axis(out: &mut String, scale: &Scale, lanes_bottom: f64) {
    let span_ms = scale.span_us / 1000.0;
    let step = tick_step(span_ms);
    // Multiples of the step, not a running sum, so that float error cannot drop the last tick.
    let ticks = (span_ms / step + 1e-9).floor() as u32;
    for tick in (0..=ticks).map(|i| f64::from(i) * step) {
        let x = LABEL_WIDTH + tick / span_ms * scale.plot_width;
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{TOP_PAD}\" x2=\"{x:.1}\" y2=\"{y2}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text>",
            y2 = lanes_bottom + 4.0,
            ty = lanes_bottom + 16.0,
            label = ms(tick, step),
        );
    }
    let _ = writeln!(
        out,
        "<text class=\"axis-title\" x=\"{x}\" y=\"{y}\" text-anchor=\"middle\">ms since the \
         test's first kernel message</text>",
        x = LABEL_WIDTH + scale.plot_width / 2.0,
        y = lanes_bottom + 34.0,
    );
}

/// One mark per record on its lane, with its message as a tooltip.
fn marks(out: &mut String, records: &[Shown], lanes: &[Lane], scale: &Scale) {
    // Marks closer than a few pixels in one lane are spread vertically so each stays hoverable.
    let mut last_x: Vec<Option<(f64, usize)>> = vec![None; lanes.len()];
    for shown in records {
        let record = shown.record;
        let lane = Lane::of(record);
        let Some(lane_index) = lanes.iter().position(|l| *l == lane) else {
            continue;
        };
        let x = scale.x(record.ts_us);
        let slot = match last_x[lane_index] {
            Some((previous, slot)) if x - previous < 4.0 => (slot + 1) % 3,
            _ => 0,
        };
        last_x[lane_index] = Some((x, slot));
        let y =
            TOP_PAD + lane_index as f64 * LANE_HEIGHT + LANE_HEIGHT / 2.0 + [0.0, -8.0, 8.0][slot];
        let context = context_key(record.caller.as_ref());
        let class = format!("mark {context}{}", if shown.failed { " fail" } else { "" });
        let shape = match context {
            // Interrupt context is a diamond, so it stands out from the task-context dots.
            "irq" => format!(
                "<path class=\"{class}\" data-lane=\"{lane}\" data-context=\"{context}\" \
                 d=\"M{x:.1} {top:.1}L{right:.1} {y:.1}L{x:.1} {bottom:.1}L{left:.1} {y:.1}Z\">",
                lane = lane.key(),
                top = y - 6.0,
                bottom = y + 6.0,
                left = x - 6.0,
                right = x + 6.0,
            ),
            _ => format!(
                "<circle class=\"{class}\" data-lane=\"{lane}\" data-context=\"{context}\" \
                 cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4.5\">",
                lane = lane.key(),
            ),
        };
        let element = if context == "irq" { "path" } else { "circle" };
        let _ = writeln!(
            out,
            "{shape}<title>{}</title></{element}>",
            escape(&tooltip(record, scale.start))
        );
    }
}

/// `+1.234 ms [    5.678901] CPU 1, softirq/irq on CPU 1` and the record's text.
fn tooltip(record: &KmsgRecord, start: u64) -> String {
    let caller = record.caller.as_ref();
    let cpu = caller
        .and_then(Caller::cpu)
        .map_or_else(|| "CPU unknown".to_string(), |cpu| format!("CPU {cpu}"));
    let text: Vec<&str> = record.lines().collect();
    let mut text = text.join("\n");
    if let Some((cut, _)) = text.char_indices().nth(TOOLTIP_CHARS) {
        text.truncate(cut);
        text.push_str(" …");
    }
    format!(
        "+{:.3} ms {} {cpu}, {}\n{text}",
        (record.ts_us - start) as f64 / 1000.0,
        stamp(record.ts_us),
        context_text(caller)
    )
}

const LEGEND: &str = "<p class=\"legend\">\
<svg width=\"14\" height=\"14\" viewBox=\"0 0 14 14\"><circle class=\"mark task\" cx=\"7\" cy=\"7\" r=\"4.5\"/></svg> task context \
<svg width=\"14\" height=\"14\" viewBox=\"0 0 14 14\"><path class=\"mark irq\" d=\"M7 1L13 7L7 13L1 7Z\"/></svg> interrupt context (hard or soft IRQ: timers, tasklets) \
<svg width=\"14\" height=\"14\" viewBox=\"0 0 14 14\"><circle class=\"mark task fail\" cx=\"7\" cy=\"7\" r=\"4.5\"/></svg> failure. \
Hover a mark for its message. An interrupt's CPU is exact; a task's is the CPU the thread was on when \
kmodlab read the message (exact for per-CPU workers such as <code>kworker/1:2</code>).</p>\n";

fn records_table(out: &mut String, records: &[Shown], start: u64) {
    out.push_str(
        "<table class=\"records\">\n<thead><tr><th class=\"num\">+ms</th><th>time</th>\
         <th>CPU</th><th>context</th><th>level</th><th>message</th></tr></thead>\n<tbody>\n",
    );
    for Shown { record, failed } in records {
        let caller = record.caller.as_ref();
        let lines: Vec<&str> = record.lines().collect();
        let class = if *failed { " class=\"fail-line\"" } else { "" };
        let _ = writeln!(
            out,
            "<tr{class} data-context=\"{context}\"><td class=\"num\">{rel:.3}</td><td>{time}</td>\
             <td>{cpu}</td><td>{who}</td><td>{level}</td><td class=\"msg\">{text}</td></tr>",
            context = context_key(caller),
            rel = (record.ts_us - start) as f64 / 1000.0,
            time = stamp(record.ts_us),
            cpu = caller
                .and_then(Caller::cpu)
                .map_or_else(|| "?".to_string(), |cpu| cpu.to_string()),
            who = escape(&context_text(caller)),
            level = level_name(record.level),
            text = escape(&lines.join("\n")),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_milliseconds() {
        assert_eq!(tick_step(10.0), 2.0);
        assert_eq!(tick_step(1.0), 0.2);
        assert_eq!(tick_step(300.0), 50.0);
        assert_eq!(ms(0.4, 0.2), "0.4");
        assert_eq!(ms(20.0, 5.0), "20");
    }
}
