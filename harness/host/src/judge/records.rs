//! What was recorded about each test: the agent's events and the console's lines, put together
//! into one [`TestRecord`] per test.

use super::oops;
use kmodlab_protocol::{Event, KmsgRecord, ModuleMap, OpResult, WaitEnd};
use std::time::Duration;

/// Why the host stopped waiting for a test that never finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interruption {
    /// The test's time limit (plus the agent's grace) passed on the host's clock.
    HostTimeout,
    /// QEMU exited by itself, or its channels closed, while the test ran.
    VmEnded,
    /// Something outside the guest ended QEMU while the test ran (a signal kmodlab did not send,
    /// QEMU crashing): the cause, in words.
    Infrastructure(String),
    /// The whole run's time limit passed while the test ran.
    RunTimeLimit,
}

/// Everything recorded about one test, assembled from agent events and console lines.
#[derive(Debug, Clone, Default)]
pub struct TestRecord {
    pub id: u32,
    pub started: bool,
    pub finished: bool,
    pub taint_before: Option<u64>,
    pub taint_after: Option<u64>,
    pub loads: Vec<(String, OpResult)>,
    pub wait: Option<WaitEnd>,
    pub unloads: Vec<(String, OpResult)>,
    pub kmsg: Vec<KmsgRecord>,
    pub console: Vec<String>,
    pub interrupted: Option<Interruption>,
    pub duration: Duration,
    /// The test's programs (its `[[test.run]]` list), in the order they ran.
    pub programs: Vec<ProgramRecord>,
    /// Where each module this test loaded lay in memory (both rounds of a reload), in load order.
    pub mapped: Vec<MappedModule>,
    /// The modules earlier tests of this VM loaded: a timer one of them left armed can fire
    /// during this test, into its freed code.
    pub earlier: Vec<MappedModule>,
    /// How many of [`TestRecord::kmsg`] came before the second round of a reload began (the
    /// first `ModuleLoaded { reload: true }`); `None` without a second round. KTAP and the
    /// spec's patterns are judged on the records before it.
    pub reload_from: Option<usize>,
    /// The second round's loads and unloads.
    pub reloads: Vec<(String, OpResult)>,
    pub reunloads: Vec<(String, OpResult)>,
    /// How many kernel records had come when the first round's last unload was reported.
    pub first_unloaded_at: Option<usize>,
    /// The process of the latest load (the agent maps a module right after loading it).
    pub last_load_pid: Option<u32>,
}

/// A module a test loaded, where it lay, and when (in its test's kernel records) it came and went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedModule {
    /// The test that loaded it.
    pub test: u32,
    pub module: String,
    pub map: ModuleMap,
    /// Loaded by the second round of a reload.
    pub reload: bool,
    /// How many of its test's kernel records came before it was mapped.
    pub mapped_at: usize,
    /// How many of its test's kernel records came before it was unloaded; `None` while it is
    /// loaded (or its unload failed).
    pub unloaded_at: Option<usize>,
    /// The process that loaded it: what its init allocated, kmemleak reports with this pid.
    pub load_pid: Option<u32>,
}

/// How one program of a test ended, as the agent reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramRecord {
    pub program: String,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub timed_out: bool,
    /// stdout and stderr, interleaved.
    pub output: String,
    pub duration: Duration,
    /// How many kernel records of the test came before its report, to place its output in the log.
    pub kmsg_before: usize,
}

impl ProgramRecord {
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.output.lines()
    }

    /// Its last `n` lines of output, for a verdict's details.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines: Vec<&str> = self.lines().collect();
        let mut out: Vec<String> = lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("{}: {l}", self.program))
            .collect();
        if out.is_empty() {
            out.push(format!("{}: (no output)", self.program));
        }
        out
    }
}

impl TestRecord {
    pub fn new(id: u32) -> Self {
        TestRecord {
            id,
            ..Default::default()
        }
    }

    /// Takes in an event about this test (or a kmsg record while it runs).
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::TestStarted { taint, .. } => {
                self.started = true;
                self.taint_before = Some(*taint);
            }
            Event::ModuleLoaded {
                module,
                result,
                reload,
                duration_us,
                pid,
                ..
            } => {
                self.last_load_pid = *pid;
                if *reload {
                    if self.reload_from.is_none() {
                        self.reload_from = Some(self.second_round_start(*duration_us));
                    }
                    self.reloads.push((module.clone(), result.clone()))
                } else {
                    self.loads.push((module.clone(), result.clone()))
                }
            }
            Event::Reloading { .. } => self.reload_from = Some(self.kmsg.len()),
            Event::ModuleMapped { module, map, .. } => self.mapped.push(MappedModule {
                test: self.id,
                module: module.clone(),
                map: map.clone(),
                reload: self.reload_from.is_some(),
                mapped_at: self.kmsg.len(),
                unloaded_at: None,
                load_pid: self.last_load_pid,
            }),
            Event::WaitEnded { end, .. } => self.wait = Some(*end),
            Event::ModuleUnloaded {
                module,
                result,
                reload,
                ..
            } => {
                if *result == OpResult::Ok {
                    let at = self.kmsg.len();
                    if let Some(m) = self
                        .mapped
                        .iter_mut()
                        .rev()
                        .find(|m| m.module == *module && m.reload == *reload)
                    {
                        m.unloaded_at.get_or_insert(at);
                    }
                }
                if *reload {
                    self.reunloads.push((module.clone(), result.clone()))
                } else {
                    if *result == OpResult::Ok {
                        self.first_unloaded_at = Some(self.kmsg.len());
                    }
                    self.unloads.push((module.clone(), result.clone()))
                }
            }
            Event::Kmsg(record) => self.kmsg.push(record.clone()),
            Event::TestFinished {
                taint, duration_us, ..
            } => {
                self.finished = true;
                self.taint_after = Some(*taint);
                self.duration = Duration::from_micros(*duration_us);
            }
            Event::ProgramFinished {
                program,
                exit_code,
                signal,
                timed_out,
                output,
                duration_us,
                ..
            } => self.programs.push(ProgramRecord {
                program: program.clone(),
                exit_code: *exit_code,
                signal: signal.clone(),
                timed_out: *timed_out,
                output: output.clone(),
                duration: Duration::from_micros(*duration_us),
                kmsg_before: self.kmsg.len(),
            }),
            Event::Hello { .. }
            | Event::Waiting { .. }
            | Event::AgentError { .. }
            | Event::LeakScan { .. }
            | Event::Done => {}
        }
    }

    /// Where the second round began, for recordings from agents that did not say so with
    /// `Reloading`, told when its first load is reported (`load_us` after the load began): the
    /// agent reports a load once it returned, so what the module's second init
    /// printed came before. The records after the first round's unload stamped within the
    /// load's duration of the newest one are the second load's; older ones were printed in the
    /// window after the first unload.
    fn second_round_start(&self, load_us: u64) -> usize {
        let floor = self.first_unloaded_at.unwrap_or(self.kmsg.len());
        let Some(newest) = self.kmsg.last().map(|r| r.ts_us) else {
            return 0;
        };
        let began = newest.saturating_sub(load_us);
        (floor..self.kmsg.len())
            .find(|&i| self.kmsg[i].ts_us >= began)
            .unwrap_or(self.kmsg.len())
    }

    /// Every kernel record's lines, both rounds of a reload.
    pub fn kmsg_lines(&self) -> Vec<&str> {
        self.kmsg.iter().flat_map(|r| r.lines()).collect()
    }

    /// The lines of the kernel records before the second round of a reload (all without one):
    /// what KTAP and the spec's patterns are judged on.
    pub fn first_round_lines(&self) -> Vec<&str> {
        let end = self
            .reload_from
            .unwrap_or(self.kmsg.len())
            .min(self.kmsg.len());
        self.kmsg[..end].iter().flat_map(|r| r.lines()).collect()
    }

    /// How many of [`TestRecord::kmsg_lines`] come before the second round (all without one).
    pub fn first_round_line_count(&self) -> usize {
        let end = self
            .reload_from
            .unwrap_or(self.kmsg.len())
            .min(self.kmsg.len());
        self.kmsg[..end].iter().map(|r| r.lines().count()).sum()
    }

    /// The index of the kernel record that line `line` of [`TestRecord::kmsg_lines`] is part of
    /// (the number of records, for a line past them).
    pub fn record_of_line(&self, line: usize) -> usize {
        let mut seen = 0;
        for (i, r) in self.kmsg.iter().enumerate() {
            seen += r.lines().count();
            if line < seen {
                return i;
            }
        }
        self.kmsg.len()
    }
}

/// What an agent event meant for the VM's session.
#[derive(Debug)]
pub enum Step {
    /// Taken into the running test's record, or nothing to act on.
    Recorded,
    /// The agent greeted the host: the guest is up.
    Booted,
    /// The agent began this test.
    TestStarted(u32),
    /// A kernel failure report began while a test ran: it will not finish by itself for long.
    ReportStarted,
    /// The agent finished a test: its whole record.
    TestFinished(Box<TestRecord>),
    /// `agent error while CONTEXT: MESSAGE`.
    AgentError(String),
    /// The agent finished its plan.
    Done,
    /// kmemleak's report after the last test: the raw text of `/sys/kernel/debug/kmemleak`.
    LeakScan(String),
}

/// One VM's agent events and console lines, put together into one [`TestRecord`] per test. A live
/// run feeds it as the VM speaks and `parse` feeds it from the files the run kept, so both
/// attribute every event and line alike.
#[derive(Debug, Default)]
pub struct VmRecords {
    booted: bool,
    /// The agent will scan for leaks after the last test ([`Step::LeakScan`]).
    leak_scan: bool,
    /// How many tests the agent's plan has.
    planned: u32,
    /// How many tests have ended (finished or interrupted).
    ended: u32,
    /// Every module the tests of this VM that ended loaded, in load order.
    maps: Vec<MappedModule>,
    kernel_release: Option<String>,
    running: Option<Running>,
    /// The timestamp of the newest kernel record the agent has sent.
    last_kmsg_us: Option<u64>,
}

#[derive(Debug)]
struct Running {
    record: TestRecord,
    /// The newest kernel record's timestamp when the test began: console lines stamped after it
    /// are the test's, older ones were printed before it.
    after_us: Option<u64>,
    /// Whether the last console line went to the test; an unstamped line goes with the one before.
    keeping: bool,
}

impl VmRecords {
    pub fn booted(&self) -> bool {
        self.booted
    }

    /// The kernel release the agent reported when it greeted the host.
    pub fn kernel_release(&self) -> Option<&str> {
        self.kernel_release.as_deref()
    }

    /// Whether the agent said it will scan for leaks after the last test.
    pub fn leak_scan(&self) -> bool {
        self.leak_scan
    }

    /// Whether every test of the agent's plan has ended: with a leak scan, the agent is now
    /// waiting for kmemleak.
    pub fn all_ended(&self) -> bool {
        self.booted && self.running.is_none() && self.ended >= self.planned
    }

    /// Every module loaded by the tests of this VM that ended (and by the running one).
    pub fn maps(&self) -> Vec<&MappedModule> {
        let running = self.running.iter().flat_map(|r| &r.record.mapped);
        self.maps.iter().chain(running).collect()
    }

    /// A test ended: its modules join the VM's.
    fn ended(&mut self, record: &TestRecord) {
        self.ended += 1;
        self.maps.extend(record.mapped.iter().cloned());
    }

    /// The test running now, if any.
    pub fn running(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.record.id)
    }

    /// Takes in one agent event.
    pub fn event(&mut self, event: &Event) -> Step {
        match event {
            Event::Hello {
                kernel_release,
                leak_scan,
                tests,
                ..
            } => {
                self.booted = true;
                self.leak_scan = *leak_scan;
                self.planned = *tests;
                self.kernel_release = Some(kernel_release.clone());
                Step::Booted
            }
            Event::TestStarted { test, .. } => {
                let mut record = TestRecord::new(*test);
                record.apply(event);
                record.earlier = self.maps.clone();
                self.running = Some(Running {
                    record,
                    after_us: self.last_kmsg_us,
                    // Unstamped lines (the agent's own messages) at the test's start are its.
                    keeping: true,
                });
                Step::TestStarted(*test)
            }
            Event::TestFinished { .. } => match self.running.take() {
                Some(Running { mut record, .. }) => {
                    record.apply(event);
                    self.ended(&record);
                    Step::TestFinished(Box::new(record))
                }
                None => Step::Recorded,
            },
            Event::Done => Step::Done,
            Event::LeakScan { report, .. } => Step::LeakScan(report.clone()),
            Event::AgentError { context, message } => {
                Step::AgentError(format!("agent error while {context}: {message}"))
            }
            Event::Kmsg(kmsg) => {
                self.last_kmsg_us = Some(kmsg.ts_us).max(self.last_kmsg_us);
                let Some(running) = self.running.as_mut() else {
                    return Step::Recorded;
                };
                running.record.apply(event);
                if kmsg.lines().any(oops::is_crash_marker) {
                    Step::ReportStarted
                } else {
                    Step::Recorded
                }
            }
            other => {
                if let Some(running) = self.running.as_mut() {
                    running.record.apply(other);
                }
                Step::Recorded
            }
        }
    }

    /// Takes in one console line; true when it starts a crash report in the running test.
    /// A line goes to the running test when it is stamped after the newest kernel record the
    /// agent had sent before the test began (an unstamped line goes with the line before it).
    pub fn console(&mut self, line: &str) -> bool {
        let Some(running) = self.running.as_mut() else {
            return false;
        };
        let line = line.trim_end_matches('\r');
        if let (Some(stamp), Some(after)) = (timestamp_us(line), running.after_us) {
            running.keeping = stamp > after;
        }
        if !running.keeping {
            return false;
        }
        running.record.console.push(line.to_string());
        oops::is_crash_marker(line)
    }

    /// Marks the running test as interrupted now, before the VM is stopped: what its channels
    /// still held is taken in afterwards, and does not change why it ended.
    pub fn mark_interrupted(&mut self, why: Interruption) {
        if let Some(running) = self.running.as_mut() {
            running.record.interrupted = Some(why);
        }
    }

    /// Ends the running test, if one was interrupted: why the host stopped waiting (unless the
    /// record already says), and how long it ran by the host's clock when the agent never said.
    pub fn interrupt(&mut self, why: Interruption, ran: Duration) -> Option<TestRecord> {
        let mut record = self.running.take()?.record;
        self.ended(&record);
        if !record.finished {
            record.duration = ran;
            record.interrupted.get_or_insert(why);
        }
        Some(record)
    }
}

/// Microseconds as printk stamps them on the console: `[   12.345678]`.
pub fn format_stamp(us: u64) -> String {
    format!("[{:>5}.{:06}]", us / 1_000_000, us % 1_000_000)
}

/// `[   12.345678] ...` as microseconds.
pub fn timestamp_us(line: &str) -> Option<u64> {
    let inner = line.strip_prefix('[')?;
    let close = inner.find(']')?;
    let (secs, micros) = inner.get(..close)?.trim().split_once('.')?;
    let secs: u64 = secs.parse().ok()?;
    // printk prints six digits; be lenient with fewer.
    let digits = micros.len().min(6);
    let frac: u64 = micros.get(..digits)?.parse().ok()?;
    Some(secs * 1_000_000 + frac * 10u64.pow(6 - digits as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kmsg(ts_us: u64, text: &str) -> Event {
        Event::Kmsg(KmsgRecord {
            seq: ts_us,
            level: 6,
            facility: 0,
            ts_us,
            text: text.into(),
            caller: None,
        })
    }

    /// The console lines test 0 gets when `before` were the kernel records sent before it began.
    fn console_of(before: &[Event], console: &str) -> Vec<String> {
        let mut records = VmRecords::default();
        for event in before {
            records.event(event);
        }
        records.event(&Event::TestStarted { test: 0, taint: 0 });
        for line in console.lines() {
            records.console(line);
        }
        let record = records.interrupt(Interruption::HostTimeout, Duration::ZERO);
        record.expect("a running test").console
    }

    #[test]
    fn console_lines_follow_the_last_record_before_the_test() {
        let console = "[    1.000000] old\n[    2.000000] new\ncontinued\n[    3.5] later\n";
        assert_eq!(
            console_of(&[kmsg(1_500_000, "before")], console),
            ["[    2.000000] new", "continued", "[    3.5] later"]
        );
        assert_eq!(console_of(&[], console).len(), 4);
        assert_eq!(timestamp_us("[   12.000034] x"), Some(12_000_034));
        assert_eq!(timestamp_us("no stamp"), None);
    }

    #[test]
    fn unstamped_lines_at_a_tests_start_are_its_and_late_older_lines_are_not() {
        // The agent's own messages carry no stamp; a line the kernel printed before the test
        // began can still arrive on the slow console after it began, and is not the test's.
        let console =
            "kmodlab-agent: a message\n[    1.000000] late from before\nafter it\n[    2.0] ours\n";
        assert_eq!(
            console_of(&[kmsg(1_500_000, "before")], console),
            ["kmodlab-agent: a message", "[    2.0] ours"]
        );
        assert_eq!(format_stamp(12_000_034), "[   12.000034]");
    }

    #[test]
    fn only_the_running_test_takes_events_and_lines() {
        let mut records = VmRecords::default();
        assert!(!records.console("[    0.1] BUG: kernel NULL pointer dereference, address: 0"));
        assert!(matches!(records.event(&kmsg(100, "boot")), Step::Recorded));
        records.event(&Event::TestStarted { test: 3, taint: 0 });
        assert_eq!(records.running(), Some(3));
        // A failure report starting is worth telling the session: the test will not finish.
        let marker = "WARNING: CPU: 0 PID: 7 at demo.c:3 demo_check+0x1/0x2 [demo]";
        assert!(matches!(
            records.event(&kmsg(200, marker)),
            Step::ReportStarted
        ));
        assert!(records.console(&format!("[    0.000300] {marker}")));
        let finished = records.event(&Event::TestFinished {
            test: 3,
            taint: 0,
            duration_us: 5,
        });
        let Step::TestFinished(record) = finished else {
            panic!("{finished:?}");
        };
        assert_eq!(
            (record.id, record.kmsg.len(), record.console.len()),
            (3, 1, 1)
        );
        assert!(record.finished && record.interrupted.is_none());
        assert_eq!(records.running(), None);
        assert!(records
            .interrupt(Interruption::VmEnded, Duration::ZERO)
            .is_none());
    }

    #[test]
    fn the_second_round_begins_where_its_load_began_not_at_its_report() {
        let mut record = TestRecord::new(0);
        let op = |reload: bool, duration_us: u64| Event::ModuleLoaded {
            test: 0,
            module: "m".into(),
            result: OpResult::Ok,
            duration_us,
            reload,
            pid: None,
        };
        record.apply(&op(false, 900));
        record.apply(&kmsg(1_000_000, "m: first init"));
        record.apply(&Event::ModuleUnloaded {
            test: 0,
            module: "m".into(),
            result: OpResult::Ok,
            duration_us: 300,
            reload: false,
            pid: None,
        });
        // In the window after the unload, then printed by the second init (5 ms long).
        record.apply(&kmsg(1_100_000, "m: something late"));
        record.apply(&kmsg(
            1_400_000,
            "WARNING: CPU: 0 PID: 35 at fs/proc/generic.c:399 proc_register+0x183/0x220",
        ));
        record.apply(&kmsg(1_402_000, "m: cannot create /proc/m"));
        record.apply(&op(true, 5_000));
        assert_eq!(record.reload_from, Some(2));
        assert_eq!(
            record.first_round_lines(),
            ["m: first init", "m: something late"]
        );
        assert_eq!(record.first_round_line_count(), 2);
        assert_eq!((record.loads.len(), record.reloads.len()), (1, 1));
        assert_eq!(record.record_of_line(3), 3);
        assert_eq!(record.record_of_line(9), 4);
    }
}
