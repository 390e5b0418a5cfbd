//! Kernel failure markers: finding crash reports in a kernel log and giving each a one-line title.
//!
//! The knowledge lives in one table, `MARKERS` (in `oops/markers.rs`), in the manner of syzkaller's
//! `pkg/report/linux.go`: each entry is a class, a pattern for the line that starts the report,
//! and how to build a title from it (`WARNING in demo_exit`, `KASAN: slab-use-after-free Read in
//! demo_init`, ...). The formats are those the 6.12 kernel prints (`lib/bug.c`, `kernel/panic.c`,
//! `arch/x86/kernel/dumpstack.c`, `arch/x86/mm/fault.c`, `kernel/locking/lockdep.c`,
//! `kernel/sched/core.c`, `kernel/watchdog.c`, `kernel/hung_task.c`, `kernel/rcu/tree_stall.h`,
//! `kernel/workqueue.c`, `mm/kasan/report.c`, `mm/kfence/report.c`, `lib/ubsan.c`, the Rust
//! panic handler in `rust/kernel/lib.rs`), with the arm64 spellings where they differ.
//!
//! Titles name the function to blame: taken from the marker line itself, the faulting `RIP:`,
//! a lockdep `at:` site, or the first reliable call-trace frame, skipping generic infrastructure
//! ([`SKIP_FRAMES`]) so that the title names the module's code rather than `__warn` or `mutex_lock`.
//! A fault (NULL dereference, page fault, general protection fault, other oops) whose faulting
//! `RIP:` is a bare address (code in freed module memory) is titled by the kind of callback and
//! the kernel function that ran it when the trace starts there (`BUG: unable to handle page
//! fault in timer callback (call_timer_fn)`, `... in work item (process_one_work)`; the list is
//! `CALLBACK_RUNNERS` in `oops/markers.rs`); and a fault whose `RIP:` and trace name only generic
//! code is titled by the `RIP:` function all the same (`general protection fault in
//! destroy_workqueue`).

use super::verdict::Outcome;
use kmodlab_protocol::ktap::strip_timestamp;
use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

/// What kind of failure a report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashClass {
    /// `Oops: ...` with no more specific marker before it (invalid opcode, divide error, ...).
    Oops,
    GeneralProtection,
    NullDeref,
    PageFault,
    /// `kernel BUG at file:line!` (BUG(), BUG_ON()).
    Bug,
    /// `WARNING: CPU: ... at ...` (WARN(), WARN_ON()).
    Warning,
    /// `Kernel panic - not syncing: ...`.
    Panic,
    Kasan,
    Ubsan,
    Kfence,
    /// Lock validator reports: deadlocks, inconsistent lock state, bad unlock balance,
    /// suspicious RCU usage, invalid wait context.
    Lockdep,
    /// `BUG: scheduling while atomic`, `BUG: sleeping function called from invalid context`.
    SleepInAtomic,
    SoftLockup,
    HardLockup,
    HungTask,
    RcuStall,
    WorkqueueLockup,
    RustPanic,
    /// Any other `BUG: ...` line (bad page state, spinlock bugs, stack guard page, ...).
    OtherBug,
    /// `do_init_module: 'mod'->init suspiciously returned 1, it should follow 0/-E convention`:
    /// the module's init returned a positive value. The kernel loads the module anyway and
    /// carries on, so this is a FAIL of the module, not a crash of the kernel.
    InitReturn,
    /// `sysfs: cannot create duplicate filename '/module/m/...'` with a stack dump: a name the
    /// module registers is taken (on a reload: by what its first unload left behind). The kernel
    /// refuses the registration and carries on: a FAIL.
    DuplicateName,
}

impl CrashClass {
    /// The snake_case name used in reports and test expectations.
    pub fn as_str(self) -> &'static str {
        match self {
            CrashClass::Oops => "oops",
            CrashClass::GeneralProtection => "general_protection",
            CrashClass::NullDeref => "null_deref",
            CrashClass::PageFault => "page_fault",
            CrashClass::Bug => "bug",
            CrashClass::Warning => "warning",
            CrashClass::Panic => "panic",
            CrashClass::Kasan => "kasan",
            CrashClass::Ubsan => "ubsan",
            CrashClass::Kfence => "kfence",
            CrashClass::Lockdep => "lockdep",
            CrashClass::SleepInAtomic => "sleep_in_atomic",
            CrashClass::SoftLockup => "soft_lockup",
            CrashClass::HardLockup => "hard_lockup",
            CrashClass::HungTask => "hung_task",
            CrashClass::RcuStall => "rcu_stall",
            CrashClass::WorkqueueLockup => "workqueue_lockup",
            CrashClass::RustPanic => "rust_panic",
            CrashClass::OtherBug => "other_bug",
            CrashClass::InitReturn => "init_return",
            CrashClass::DuplicateName => "duplicate_name",
        }
    }

    /// The verdict a report of this class earns: CRASH, except for findings the kernel survives
    /// unharmed (a positive init return), which are the module's FAIL and leave the VM running.
    pub fn outcome(self) -> Outcome {
        match self {
            CrashClass::InitReturn | CrashClass::DuplicateName => Outcome::Fail,
            _ => Outcome::Crash,
        }
    }
}

impl std::fmt::Display for CrashClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One crash report found in a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crash {
    pub class: CrashClass,
    /// One line, e.g. `WARNING in demo_exit`.
    pub title: String,
    /// Index of the marker line in the scanned lines.
    pub line: usize,
    /// The report as printed (timestamps removed): a `cut here` line and WARN message just
    /// before the marker when there are some, the marker, and what follows up to the
    /// end-of-report marker, at most [`REPORT_LINES`] lines.
    pub report: Vec<String>,
}

/// Most lines kept in [`Crash::report`].
pub const REPORT_LINES: usize = 40;
/// How far after a marker its report may reach (for the end marker, the title's function and
/// markers that belong to it). Bounds the work per report, so scanning stays linear.
const REPORT_REACH: usize = 200;
/// How far before a marker to look for `------------[ cut here ]------------`.
const PREAMBLE_LINES: usize = 4;
const TITLE_MAX: usize = 160;

/// A symbol as `%pS` prints it: `name+0xoff/0xsize`. Group `func` captures the name.
macro_rules! sym {
    () => {
        r"(?P<func>[A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+"
    };
}

mod markers;

pub use markers::SKIP_FRAMES;
use markers::{Func, CALLBACK_RUNNERS, ENDS_WITH_ITS_STACK, END_OF_REPORT, END_OF_STACK, MARKERS};

/// Compiled once: the table, a set for the first look at every line, and the helpers.
struct Compiled {
    set: RegexSet,
    /// Parallel to `MARKERS`; `None` for a row whose pattern failed to compile (a unit test
    /// checks there are none, so this only keeps a typo from becoming a panic).
    markers: Vec<Option<Regex>>,
    details: Vec<Option<Regex>>,
    end: Option<Regex>,
    end_of_stack: Option<Regex>,
    frame: Option<Regex>,
    rip: Option<Regex>,
    /// The first `RIP:`/`pc :` line, with its address in group `at`: the faulting instruction.
    any_rip: Option<Regex>,
    lock_site: Option<Regex>,
    skip: Option<Regex>,
    cut_here: Option<Regex>,
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        // Markers start a line, but indentation is tolerated (KUnit's own test logs show an
        // indented panic line when a suite was interrupted).
        let patterns: Vec<String> = MARKERS
            .iter()
            .map(|m| format!("^[ \\t]*(?:{})", m.pattern.trim_start_matches('^')))
            .collect();
        let markers: Vec<Option<Regex>> = patterns.iter().map(|p| Regex::new(p).ok()).collect();
        // The set only pre-filters; rows that failed to compile are replaced by a never-matching
        // pattern so indices stay parallel.
        let set_patterns: Vec<&str> = patterns
            .iter()
            .zip(&markers)
            .map(|(p, r)| if r.is_some() { p.as_str() } else { r"[^\s\S]" })
            .collect();
        Compiled {
            set: RegexSet::new(set_patterns).unwrap_or_else(|_| RegexSet::empty()),
            markers,
            details: MARKERS
                .iter()
                .map(|m| m.detail.and_then(|(p, _)| Regex::new(p).ok()))
                .collect(),
            end: Regex::new(END_OF_REPORT).ok(),
            end_of_stack: Regex::new(END_OF_STACK).ok(),
            frame: Regex::new(concat!(
                r"^\s*(?:\[<[0-9a-f]+>\]\s*)?(?P<unreliable>\?\s+)?",
                sym!(),
                r"/0x[0-9a-f]+(?:\s+\[[^\]]*\])?\s*$"
            ))
            .ok(),
            rip: Regex::new(concat!(r"^\s*(?:RIP: [0-9a-f]{4}:|pc : )", sym!())).ok(),
            any_rip: Regex::new(r"^\s*(?:RIP: [0-9a-f]{4}:|pc : )(?P<at>\S+)").ok(),
            lock_site: Regex::new(concat!(r", at: ", sym!())).ok(),
            skip: Regex::new(&format!("^(?:{})$", SKIP_FRAMES.join("|"))).ok(),
            cut_here: Regex::new(r"^-+\[ cut here \]-+\s*$").ok(),
        }
    })
}

/// Every crash report in `lines`, in order. Markers inside a report that belong to it (the
/// `Oops:` line of a `kernel BUG at` report) are not reported again; a panic is always its own
/// entry, as is any marker of another kind.
pub fn scan(lines: &[&str]) -> Vec<Crash> {
    let c = compiled();
    let text: Vec<&str> = lines
        .iter()
        .map(|l| strip_timestamp(l).trim_end())
        .collect();
    let mut crashes = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let Some(row) = marker_at(c, text[i]) else {
            i += 1;
            continue;
        };
        let end = report_end(c, &text, i, row);
        crashes.push(build(c, &text, i, end, row));
        i = end;
    }
    crashes
}

/// Whether one line starts a failure report: cheap enough to ask of every line as it arrives.
pub fn is_marker(line: &str) -> bool {
    marker_at(compiled(), strip_timestamp(line).trim_end()).is_some()
}

/// Whether one line starts a report whose class is a crash ([`CrashClass::outcome`]): the
/// kernel may be dying, so the host should not wait long for more.
pub fn is_crash_marker(line: &str) -> bool {
    marker_at(compiled(), strip_timestamp(line).trim_end())
        .is_some_and(|row| MARKERS[row].class.outcome() == Outcome::Crash)
}

/// The first report in `lines`, of any class.
pub fn first(lines: &[&str]) -> Option<Crash> {
    first_where(lines, |_| true)
}

/// The first report in `lines` whose class `keep` accepts.
pub fn first_where(lines: &[&str], keep: impl Fn(CrashClass) -> bool) -> Option<Crash> {
    // Scanning stops at the first report, so a long log after a crash costs nothing.
    let c = compiled();
    let text: Vec<&str> = lines
        .iter()
        .map(|l| strip_timestamp(l).trim_end())
        .collect();
    let i = text
        .iter()
        .position(|l| marker_at(c, l).is_some_and(|row| keep(MARKERS[row].class)))?;
    let row = marker_at(c, text[i])?;
    let end = report_end(c, &text, i, row);
    Some(build(c, &text, i, end, row))
}

/// The table row whose marker starts on this line (the first that matches).
fn marker_at(c: &Compiled, line: &str) -> Option<usize> {
    c.set.matches(line).iter().next()
}

/// One past the last line of the report that starts at `start`: through the end-of-report
/// marker (or its stack's end, for a report that has only that), or up to the next marker that
/// is not part of it, or [`REPORT_REACH`] lines.
fn report_end(c: &Compiled, text: &[&str], start: usize, row: usize) -> usize {
    let limit = text.len().min(start.saturating_add(REPORT_REACH));
    let end = if ENDS_WITH_ITS_STACK.contains(&MARKERS[row].class) {
        &c.end_of_stack
    } else {
        &c.end
    };
    for (j, line) in text.iter().enumerate().take(limit).skip(start + 1) {
        if end.as_ref().is_some_and(|end| end.is_match(line)) {
            return j + 1;
        }
        if let Some(other) = marker_at(c, line) {
            if !MARKERS[row].absorbs.contains(&MARKERS[other].class) {
                return j;
            }
        }
    }
    limit
}

fn build(c: &Compiled, text: &[&str], start: usize, end: usize, row: usize) -> Crash {
    let marker = &MARKERS[row];
    let span = &text[start..end];
    let mut vars: HashMap<&str, String> = HashMap::new();
    if let Some(caps) = c.markers[row].as_ref().and_then(|re| re.captures(span[0])) {
        for name in c.markers[row]
            .iter()
            .flat_map(|re| re.capture_names())
            .flatten()
        {
            if let Some(m) = caps.name(name) {
                vars.insert(name, m.as_str().trim().to_string());
            }
        }
    }
    if let (Some(re), Some((_, reach))) = (&c.details[row], marker.detail) {
        for line in span.iter().skip(1).take(reach) {
            if let Some(caps) = re.captures(line) {
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        vars.entry(name)
                            .or_insert_with(|| m.as_str().trim().to_string());
                    }
                }
                break;
            }
        }
    }
    let marker_func = vars.remove("func");
    if let Some(func) = blamed_function(c, marker.func, marker_func.as_deref(), span) {
        vars.insert("func", func);
    }
    let title = expand(marker.title, &vars);

    // A WARN's message and the `cut here` line come just before its marker; keep them.
    let preamble_start = (start.saturating_sub(PREAMBLE_LINES)..start)
        .find(|&j| c.cut_here.as_ref().is_some_and(|re| re.is_match(text[j])))
        .unwrap_or(start);
    let report = text[preamble_start..end]
        .iter()
        .take(REPORT_LINES + (start - preamble_start))
        .map(|l| l.to_string())
        .collect();
    Crash {
        class: marker.class,
        title,
        line: start,
        report,
    }
}

/// The function to name in the title: the first source in `sources` that yields one that is
/// not infrastructure.
fn blamed_function(
    c: &Compiled,
    sources: &[Func],
    marker_func: Option<&str>,
    span: &[&str],
) -> Option<String> {
    // A frame in a module (`func+0x1c/0x40 [mod]`) is never infrastructure, whatever its name:
    // a module may well call its functions `lockdep_...` or `schedule_...`.
    let usable = |name: &str, line: &str| {
        let cleaned = clean_symbol(name);
        let skipped =
            !in_module(line, name) && c.skip.as_ref().is_some_and(|re| re.is_match(cleaned));
        (!cleaned.is_empty() && !skipped).then(|| cleaned.to_string())
    };
    let first_in = |re: &Option<Regex>| {
        let re = re.as_ref()?;
        span.iter().find_map(|line| {
            re.captures(line)
                .and_then(|caps| caps.name("func"))
                .map(|m| (m.as_str(), *line))
        })
    };
    let marker_line = span.first().copied().unwrap_or_default();
    // The first `RIP:` line is the faulting instruction; later ones are the interrupted task's
    // (a fault in an interrupt) or user space's.
    let faulting = c
        .any_rip
        .as_ref()
        .and_then(|re| span.iter().copied().find(|line| re.is_match(line)));
    let first_frame = || {
        let re = c.frame.as_ref()?;
        span.iter().skip(1).find_map(|line| {
            let caps = re.captures(line)?;
            if caps.name("unreliable").is_some() {
                // `? func` frames are stale stack contents, not the call chain.
                return None;
            }
            caps.name("func").and_then(|m| usable(m.as_str(), line))
        })
    };
    sources.iter().find_map(|source| match source {
        Func::Marker => marker_func.and_then(|f| usable(f, marker_line)),
        Func::Rip => rip_func(c, faulting).and_then(|f| usable(f, faulting.unwrap_or_default())),
        Func::LockSite => first_in(&c.lock_site).and_then(|(f, line)| usable(f, line)),
        Func::Trace => first_frame(),
        Func::Callback => {
            let bare = c
                .any_rip
                .as_ref()
                .and_then(|re| re.captures(faulting?)?.name("at"))
                .is_some_and(|at| at.as_str().starts_with("0x"));
            if !bare {
                return None;
            }
            // The first reliable frame; a callback in freed memory often leaves only unreliable
            // ones (`? call_timer_fn.constprop.0+0xe/0x70`), and then the first of those that
            // is a runner.
            let runner = first_frame().or_else(|| {
                let re = c.frame.as_ref()?;
                span.iter().skip(1).find_map(|line| {
                    let name = clean_symbol(re.captures(line)?.name("func")?.as_str());
                    CALLBACK_RUNNERS
                        .iter()
                        .any(|(runner, _)| *runner == name)
                        .then(|| name.to_string())
                })
            })?;
            CALLBACK_RUNNERS
                .iter()
                .find(|(name, _)| *name == runner)
                .map(|(name, what)| format!("{what} ({name})"))
        }
        Func::AnyRip => rip_func(c, faulting)
            .map(|f| clean_symbol(f).to_string())
            .filter(|f| !f.is_empty()),
    })
}

/// The kind of callback a report's call trace shows running (`timer callback`, `work item`,
/// ...): the first frame, reliable or not (`? call_timer_fn.constprop.0+0xe/0x70`: a callback in
/// freed memory leaves no reliable frames), that is a [`CALLBACK_RUNNERS`] entry.
pub fn callback_kind(report: &[String]) -> Option<&'static str> {
    let frame = compiled().frame.as_ref()?;
    report.iter().find_map(|line| {
        let caps = frame.captures(strip_timestamp(line).trim_end())?;
        let name = clean_symbol(caps.name("func")?.as_str());
        CALLBACK_RUNNERS
            .iter()
            .find(|(runner, _)| *runner == name)
            .map(|(_, what)| *what)
    })
}

/// The function named on the faulting `RIP:` line, if it names one (not a bare address).
fn rip_func<'a>(c: &Compiled, faulting: Option<&'a str>) -> Option<&'a str> {
    let caps = c.rip.as_ref()?.captures(faulting?)?;
    caps.name("func").map(|m| m.as_str())
}

/// Whether `func` appears in `line` as a module's symbol: `func+0x1c/0x40 [module]`.
fn in_module(line: &str, func: &str) -> bool {
    let Some(at) = line.find(&format!("{func}+0x")) else {
        return false;
    };
    let rest = &line[at + func.len()..];
    let symbol_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[symbol_end..].trim_start().starts_with('[')
}

/// Removes the compiler's clone suffixes (`.cold`, `.isra.0`, `.constprop.0`, `.part.0`,
/// `.llvm.123`), which change between builds of the same code.
fn clean_symbol(name: &str) -> &str {
    let mut name = name;
    for suffix in [
        ".cold",
        ".isra",
        ".constprop",
        ".part",
        ".llvm",
        ".lto_priv",
    ] {
        if let Some(at) = name.find(suffix) {
            if at > 0 {
                name = &name[..at];
            }
        }
    }
    name
}

/// Fills a title template (see [`Marker::title`]).
fn expand(template: &str, vars: &HashMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').unwrap_or(after.len());
            let (part, complete) = fill(&after[..close], vars);
            if complete {
                out.push_str(&part);
            }
            rest = after.get(close + 1..).unwrap_or("");
        } else {
            let next = rest.find('[').unwrap_or(rest.len());
            out.push_str(&fill(&rest[..next], vars).0);
            rest = &rest[next..];
        }
    }
    let mut title = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.len() > TITLE_MAX {
        let mut cut = TITLE_MAX;
        while !title.is_char_boundary(cut) {
            cut -= 1;
        }
        title.truncate(cut);
    }
    title
}

/// Replaces `{name}` placeholders; the flag says whether all of them had a non-empty value.
fn fill(part: &str, vars: &HashMap<&str, String>) -> (String, bool) {
    let mut out = String::new();
    let mut complete = true;
    let mut rest = part;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').unwrap_or(after.len());
        match vars.get(&after[..close]).filter(|v| !v.is_empty()) {
            Some(value) => out.push_str(value),
            None => complete = false,
        }
        rest = after.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    (out, complete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CrashClass as C;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    fn titles(text: &str) -> Vec<(CrashClass, String)> {
        scan(&lines(text))
            .into_iter()
            .map(|c| (c.class, c.title))
            .collect()
    }

    fn only(text: &str) -> (CrashClass, String) {
        let found = titles(text);
        assert_eq!(found.len(), 1, "{found:?}");
        found.into_iter().next().expect("one crash")
    }

    #[test]
    fn markers_are_recognised_line_by_line() {
        assert!(is_marker(
            "[    1.307173] WARNING: CPU: 1 PID: 44 at x.c:12 f+0x0/0x10 [m]"
        ));
        assert!(is_marker("Kernel panic - not syncing: Fatal exception"));
        assert!(!is_marker("[    1.307173] hello: Hello, kmodlab!"));
        // A positive init return is a report, but not one that means the kernel is dying.
        let init = "[    1.3] do_init_module: 'demo'->init suspiciously returned 1, it should follow 0/-E convention";
        assert!(is_marker(init) && !is_crash_marker(init));
        assert!(is_crash_marker(
            "Kernel panic - not syncing: Fatal exception"
        ));
        assert_eq!(
            first_where(&[init], |c| c.outcome() == Outcome::Crash),
            None
        );
    }

    #[test]
    fn every_pattern_compiles() {
        let c = compiled();
        for (m, re) in MARKERS.iter().zip(&c.markers) {
            assert!(re.is_some(), "{}", m.pattern);
        }
        for (m, re) in MARKERS.iter().zip(&c.details) {
            assert_eq!(m.detail.is_some(), re.is_some(), "{:?}", m.detail);
        }
        assert!(
            c.end.is_some()
                && c.end_of_stack.is_some()
                && c.frame.is_some()
                && c.rip.is_some()
                && c.any_rip.is_some()
        );
        assert!(c.lock_site.is_some() && c.skip.is_some() && c.cut_here.is_some());
        assert_eq!(c.set.len(), MARKERS.len());
    }

    #[test]
    fn warning_takes_its_function_from_the_marker_line() {
        let log = "\
[   12.000001] ------------[ cut here ]------------
[   12.000002] demo: refcount is 3 at exit
[   12.000003] WARNING: CPU: 0 PID: 61 at demo.c:40 demo_exit+0x1a/0x30 [demo]
[   12.000004] Modules linked in: demo(O-)
[   12.000005] RIP: 0010:demo_exit+0x1a/0x30 [demo]
[   12.000006] Call Trace:
[   12.000007]  <TASK>
[   12.000008]  ? __warn+0x89/0x130
[   12.000009]  __do_sys_delete_module+0x1c4/0x2d0
[   12.000010]  </TASK>
[   12.000011] ---[ end trace 0000000000000000 ]---
[   12.000012] demo: goodbye
";
        let crashes = scan(&lines(log));
        assert_eq!(crashes.len(), 1);
        let crash = &crashes[0];
        assert_eq!(
            (crash.class, crash.title.as_str(), crash.line),
            (CrashClass::Warning, "WARNING in demo_exit", 2)
        );
        assert_eq!(
            crash.report.first().map(String::as_str),
            Some("------------[ cut here ]------------")
        );
        assert_eq!(crash.report[1], "demo: refcount is 3 at exit");
        assert_eq!(
            crash.report.last().map(String::as_str),
            Some("---[ end trace 0000000000000000 ]---")
        );
    }

    #[test]
    fn warning_in_infrastructure_falls_back_to_the_trace() {
        let log = "\
WARNING: CPU: 1 PID: 7 at kernel/panic.c:700 __warn_printk+0x10/0x20
Call Trace:
 ? __warn+0x89/0x130
 __warn_printk+0x10/0x20
 demo_check.isra.0+0x22/0x40 [demo]
 demo_init+0x11/0x1000 [demo]
---[ end trace 0000000000000000 ]---
";
        assert_eq!(
            only(log),
            (CrashClass::Warning, "WARNING in demo_check".into())
        );
    }

    #[test]
    fn warning_without_a_symbol_uses_the_marker_alone() {
        assert_eq!(
            only("WARNING: CPU: 0 PID: 1 at 0xffffffffc0001234\n"),
            (CrashClass::Warning, "WARNING".into())
        );
    }

    #[test]
    fn one_line_forms_of_each_class() {
        let cases: &[(&str, CrashClass, &str)] = &[
            ("kernel BUG at demo.c:20!\nOops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\nRIP: 0010:demo_init+0x5/0x10 [demo]", C::Bug, "kernel BUG in demo_init"),
            ("Kernel BUG at demo_init+0x5/0x10 [demo] [verbose debug info unavailable]", C::Bug, "kernel BUG in demo_init"),
            ("BUG: kernel NULL pointer dereference, address: 0000000000000000\nRIP: 0010:demo_read+0x5/0x10 [demo]", C::NullDeref, "BUG: kernel NULL pointer dereference in demo_read"),
            ("Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000\npc : demo_read+0x5/0x10 [demo]", C::NullDeref, "BUG: kernel NULL pointer dereference in demo_read"),
            ("BUG: unable to handle page fault for address: ffffc90000a3f000\nRIP: 0010:demo_read+0x5/0x10 [demo]", C::PageFault, "BUG: unable to handle page fault in demo_read"),
            ("Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI\nRIP: 0010:demo_walk+0x5/0x10 [demo]", C::GeneralProtection, "general protection fault in demo_walk"),
            ("Oops: divide error: 0000 [#1] PREEMPT SMP NOPTI\nRIP: 0010:demo_div+0x5/0x10 [demo]", C::Oops, "Oops: divide error in demo_div"),
            ("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009", C::Panic, "kernel panic: Attempted to kill init! exitcode=0x00000009"),
            ("BUG: KASAN: slab-out-of-bounds in demo_oob+0x5/0x10 [demo]\nWrite of size 1 at addr ffff888003c4a0c8 by task insmod/53", C::Kasan, "KASAN: slab-out-of-bounds Write in demo_oob"),
            ("BUG: KASAN: double-free in demo_free+0x5/0x10 [demo]\n\nFree of addr ffff888003c4a0c8 by task insmod/53", C::Kasan, "KASAN: double-free in demo_free"),
            ("BUG: KFENCE: use-after-free read in demo_uaf+0x5/0x10 [demo]", C::Kfence, "KFENCE: use-after-free read in demo_uaf"),
            ("UBSAN: array-index-out-of-bounds in demo.c:12:9\nCall Trace:\n dump_stack_lvl+0x5/0x10\n __ubsan_handle_out_of_bounds+0x5/0x10\n demo_index+0x5/0x10 [demo]", C::Ubsan, "UBSAN: array-index-out-of-bounds in demo_index"),
            ("WARNING: possible circular locking dependency detected\ninsmod/53 is trying to acquire lock:\nffffffffc0002010 (b_lock){+.+.}-{3:3}, at: demo_ab+0x40/0x80 [demo]", C::Lockdep, "possible deadlock in demo_ab"),
            ("WARNING: possible recursive locking detected\ninsmod/53 is trying to acquire lock:\nffffffffc0002010 (a_lock){+.+.}-{3:3}, at: demo_aa+0x40/0x80 [demo]", C::Lockdep, "possible deadlock in demo_aa"),
            ("WARNING: inconsistent lock state\ninsmod/53 [HC0[0]:SC0[0]:HE1:SE1] takes:\nffff888003c4a0c8 (&d->lock){+.?.}-{2:2}, at: demo_update+0x1c/0x40 [demo]", C::Lockdep, "inconsistent lock state in demo_update"),
            ("WARNING: bad unlock balance detected!\nrmmod/60 is trying to release lock (demo_lock) at:\n[<ffffffffc0000010>] demo_exit+0x10/0x20 [demo]", C::Lockdep, "bad unlock balance in demo_exit"),
            ("WARNING: suspicious RCU usage\n6.12.17 #1 Tainted: G           O\n-----------------------------\ndemo.c:42 suspicious rcu_dereference_check() usage!", C::Lockdep, "suspicious RCU usage at demo.c:42"),
            ("[ BUG: Invalid wait context ]\ninsmod/53 is trying to lock:\nffffffffc0002010 (demo_mutex){+.+.}-{3:3}, at: demo_irq+0x40/0x80 [demo]", C::Lockdep, "BUG: invalid wait context in demo_irq"),
            ("BUG: scheduling while atomic: insmod/53/0x00000002\nCall Trace:\n dump_stack_lvl+0x5/0x10\n __schedule_bug+0x5/0x10\n __schedule+0x5/0x10\n schedule+0x5/0x10\n schedule_timeout+0x5/0x10\n msleep+0x5/0x10\n demo_init+0x5/0x10 [demo]", C::SleepInAtomic, "BUG: scheduling while atomic in demo_init"),
            ("BUG: sleeping function called from invalid context at kernel/locking/mutex.c:283\nCall Trace:\n dump_stack_lvl+0x5/0x10\n __might_resched+0x5/0x10\n mutex_lock+0x5/0x10\n demo_timer_fn+0x5/0x10 [demo]", C::SleepInAtomic, "BUG: sleeping function called from invalid context in demo_timer_fn"),
            ("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:53]\nRIP: 0010:demo_spin+0x5/0x10 [demo]", C::SoftLockup, "BUG: soft lockup in demo_spin"),
            ("watchdog: Watchdog detected hard LOCKUP on cpu 1\nRIP: 0010:demo_spin_irq+0x5/0x10 [demo]", C::HardLockup, "BUG: hard lockup in demo_spin_irq"),
            ("INFO: task kworker/0:1:23 blocked for more than 122 seconds.\nCall Trace:\n __schedule+0x5/0x10\n schedule+0x5/0x10\n demo_work_fn+0x5/0x10 [demo]", C::HungTask, "INFO: task hung in demo_work_fn"),
            ("rcu: INFO: rcu_preempt self-detected stall on CPU\nRIP: 0010:demo_loop+0x5/0x10 [demo]", C::RcuStall, "INFO: rcu detected stall in demo_loop"),
            ("rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\nCall Trace:\n demo_loop+0x5/0x10 [demo]", C::RcuStall, "INFO: rcu detected stall in demo_loop"),
            ("BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 41s!", C::WorkqueueLockup, "BUG: workqueue lockup"),
            ("rust_kernel: panicked at drivers/demo/demo.rs:20:9:\nindex out of bounds: the len is 3 but the index is 5", C::RustPanic, "Rust panic: index out of bounds: the len is 3 but the index is 5"),
            ("rust_kernel: panicked at demo.rs:20:9: explicit panic", C::RustPanic, "Rust panic: explicit panic"),
            ("BUG: Bad page state in process insmod  pfn:03c4a\nCall Trace:\n bad_page+0x5/0x10\n demo_free+0x5/0x10 [demo]", C::OtherBug, "BUG: Bad page state in demo_free"),
            ("BUG: workqueue leaked atomic, lock or RCU: kworker/0:1[23]", C::OtherBug, "BUG: workqueue leaked atomic, lock or RCU"),
            ("BUG: looking up invalid subclass: 8", C::OtherBug, "BUG: looking up invalid subclass"),
            ("Internal error: Oops: 0000000096000005 [#1] PREEMPT SMP\npc : demo_poke+0x5/0x10 [demo]", C::Oops, "Oops in demo_poke"),
            ("do_init_module: 'demo'->init suspiciously returned 7, it should follow 0/-E convention\ndo_init_module: loading module anyway...\nCall Trace:\n do_init_module+0x5/0x10", C::InitReturn, "init returned 7 (positive; the kernel expects 0 or -errno) in demo"),
        ];
        for (log, class, title) in cases {
            assert_eq!(only(log), (*class, title.to_string()), "{log}");
        }
    }

    #[test]
    fn oops_inside_a_fault_report_is_not_a_second_crash_but_the_panic_is() {
        let log = "\
[    1.405870] BUG: kernel NULL pointer dereference, address: 0000000000000008
[    1.406012] #PF: supervisor write access in kernel mode
[    1.406300] Oops: Oops: 0002 [#1] PREEMPT SMP NOPTI
[    1.406801] RIP: 0010:null_demo_init+0x15/0x1000 [null_demo]
[    1.408001]  ? __die+0x1e/0x60
[    1.408301]  do_one_initcall+0x56/0x2e0
[    1.408901] ---[ end trace 0000000000000000 ]---
[    1.409001] RIP: 0010:null_demo_init+0x15/0x1000 [null_demo]
[    1.409101] Kernel panic - not syncing: Fatal exception
[    1.409201] Kernel Offset: disabled
[    1.409301] ---[ end Kernel panic - not syncing: Fatal exception ]---
";
        let crashes = scan(&lines(log));
        let got: Vec<(CrashClass, &str, usize)> = crashes
            .iter()
            .map(|c| (c.class, c.title.as_str(), c.line))
            .collect();
        assert_eq!(
            got,
            [
                (
                    C::NullDeref,
                    "BUG: kernel NULL pointer dereference in null_demo_init",
                    0
                ),
                (C::Panic, "kernel panic: Fatal exception", 8),
            ]
        );
        assert_eq!(crashes[1].report.len(), 3);
        assert_eq!(
            first(&lines(log)).map(|c| c.title),
            Some(crashes[0].title.clone())
        );
    }

    #[test]
    fn a_rust_panic_owns_its_bug_and_oops() {
        let log = "\
rust_kernel: panicked at demo.rs:20:9:
explicit panic
------------[ cut here ]------------
kernel BUG at rust/helpers/bug.c:7!
Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI
RIP: 0010:rust_helper_BUG+0x8/0x10
---[ end trace 0000000000000000 ]---
";
        assert_eq!(
            titles(log),
            [(C::RustPanic, "Rust panic: explicit panic".to_string())]
        );
    }

    #[test]
    fn unrelated_markers_close_a_report_without_an_end_line() {
        // A soft lockup report has no end marker; the WARNING after it is its own crash.
        let log = "\
watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:53]
RIP: 0010:demo_spin+0x5/0x10 [demo]
WARNING: CPU: 0 PID: 53 at demo.c:9 demo_spin+0x9/0x10 [demo]
";
        let got = titles(log);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1], (C::Warning, "WARNING in demo_spin".into()));
    }

    #[test]
    fn faults_name_the_code_at_fault_or_the_callback_that_ran_it() {
        let gp = "Oops: general protection fault, probably for non-canonical address 0x6b6b6b6b6b6b6b6b: 0000 [#1] PREEMPT SMP NOPTI";
        let cases: &[(&str, &str)] = &[
            // A module frame in the trace is more useful than generic code at RIP.
            (
                "RIP: 0010:destroy_workqueue+0x182/0x2a0\nCall Trace:\n ? destroy_workqueue+0x182/0x2a0\n demo_exit+0x10/0x20 [demo]\n __do_sys_delete_module+0x1c4/0x2d0",
                "general protection fault in demo_exit",
            ),
            // Nothing useful in the trace: the generic function at RIP.
            (
                "RIP: 0010:destroy_workqueue+0x182/0x2a0\nCall Trace:\n __do_sys_delete_module+0x1c4/0x2d0\n do_syscall_64+0x82/0x160",
                "general protection fault in destroy_workqueue",
            ),
            // Code in freed module memory, called by a workqueue, a tasklet, RCU.
            (
                "RIP: 0010:0xffffffffc0201234\nCall Trace:\n ? asm_exc_general_protection+0x26/0x30\n process_one_work+0x178/0x3d0\n worker_thread+0x2a3/0x3d0",
                "general protection fault in work item (process_one_work)",
            ),
            (
                "RIP: 0010:0xffffffffc0201234\nCall Trace:\n tasklet_action_common+0x1c/0x200\n handle_softirqs+0xd0/0x290",
                "general protection fault in tasklet (tasklet_action_common)",
            ),
            (
                "RIP: 0010:0xffffffffc0201234\nCall Trace:\n rcu_do_batch+0x1b0/0x4f0\n rcu_core+0x1a0/0x4c0",
                "general protection fault in RCU callback (rcu_do_batch)",
            ),
            // A bare RIP called from anything else: the first useful frame, as for any fault.
            (
                "RIP: 0010:0xffffffffc0201234\nCall Trace:\n demo_call+0x10/0x20 [demo]",
                "general protection fault in demo_call",
            ),
            // The first RIP is the faulting one; a later one is the interrupted task's.
            (
                "RIP: 0010:0xffffffffc0201234\nCall Trace:\n <IRQ>\n call_timer_fn+0x27/0x130\n </IRQ>\nRIP: 0010:default_idle+0xf/0x20",
                "general protection fault in timer callback (call_timer_fn)",
            ),
        ];
        for (rest, title) in cases {
            let log = format!("{gp}\n{rest}\n");
            assert_eq!(
                only(&log),
                (C::GeneralProtection, title.to_string()),
                "{log}"
            );
        }
    }

    #[test]
    fn a_report_with_only_a_stack_ends_with_it() {
        let log = "\
do_init_module: 'demo'->init suspiciously returned 1, it should follow 0/-E convention
do_init_module: loading module anyway...
Call Trace:
 <TASK>
 dump_stack_lvl+0x4f/0x60
 do_init_module+0x89/0x220
 </TASK>
demo: unloaded
";
        let crashes = scan(&lines(log));
        assert_eq!(crashes.len(), 1);
        assert_eq!(crashes[0].report.len(), 7, "{:?}", crashes[0].report);
        assert_eq!(
            crashes[0].report.last().map(String::as_str),
            Some(" </TASK>")
        );
    }

    #[test]
    fn a_sysfs_name_taken_is_a_finding_that_ends_with_its_stack() {
        // fs/sysfs/dir.c `sysfs_warn_dup` on a second load whose first left its kobject behind.
        let log = "\
sysfs: cannot create duplicate filename '/kernel/demo_left'
CPU: 0 UID: 0 PID: 39 Comm: kmodlab-load Tainted: G           O       6.12.118 #1
Call Trace:
 <TASK>
 dump_stack_lvl+0x4f/0x60
 sysfs_warn_dup+0x5b/0x70
 sysfs_create_dir_ns+0xd3/0xf0
 kobject_add_internal+0xa5/0x2a0
 kobject_init_and_add+0x74/0xb0
 demo_left_init+0x2a/0x1000 [demo_left]
 do_one_initcall+0x6e/0x1a0
 </TASK>
kobject: kobject_add_internal failed for demo_left with -EEXIST, don't try to register things with the same name in the same directory.
";
        let crashes = scan(&lines(log));
        assert_eq!(crashes.len(), 1);
        assert_eq!(
            (crashes[0].class, crashes[0].title.as_str()),
            (
                C::DuplicateName,
                "sysfs: cannot create duplicate filename /kernel/demo_left"
            )
        );
        assert_eq!(crashes[0].class.outcome(), Outcome::Fail);
        assert_eq!(crashes[0].report.len(), 12);
        assert!(!is_crash_marker(log.lines().next().unwrap_or_default()));
    }

    #[test]
    fn unreliable_frames_are_not_blamed() {
        let log = "BUG: scheduling while atomic: insmod/53/0x00000002\n ? demo_wrong+0x5/0x10 [demo]\n demo_right+0x5/0x10 [demo]\n";
        assert_eq!(only(log).1, "BUG: scheduling while atomic in demo_right");
    }

    #[test]
    fn no_function_means_the_marker_alone() {
        assert_eq!(
            only("BUG: scheduling while atomic: insmod/53/0x00000002\n").1,
            "BUG: scheduling while atomic"
        );
        assert_eq!(only("Kernel panic - not syncing: \n").1, "kernel panic");
    }

    #[test]
    fn reports_are_bounded() {
        let mut log = String::from("INFO: task insmod:53 blocked for more than 122 seconds.\n");
        for _ in 0..1000 {
            log.push_str(" demo_wait+0x5/0x10 [demo]\n");
        }
        let crashes = scan(&lines(&log));
        assert_eq!(crashes.len(), 1);
        assert_eq!(crashes[0].report.len(), REPORT_LINES);
    }

    #[test]
    fn ordinary_lines_are_not_crashes() {
        let log = "\
demo: loading out-of-tree module taints kernel.
ok 1 - handles_bug_reports
demo: this is no WARNING: just text
    # BUG: a KTAP diagnostic that talks about bugs
INFO: task list printed
panicked without a location
Kernel panic - syncing
";
        assert!(scan(&lines(log)).is_empty());
        assert_eq!(first(&lines(log)), None);
    }

    #[test]
    fn symbol_suffixes_and_templates() {
        assert_eq!(clean_symbol("demo_fn.cold"), "demo_fn");
        assert_eq!(clean_symbol("demo_fn.constprop.0.isra.0"), "demo_fn");
        assert_eq!(clean_symbol(".cold"), ".cold");
        let vars: HashMap<&str, String> = [("kind", "x".to_string()), ("func", String::new())]
            .into_iter()
            .collect();
        assert_eq!(expand("K: {kind}[ {access}][ in {func}]", &vars), "K: x");
        assert_eq!(expand("K: {kind}[ at {kind}", &vars), "K: x at x");
    }
}
