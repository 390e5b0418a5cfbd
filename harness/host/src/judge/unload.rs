//! What modules leave behind once unloaded: crash reports whose addresses fall in a module that
//! is gone (a timer left armed, a work item left queued, a tasklet left scheduled fires into
//! freed code), titled `use after unload in MODULE: KIND FUNCTION` and charged to the test that
//! loaded the module; and kmemleak's unreferenced objects allocated by a module's code, titled
//! `memory leak in FUNCTION` (syzkaller's form).
//!
//! Addresses are named with the [`ModuleMap`](kmodlab_protocol::ModuleMap)s the agent sent after
//! each load: once a module is gone the kernel prints its addresses bare
//! (`RIP: 0010:0xffffffffa0002010`, `? 0xffffffffa0002010`, `[<ffffffffa0000023>] 0xffffffffa0000023`).

use super::oops::{self, Crash};
use super::records::{MappedModule, TestRecord};
use super::verdict::Outcome;
use regex::Regex;
use std::sync::OnceLock;

/// A crash report in freed module memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseAfterUnload {
    /// The test that loaded (and unloaded) the module: the crash is its.
    pub test: u32,
    pub module: String,
    /// The module's function the address falls in, when the map names one.
    pub function: Option<String>,
    /// The kind of callback the trace shows running it (`timer callback`, `work item`, ...).
    pub kind: Option<&'static str>,
    /// `use after unload in unload_timer: timer callback unload_timer_fire`.
    pub title: String,
    /// The module instance that went was the second round's of a reload.
    pub reload: bool,
}

/// A crash report found in a test's window, with where it came and what it hit.
#[derive(Debug, Clone)]
pub struct Found {
    pub crash: Crash,
    /// How many of the test's kernel records came before it (all of them for a report only the
    /// console had).
    pub at: usize,
    /// From the console: the agent could not send it.
    pub console: bool,
    pub after_unload: Option<UseAfterUnload>,
}

impl Found {
    /// Whether the report came during the second round of a reload.
    pub fn second_round(&self, record: &TestRecord) -> bool {
        record.reload_from.is_some_and(|from| self.at >= from)
    }

    /// Whether it is the use after unload of a module another test loaded.
    pub fn foreign(&self, record: &TestRecord) -> Option<&UseAfterUnload> {
        self.after_unload.as_ref().filter(|u| u.test != record.id)
    }
}

/// Every report of a crash class (not the FAIL findings) in the test's kernel records, then,
/// for a test the agent did not finish, on its console; each classified against the modules
/// loaded and unloaded so far in the VM.
pub fn crashes(record: &TestRecord) -> Vec<Found> {
    let is_crash = |c: &Crash| c.class.outcome() == Outcome::Crash;
    let lines = record.kmsg_lines();
    let mut found: Vec<Found> = oops::scan(&lines)
        .into_iter()
        .filter(is_crash)
        .map(|crash| {
            let at = record.record_of_line(crash.line);
            let after_unload = use_after_unload(record, &crash, at);
            Found {
                crash,
                at,
                console: false,
                after_unload,
            }
        })
        .collect();
    if !record.finished {
        let console: Vec<&str> = record.console.iter().map(String::as_str).collect();
        let at = record.kmsg.len();
        found.extend(
            oops::scan(&console)
                .into_iter()
                .filter(is_crash)
                .map(|crash| {
                    let after_unload = use_after_unload(record, &crash, at);
                    Found {
                        crash,
                        at,
                        console: true,
                        after_unload,
                    }
                }),
        );
    }
    found
}

/// The crashes in this test's window that belong to a module another test loaded, one per
/// module, for the session to charge to that test.
pub fn charged_elsewhere(record: &TestRecord) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for found in crashes(record) {
        let Some(u) = found.foreign(record) else {
            continue;
        };
        let seen = out.iter().any(|f| {
            f.after_unload
                .as_ref()
                .is_some_and(|o| o.test == u.test && o.module == u.module)
        });
        if !seen {
            out.push(found);
        }
    }
    out
}

/// What a crash report at kernel record `at` of `record` hit, when an address it names falls in
/// a module that was unloaded by then (and in none loaded then).
pub fn use_after_unload(record: &TestRecord, crash: &Crash, at: usize) -> Option<UseAfterUnload> {
    let own = |m: &&MappedModule| m.mapped_at <= at;
    // The kernel's own word: a module it lists as `[last unloaded: NAME]` and not as linked in
    // is gone, even when the crash came before the agent could report the unload (a tasklet
    // that runs the moment the module's memory is freed).
    // A long trace of unreliable frames pushes the line past the lines a report keeps: then the
    // test's own log has it.
    let just_unloaded = just_unloaded(&crash.report).or_else(|| {
        let kmsg = record.kmsg_lines();
        let lines = kmsg
            .iter()
            .copied()
            .chain(record.console.iter().map(String::as_str));
        lines
            .filter(|l| l.contains("Modules linked in:"))
            .find_map(|l| just_unloaded(&[l]))
    });
    let unloaded = |m: &MappedModule, by_agent: bool| {
        by_agent || just_unloaded.as_deref() == Some(m.module.as_str())
    };
    let live: Vec<&MappedModule> = record
        .earlier
        .iter()
        .filter(|m| !unloaded(m, m.unloaded_at.is_some()))
        .chain(
            record
                .mapped
                .iter()
                .filter(own)
                .filter(|m| !unloaded(m, m.unloaded_at.is_some_and(|u| u <= at))),
        )
        .collect();
    let gone: Vec<&MappedModule> = record
        .earlier
        .iter()
        .filter(|m| unloaded(m, m.unloaded_at.is_some()))
        .chain(
            record
                .mapped
                .iter()
                .filter(own)
                .filter(|m| unloaded(m, m.unloaded_at.is_some_and(|u| u <= at))),
        )
        .collect();
    if gone.is_empty() {
        return None;
    }
    // A module whose code the report names (`func+0x6/0x1000 [proc_left]`) is loaded as the
    // report is printed (its second load, say, before its map was sent): a bare address of an
    // earlier instance of the same name is its code, not freed memory.
    let loaded_now = modules_named(&crash.report);
    let gone: Vec<&MappedModule> = gone
        .into_iter()
        .filter(|m| !loaded_now.contains(&m.module.as_str()))
        .collect();
    let addresses = report_addresses(&crash.report);
    let machinery = machinery_kind(&crash.report);
    let in_gone = |address: u64| {
        if live.iter().any(|m| m.map.contains(address)) {
            return None;
        }
        // Module memory is reused: the module unloaded last is the likeliest owner.
        let module = gone.iter().rev().find(|m| m.map.contains(address))?;
        Some((address, *module))
    };
    // A report from the timer, workqueue or tasklet code itself (`WARNING in expire_timers`:
    // the timer's memory was freed under it) names the freed object only in a register. When
    // its trace names a module's function, that machinery was running a loaded module's
    // callback, and a register pointing into freed memory is that module's memory reused (the
    // tasklet example's init, loading where an earlier test's module had been).
    let (address, module) = addresses.iter().find_map(|&a| in_gone(a)).or_else(|| {
        machinery?;
        if !loaded_now.is_empty() {
            return None;
        }
        register_addresses(&crash.report)
            .into_iter()
            .find_map(in_gone)
    })?;
    // The function: the first address in that module the map can name.
    let function = std::iter::once(address)
        .chain(addresses.iter().copied())
        .filter(|a| module.map.contains(*a))
        .find_map(|a| module.map.function_at(a).map(|(name, _)| name.to_string()));
    let kind = oops::callback_kind(&crash.report).or(machinery);
    let what = [kind.map(str::to_string), function.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let title = if what.is_empty() {
        format!("use after unload in {}", module.module)
    } else {
        format!("use after unload in {}: {what}", module.module)
    };
    Some(UseAfterUnload {
        test: module.test,
        module: module.module.clone(),
        function,
        kind,
        title,
        reload: module.reload,
    })
}

/// Compiles one of the patterns below (a unit test checks they all do).
fn re(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

struct Patterns {
    /// `RIP: 0010:0xffffffffa0002010`, arm64 `pc : 0x...`.
    rip: Option<Regex>,
    /// `BUG: unable to handle page fault for address: ffffffffa0002010`.
    fault: Option<Regex>,
    /// `Workqueue: events 0xffffffffa0002010` (the work function, bare).
    workqueue: Option<Regex>,
    /// A reliable call-trace frame with a bare address: `0xffffffffa0002010`,
    /// `[<ffffffffa0002010>] 0xffffffffa0002010`. Unreliable ones (`? 0x...`) are left out: they
    /// are whatever the stack held, such as the init code of a module loading now at an address
    /// an earlier test's module had (a WARNING during proc_left's second load showed
    /// `? 0xffffffffa0006000`, the earlier tasklet example's address).
    frame: Option<Regex>,
    /// kmemleak: `unreferenced object 0xffff888003e5e000 (size 256):`.
    leak: Option<Regex>,
    /// kmemleak's backtrace: `0xffffffffa0006006`, `leak_init_alloc+0x1a/0x40 [leak_init]`
    /// (6.12), each after `[<ffffffffa0006006>] ` on older kernels.
    leak_frame: Option<Regex>,
    /// A frame in a loaded module: `proc_left_init+0x6/0x1000 [proc_left]`.
    module_frame: Option<Regex>,
    /// A named frame, reliable or not, or the `RIP:` line's function.
    named_frame: Option<Regex>,
    /// `RDI: ffffffffa0002040` (x86 general registers).
    register: Option<Regex>,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| Patterns {
        rip: re(r"^\s*(?:RIP: [0-9a-f]{4}:|pc : )0x(?P<a>[0-9a-f]+)\s*$"),
        fault: re(
            r"(?:unable to handle page fault for address:|paging request at virtual address) (?:0x)?(?P<a>[0-9a-f]+)",
        ),
        workqueue: re(r"^\s*Workqueue: \S+ 0x(?P<a>[0-9a-f]+)"),
        frame: re(r"^\s*(?:\[<[0-9a-f]+>\]\s*)?0x(?P<a>[0-9a-f]+)\s*$"),
        leak: re(r"^\s*unreferenced object 0x[0-9a-f]+ \(size (?P<size>\d+)\):"),
        leak_frame: re(concat!(
            r"^\s*(?:\[<(?P<a>[0-9a-f]+)>\]\s*)?(?:0x(?P<b>[0-9a-f]+)|",
            r"(?P<func>[A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[(?P<module>[^\]]+)\])?)\s*$"
        )),
        module_frame: re(r"\+0x[0-9a-f]+/0x[0-9a-f]+\s+\[(?P<module>[\w-]+)\]\s*$"),
        named_frame: re(
            r"^\s*(?:RIP: [0-9a-f]{4}:|\[<[0-9a-f]+>\]\s*)?(?:\?\s+)?(?P<func>[A-Za-z_.$][\w.$]*)\+0x[0-9a-f]+/0x[0-9a-f]+",
        ),
        register: re(r"\bR(?:AX|BX|CX|DX|SI|DI|BP|[89]|1[0-5]): (?P<a>[0-9a-f]{16})\b"),
    })
}

/// The kernel code that runs deferred callbacks, beyond the runners that call them, and the kind
/// of callback: a report from inside it (before the callback is called) concerns one.
const MACHINERY: &[(&str, &str)] = &[
    ("call_timer_fn", "timer callback"),
    ("expire_timers", "timer callback"),
    ("__run_timers", "timer callback"),
    ("__run_timer_base", "timer callback"),
    ("run_timer_base", "timer callback"),
    ("run_timer_softirq", "timer callback"),
    ("__run_hrtimer", "hrtimer callback"),
    ("process_one_work", "work item"),
    ("process_scheduled_works", "work item"),
    ("worker_thread", "work item"),
    ("tasklet_action_common", "tasklet"),
    ("tasklet_action", "tasklet"),
    ("tasklet_hi_action", "tasklet"),
    ("rcu_do_batch", "RCU callback"),
    ("rcu_core", "RCU callback"),
];

/// The kind of callback whose machinery the report's trace (or its `RIP:`) shows.
fn machinery_kind(report: &[String]) -> Option<&'static str> {
    let frame = patterns().named_frame.as_ref()?;
    report.iter().find_map(|line| {
        let name = frame.captures(line)?.name("func")?.as_str();
        let name = name.split('.').next().unwrap_or(name);
        MACHINERY
            .iter()
            .find(|(runner, _)| *runner == name)
            .map(|(_, kind)| *kind)
    })
}

/// Kernel addresses held in the registers a report dumps (`RDI: ffffffffa0002040`).
fn register_addresses(report: &[String]) -> Vec<u64> {
    let Some(re) = patterns().register.as_ref() else {
        return vec![];
    };
    let mut out = Vec::new();
    for line in report {
        for caps in re.captures_iter(line) {
            let value = caps
                .name("a")
                .and_then(|a| u64::from_str_radix(a.as_str(), 16).ok());
            if let Some(value) = value.filter(|v| *v >= 0xffff_0000_0000_0000) {
                if !out.contains(&value) {
                    out.push(value);
                }
            }
        }
    }
    out
}

/// The module a report's `Modules linked in:` line names as `[last unloaded: NAME(O)]`, when no
/// module of that name is still linked in.
fn just_unloaded<S: AsRef<str>>(report: &[S]) -> Option<String> {
    let line = report.iter().find_map(|l| {
        let l = l.as_ref();
        let at = l.find("Modules linked in:")?;
        Some(&l[at + "Modules linked in:".len()..])
    })?;
    let (linked, last) = line.split_once("[last unloaded:")?;
    let name = last.trim().trim_end_matches(']').trim();
    let name = name.split('(').next().unwrap_or(name).trim();
    let still_linked = linked
        .split_whitespace()
        .any(|m| m.split('(').next() == Some(name));
    (!name.is_empty() && !still_linked).then(|| name.to_string())
}

/// The modules a report names frames of: loaded while it was printed.
fn modules_named(report: &[String]) -> Vec<&str> {
    let Some(re) = patterns().module_frame.as_ref() else {
        return vec![];
    };
    report
        .iter()
        .filter_map(|l| Some(re.captures(l)?.name("module")?.as_str()))
        .collect()
}

/// The kernel addresses a report names bare, most telling first: the faulting instruction, the
/// faulting address, the work function, then the call trace's frames.
fn report_addresses(report: &[String]) -> Vec<u64> {
    let p = patterns();
    let text: Vec<&str> = report
        .iter()
        .map(|l| kmodlab_protocol::ktap::strip_timestamp(l).trim_end())
        .collect();
    let mut out = Vec::new();
    for re in [&p.rip, &p.fault, &p.workqueue, &p.frame]
        .into_iter()
        .flatten()
    {
        for line in &text {
            if let Some(a) = re.captures(line).and_then(|c| c.name("a")) {
                if let Ok(address) = u64::from_str_radix(a.as_str(), 16) {
                    // Kernel addresses only: user space's and small offsets are never a module's.
                    if address >= 0xffff_0000_0000_0000 && !out.contains(&address) {
                        out.push(address);
                    }
                }
            }
        }
    }
    out
}

/// One object kmemleak found unreferenced whose allocation a module's code made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The test that loaded the module.
    pub test: u32,
    pub module: String,
    /// The first backtrace frame inside the module, named.
    pub function: Option<String>,
    pub size: Option<u64>,
    /// The block as kmemleak printed it.
    pub block: Vec<String>,
}

impl Leak {
    /// `memory leak in leak_init_alloc` (or in the module, when no function is known).
    pub fn title(&self) -> String {
        format!(
            "memory leak in {}",
            self.function.as_deref().unwrap_or(&self.module)
        )
    }

    /// `unreferenced object of 256 bytes allocated in leak_init (test 3)`, and the backtrace.
    pub fn details(&self) -> Vec<String> {
        let size = self
            .size
            .map_or_else(String::new, |s| format!(" of {s} bytes"));
        let mut out = vec![format!(
            "kmemleak: unreferenced object{size} allocated by {}",
            self.module
        )];
        let mut in_trace = false;
        for line in &self.block {
            if line.trim_start().starts_with("backtrace") {
                in_trace = true;
            } else if in_trace {
                out.push(format!("  {}", line.trim()));
            }
        }
        out
    }
}

/// The blocks of a kmemleak report whose backtrace has a frame in one of `maps`; blocks with no
/// module frame (boot-time allocations) are left out.
pub fn leaks(report: &str, maps: &[&MappedModule]) -> Vec<Leak> {
    let p = patterns();
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in report.lines() {
        if p.leak.as_ref().is_some_and(|re| re.is_match(line)) {
            blocks.push(vec![line]);
        } else if let Some(block) = blocks.last_mut() {
            block.push(line);
        }
    }
    blocks
        .into_iter()
        .filter_map(|block| {
            let size = p
                .leak
                .as_ref()
                .and_then(|re| re.captures(block[0]))
                .and_then(|c| c.name("size")?.as_str().parse().ok());
            // `comm "kmodlab-load", pid 38, jiffies ...`: the load that allocated it, which names
            // the module even when later modules got the same addresses.
            let pid = block.iter().skip(1).find_map(|line| {
                let rest = line.trim().strip_prefix("comm ")?;
                let digits = rest.split(", pid ").nth(1)?.split(',').next()?;
                digits.trim().parse::<u32>().ok()
            });
            let (module, function) = block.iter().skip(1).find_map(|line| {
                let caps = p.leak_frame.as_ref()?.captures(line)?;
                let func = caps.name("func").map(|f| f.as_str().to_string());
                let address = caps
                    .name("a")
                    .or_else(|| caps.name("b"))
                    .and_then(|a| u64::from_str_radix(a.as_str(), 16).ok());
                // Module memory is reused: the module whose load allocated it, else the module
                // loaded last, is the likeliest owner.
                let module = match (address, caps.name("module")) {
                    (Some(address), _) => {
                        let holds = |m: &&&MappedModule| m.map.contains(address);
                        maps.iter()
                            .rev()
                            .filter(holds)
                            .find(|m| pid.is_some() && m.load_pid == pid)
                            .or_else(|| maps.iter().rev().find(holds))?
                    }
                    (None, Some(name)) => maps.iter().rev().find(|m| m.module == name.as_str())?,
                    (None, None) => return None,
                };
                let function = match (&func, caps.name("module")) {
                    (Some(f), Some(name)) if name.as_str() == module.module => Some(f.clone()),
                    _ => {
                        address.and_then(|a| module.map.function_at(a).map(|(f, _)| f.to_string()))
                    }
                };
                Some((*module, function))
            })?;
            Some(Leak {
                test: module.test,
                module: module.module.clone(),
                function,
                size,
                block: block.iter().map(|l| l.to_string()).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmodlab_protocol::{AddressRange, ModuleMap};

    const TEXT: u64 = 0xffff_ffff_a000_0000;

    fn module(test: u32, name: &str, text: u64, unloaded_at: Option<usize>) -> MappedModule {
        MappedModule {
            test,
            module: name.into(),
            map: ModuleMap {
                sections: vec![AddressRange {
                    name: ".text".into(),
                    start: text,
                    size: 0x1000,
                }],
                functions: vec![AddressRange {
                    name: format!("{name}_fn"),
                    start: text + 0x10,
                    size: 0x40,
                }],
            },
            reload: false,
            mapped_at: 0,
            unloaded_at,
            load_pid: None,
        }
    }

    fn crash_of(text: &str) -> Crash {
        let lines: Vec<&str> = text.lines().collect();
        oops::first(&lines).expect("a report")
    }

    /// A lockdep report on the debug kernel for a work item whose module was unloaded: no RIP
    /// line, the work function a bare frame under `process_one_work`.
    const BAD_UNLOCK: &str = "\
=====================================
WARNING: bad unlock balance detected!
6.12.118 #1 Tainted: G           O
-------------------------------------
kworker/0:1/10 is trying to release lock (0xffffffffa0000240) at:
[<ffffffff810b2f1a>] process_one_work+0x3aa/0x6b0
but there are no more locks to release!
other info that might help us debug this:
2 locks held by kworker/0:1/10:
stack backtrace:
CPU: 0 UID: 0 PID: 10 Comm: kworker/0:1 Tainted: G           O       6.12.118 #1
Workqueue: events 0xffffffffa0000010
Call Trace:
 <TASK>
 dump_stack_lvl+0x5d/0x80
 print_unlock_imbalance_bug+0x10e/0x120
 lock_release+0x1fa/0x2c0
 ? 0xffffffffa0000010
 process_one_work+0x3b6/0x6b0
 worker_thread+0x1d5/0x3c0
 kthread+0xe0/0x110
 ret_from_fork+0x2d/0x50
 </TASK>
";

    #[test]
    fn a_lockdep_report_from_a_freed_work_item_is_the_use_after_unload_it_is() {
        let crash = crash_of(BAD_UNLOCK);
        assert_eq!(crash.title, "bad unlock balance in process_one_work");
        let mut record = TestRecord::new(4);
        record.earlier = vec![module(2, "unload_work", TEXT, Some(3))];
        let u = use_after_unload(&record, &crash, 0).expect("in freed memory");
        assert_eq!(
            (u.test, u.title.as_str()),
            (
                2,
                "use after unload in unload_work: work item unload_work_fn"
            )
        );
        // The same address in a module loaded now is its code, not freed memory.
        record.mapped = vec![module(4, "other", TEXT, None)];
        assert_eq!(use_after_unload(&record, &crash, 0), None);
        // Loaded after the report: the report was the freed module's.
        record.mapped[0].mapped_at = 1;
        assert_eq!(
            use_after_unload(&record, &crash, 0).map(|u| u.test),
            Some(2)
        );
    }

    /// The default kernel, when the timer's own memory (in the module's `.bss`) was freed and
    /// zeroed under it: the timer code warns before it calls anything; only a register holds
    /// the freed timer's address.
    const WARNING_IN_TIMER_CODE: &str = "\
------------[ cut here ]------------
WARNING: CPU: 1 PID: 0 at kernel/time/timer.c:1782 __run_timers+0x22a/0x2a0
Modules linked in: hello(O)
CPU: 1 UID: 0 PID: 0 Comm: swapper/1 Tainted: G           O       6.12.118 #1
RIP: 0010:__run_timers+0x22a/0x2a0
RSP: 0018:ffffc90000108ee8 EFLAGS: 00010046
RAX: 0000000000000000 RBX: ffff88800f91b4c0 RCX: 0000000000000000
RDX: ffffc90000108f00 RSI: 0000000000000000 RDI: ffffffffa0002040
Call Trace:
 <IRQ>
 ? __warn+0x89/0x130
 ? __run_timers+0x22a/0x2a0
 run_timer_softirq+0x2a4/0x2f0
 handle_softirqs+0xbf/0x210
 </IRQ>
---[ end trace 0000000000000000 ]---
";

    #[test]
    fn a_warning_in_the_timer_code_about_a_freed_timer_names_the_module_by_a_register() {
        let crash = crash_of(WARNING_IN_TIMER_CODE);
        assert_eq!(crash.title, "WARNING in __run_timers");
        let mut gone = module(0, "unload_timer", TEXT, Some(2));
        gone.map.sections.push(AddressRange {
            name: ".bss".into(),
            start: TEXT + 0x2000,
            size: 0x100,
        });
        let mut record = TestRecord::new(1);
        record.earlier = vec![gone];
        record.mapped = vec![module(1, "hello", TEXT + 0x10_000, None)];
        let u = use_after_unload(&record, &crash, 0).expect("the freed timer");
        assert_eq!(
            (u.test, u.title.as_str()),
            (0, "use after unload in unload_timer: timer callback")
        );
        // Outside the deferred-callback code, registers are not taken as evidence.
        let elsewhere = WARNING_IN_TIMER_CODE
            .replace("__run_timers", "demo_check")
            .replace("run_timer_softirq", "demo_call");
        assert_eq!(use_after_unload(&record, &crash_of(&elsewhere), 0), None);
    }

    /// A CI run: the tasklet example's callback sleeps in softirq while its module is still
    /// loading at the addresses an earlier test's rust_params had; the interrupted code's
    /// registers still point there (`RDI: ffffffffa0002010`, rust_params's old `.bss`).
    const TASKLET_IN_REUSED_MEMORY: &str = "\
BUG: scheduling while atomic: ksoftirqd/0/13/0x00000100
Modules linked in: tasklet_demo(O+) [last unloaded: rust_workqueue(O)]
CPU: 0 UID: 0 PID: 13 Comm: ksoftirqd/0 Tainted: G           O       6.12.118 #1
Call Trace:
 <IRQ>
 dump_stack_lvl+0x4f/0x60
 __schedule_bug+0x4d/0x60
 schedule_timeout+0x7a/0xe0
 msleep+0x22/0x30
 demo_tasklet_fn+0x1f/0xb0 [tasklet_demo]
 tasklet_action_common+0x9b/0xc0
 handle_softirqs+0xbf/0x210
 </IRQ>
 <TASK>
RIP: 0010:wake_up_var+0x7b/0x90
RBP: 0000000000000000 R08: 0000000000004ffb R09: 00000000ffffefff
RAX: ffffffff81807340 RBX: ffffffff81807338 RCX: 00000000ffffefff
RDX: ffffffff81807340 RSI: 0000000000000202 RDI: ffffffffa0002010
 </TASK>
";

    #[test]
    fn a_callback_of_a_loaded_module_is_not_charged_to_a_freed_one_by_a_register() {
        let crash = crash_of(TASKLET_IN_REUSED_MEMORY);
        assert_eq!(
            crash.title,
            "BUG: scheduling while atomic in demo_tasklet_fn"
        );
        let mut gone = module(10, "rust_params", TEXT, Some(2));
        gone.map.sections.push(AddressRange {
            name: ".bss".into(),
            start: TEXT + 0x2000,
            size: 0x100,
        });
        let mut record = TestRecord::new(13);
        record.earlier = vec![gone, module(12, "rust_workqueue", TEXT, Some(3))];
        assert_eq!(use_after_unload(&record, &crash, 0), None);
    }

    #[test]
    fn only_bare_reliable_addresses_and_the_faulting_address_count() {
        let report: Vec<String> = [
            "BUG: unable to handle page fault for address: ffffffffa0000800",
            "RIP: 0010:0xffffffffa0000020",
            "RSI: ffffffffa0000900 RDI: ffff888002150080",
            "Workqueue: events 0xffffffffa0000030",
            " ? 0xffffffffa0000040",
            "[<ffffffffa0000050>] 0xffffffffa0000050",
            " demo_fn+0x1/0x2 [demo]",
            "RIP: 0033:0x7fd586d25175",
        ]
        .iter()
        .map(|l| l.to_string())
        .collect();
        assert_eq!(
            report_addresses(&report),
            [
                0xffff_ffff_a000_0020,
                0xffff_ffff_a000_0800,
                0xffff_ffff_a000_0030,
                0xffff_ffff_a000_0050
            ]
        );
        assert_eq!(modules_named(&report), ["demo"]);
    }

    /// The next test's module got the same addresses: the pid of the load that allocated the
    /// object names the module that leaked it.
    #[test]
    fn a_leak_at_reused_addresses_goes_to_the_module_whose_load_allocated_it() {
        let mut leaky = module(1, "leak_init", TEXT, Some(2));
        leaky.load_pid = Some(38);
        let mut next = module(2, "hello", TEXT, Some(2));
        next.load_pid = Some(41);
        let report = "unreferenced object 0xffff888003bb5000 (size 256):
  comm \"kmodlab-load\", pid 38, jiffies 4294892534
  backtrace (crc 5edaf73e):
    __kmalloc_cache_noprof+0x1b3/0x2f0
    0xffffffffa0000016
    do_one_initcall+0x5f/0x260
";
        let found = leaks(report, &[&leaky, &next]);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].test, found[0].module.as_str()), (1, "leak_init"));
        // Without a pid to go by, the module loaded last is taken.
        let found = leaks(&report.replace("pid 38", "pid 99"), &[&leaky, &next]);
        assert_eq!(found[0].module, "hello");
    }

    #[test]
    fn leak_backtraces_in_both_kernel_formats_name_the_module_function() {
        let gone = module(1, "leak_init", TEXT, Some(2));
        let loaded = module(3, "leak_late", TEXT + 0x10_000, None);
        let maps = [&gone, &loaded];
        // Older kernels print `[<address>] symbol`; a module that is gone prints bare.
        let old = "unreferenced object 0xffff888003e5e000 (size 256):
  comm \"insmod\", pid 71, jiffies 4294892577
  hex dump (first 32 bytes):
    6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b  kkkkkkkkkkkkkkkk
  backtrace (crc 5e1a2b3c):
    [<ffffffff811c9a2e>] kmemleak_alloc+0x4e/0x90
    [<ffffffff812f0b5c>] __kmalloc_cache_noprof+0x2ac/0x330
    [<ffffffffa0000023>] 0xffffffffa0000023
    [<ffffffff81000a57>] do_one_initcall+0x47/0x2f0
unreferenced object 0xffff888003e5f000 (size 32):
  comm \"insmod\", pid 80, jiffies 4294892600
  backtrace (crc 1):
    __kmalloc_cache_noprof+0x1b3/0x2f0
    leak_late_alloc+0x16/0x40 [leak_late]
    do_one_initcall+0x5f/0x260
";
        let leaks = leaks(old, &maps);
        let got: Vec<(u32, String, Option<u64>)> =
            leaks.iter().map(|l| (l.test, l.title(), l.size)).collect();
        assert_eq!(
            got,
            [
                (1, "memory leak in leak_init_fn".to_string(), Some(256)),
                (3, "memory leak in leak_late_alloc".to_string(), Some(32)),
            ]
        );
        assert_eq!(
            leaks[0].details(),
            [
                "kmemleak: unreferenced object of 256 bytes allocated by leak_init",
                "  [<ffffffff811c9a2e>] kmemleak_alloc+0x4e/0x90",
                "  [<ffffffff812f0b5c>] __kmalloc_cache_noprof+0x2ac/0x330",
                "  [<ffffffffa0000023>] 0xffffffffa0000023",
                "  [<ffffffff81000a57>] do_one_initcall+0x47/0x2f0",
            ]
        );
        assert!(super::leaks("", &maps).is_empty());
    }

    #[test]
    fn the_module_last_unloaded_and_not_linked_in_is_gone() {
        let report = |line: &str| vec![format!("[    1.5][    C1] {line}")];
        assert_eq!(
            just_unloaded(&report(
                "Modules linked in: [last unloaded: unload_tasklet(O)]"
            )),
            Some("unload_tasklet".to_string())
        );
        assert_eq!(
            just_unloaded(&report(
                "Modules linked in: proc_left(O+) [last unloaded: proc_left(O)]"
            )),
            None
        );
        assert_eq!(just_unloaded(&report("Modules linked in: hello(O)")), None);
    }

    #[test]
    fn every_pattern_compiles() {
        let p = patterns();
        for re in [
            &p.rip,
            &p.fault,
            &p.workqueue,
            &p.frame,
            &p.leak,
            &p.leak_frame,
            &p.module_frame,
            &p.named_frame,
            &p.register,
        ] {
            assert!(re.is_some());
        }
    }
}
