//! Running the plan: load, wait, unload, and forward every kernel log record as it appears.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use kmodlab_protocol::ktap::Completion;
use kmodlab_protocol::{Event, ModuleLoad, OpResult, Plan, PlannedTest, ProgramRun, WaitEnd};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::channel::Channel;
use crate::helper::{self, Helper, HelperOp};
use crate::kmsg::{Kmsg, Read1};
use crate::leaks;
use crate::module_map;
use crate::program;
use crate::system;

/// An unload always gets at least this long, even when loading and waiting used up the test's
/// limit, so a slow settle is not misreported as a hung exit function.
const UNLOAD_MIN: Duration = Duration::from_secs(1);
/// How long one pass over /dev/kmsg may run before deadlines are checked again (a module can
/// print faster than the serial port carries it).
const DRAIN_SLICE: Duration = Duration::from_millis(50);
/// How long the final drain of a test may take in total.
const FINAL_DRAIN: Duration = Duration::from_secs(2);
/// Poll interval for a child when no pidfd can tell us it exited.
const CHILD_TICK: Duration = Duration::from_millis(2);
/// How long a program killed at its time limit may take to die. One that outlives this is stuck
/// in the kernel (uninterruptible sleep), where no signal reaches it.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// How long, after a program exited, its output pipe may stay open (a background child of it
/// holding it) before the agent stops reading.
const OUTPUT_LINGER: Duration = Duration::from_millis(100);

/// How a program of the test's `run` list ended, for what the agent does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProgramEnd {
    /// It exited, was killed by a signal, or could not be started: go on.
    Ended,
    /// It ran out of time and was killed: skip the test's remaining programs, still unload.
    Killed,
    /// It ran out of time and did not die: the kernel holds it. Run nothing more, not even unload.
    Stuck,
}

/// Which load of a test: the first, or the second of a test with `reload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    First,
    Reload,
}

/// How loading a test's modules ended.
enum Loading<'t> {
    /// All of them loaded.
    Done(Vec<&'t str>),
    /// One was refused; these loaded before it.
    Failed(Vec<&'t str>),
    /// A load hung or its helper died: run nothing more. How the wait is reported.
    Stop(WaitEnd),
}

/// How unloading ended.
#[derive(Debug, PartialEq, Eq)]
enum Unloading {
    /// Every unload returned; true if each succeeded.
    Done(bool),
    /// An unload hung or its helper died.
    Stop,
}

/// Whether the agent may go on with the next test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Next,
    /// The kernel may be in a bad state (a hang or a killed helper): run nothing more.
    Stop,
}

pub struct Agent<W: Write> {
    pub channel: Channel<W>,
    kmsg: Option<Kmsg>,
    /// The current test's KTAP tracker; every record read while it is set is fed to it.
    ktap: Option<Completion>,
    /// Records less severe than this syslog level are read but not sent (see `forward_boot_log`).
    max_level: u8,
}

impl<W: Write> Agent<W> {
    pub fn new(channel: Channel<W>, kmsg: Option<Kmsg>) -> Agent<W> {
        Agent {
            channel,
            kmsg,
            ktap: None,
            max_level: 7,
        }
    }

    /// Sends the boot log's notices, warnings and errors; its ~100 informational lines would cost
    /// about 40 ms of emulated UART time per boot and belong to no test. Every record from then on
    /// is sent.
    pub fn forward_boot_log(&mut self) {
        self.max_level = 5;
        self.drain_all();
        self.max_level = 7;
    }

    /// Runs the tests in order; with `leak_scan`, then scans for leaks once the kernel is still
    /// sound.
    pub fn run_plan(&mut self, plan: &Plan, leak_scan: bool) {
        let mut last_loaded = None;
        for test in &plan.tests {
            let flow = self.run_test(test);
            if !test.modules.is_empty() {
                last_loaded = Some(Instant::now());
            }
            if flow == Flow::Stop {
                return;
            }
        }
        if leak_scan {
            self.scan_leaks(last_loaded);
        }
    }

    /// Scans once now, so that kmemleak takes the checksums it compares against, then again once
    /// what the last test allocated is old enough to be reported. Without any module loaded there
    /// is nothing of the tests' to find.
    fn scan_leaks(&mut self, last_loaded: Option<Instant>) {
        let started = Instant::now();
        let mut report = String::new();
        if let Some(last) = last_loaded {
            let scanned = leaks::scan().and_then(|()| {
                let until = last.checked_add(leaks::MIN_AGE).unwrap_or(last);
                self.wait_for(until, |_| false);
                leaks::scan()?;
                leaks::report()
            });
            report = scanned.unwrap_or_else(|e| {
                self.channel.error("scan for leaks", e);
                String::new()
            });
        }
        self.drain_all();
        self.channel.send(&Event::LeakScan {
            report,
            duration_us: micros(started.elapsed()),
        });
    }

    /// Forwards the records available now. Returns true if it stopped only because its time slice
    /// ran out (more may be waiting).
    pub fn drain_kmsg(&mut self) -> bool {
        let started = Instant::now();
        loop {
            let Some(kmsg) = self.kmsg.as_mut() else {
                return false;
            };
            match kmsg.read_next() {
                Ok(Read1::Record(mut record)) => {
                    if let Some(ktap) = self.ktap.as_mut() {
                        for line in record.lines() {
                            ktap.feed(line);
                        }
                    }
                    if record.level <= self.max_level {
                        crate::kmsg::observe_task(&mut record);
                        self.channel.send(&Event::Kmsg(record));
                    }
                }
                Ok(Read1::Malformed { reason, raw }) => {
                    self.channel
                        .error("parse kmsg record", format!("{reason}: {raw:?}"));
                }
                // The sequence numbers show the gap to the host; nothing else to do.
                Ok(Read1::Overwritten) => {}
                Ok(Read1::Empty) => return false,
                Err(e) => {
                    self.channel.error(
                        "read /dev/kmsg",
                        format!("{e}; no more kernel log records will be sent"),
                    );
                    self.kmsg = None;
                    return false;
                }
            }
            if started.elapsed() >= DRAIN_SLICE {
                return true;
            }
        }
    }

    /// Drains until the log is empty, bounded so a module printing in a loop cannot stall the agent.
    pub fn drain_all(&mut self) {
        let started = Instant::now();
        while self.drain_kmsg() && started.elapsed() < FINAL_DRAIN {}
    }

    /// Sleeps until a new kernel record, `child` becoming readable (a pidfd: the child exited), or
    /// `until`, whichever is first. `tick` caps the sleep when something must be polled by hand.
    fn sleep_until_event(
        &mut self,
        until: Instant,
        wake: &[BorrowedFd<'_>],
        tick: Option<Duration>,
    ) {
        let mut timeout = until.saturating_duration_since(Instant::now());
        if let Some(tick) = tick {
            timeout = timeout.min(tick);
        }
        // Round up so a sub-millisecond remainder does not spin with a zero timeout.
        let ms = timeout.as_micros().div_ceil(1000);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = Vec::with_capacity(1 + wake.len());
        if let Some(kmsg) = self.kmsg.as_ref() {
            fds.push(PollFd::new(kmsg.fd(), PollFlags::POLLIN));
        }
        for fd in wake {
            fds.push(PollFd::new(*fd, PollFlags::POLLIN));
        }
        // EINTR or any other poll failure just ends this sleep; the caller re-checks everything.
        let _ = poll(&mut fds, timeout);
    }

    /// Forwards kernel records until `until`, or until `done` says the awaited thing happened.
    /// Returns whether it happened.
    fn wait_for(&mut self, until: Instant, done: impl Fn(&Self) -> bool) -> bool {
        loop {
            let more = self.drain_kmsg();
            if done(self) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            if !more {
                self.sleep_until_event(until, &[], None);
            }
        }
    }

    /// Runs one helper syscall, forwarding kernel records meanwhile, and says how it went, how
    /// long it took and which process made it.
    fn run_helper(&mut self, op: &HelperOp, deadline: Instant) -> (OpResult, u64, Option<u32>) {
        let started = Instant::now();
        let (result, pid) = match op.spawn() {
            Ok(child) => {
                let pid = u32::try_from(child.pid().as_raw()).ok();
                (self.wait_child(child, deadline), pid)
            }
            Err(e) => {
                self.channel
                    .error("start helper process", format!("{op:?}: {e}"));
                (helper::failed(e.raw_os_error().unwrap_or(libc::EIO)), None)
            }
        };
        (result, micros(started.elapsed()), pid)
    }

    fn wait_child(&mut self, child: Helper, deadline: Instant) -> OpResult {
        let pidfd = pidfd_open(child.pid().as_raw());
        // Without a pidfd nothing wakes us when the child exits, so look often.
        let tick = if pidfd.is_some() {
            None
        } else {
            Some(CHILD_TICK)
        };
        // Whether the child had already exited at the previous pass.
        let mut seen_exited = false;
        loop {
            let exited = child.has_exited();
            // Whatever the child made the kernel print is in the log by the time it has exited,
            // and is forwarded before the child is reaped, while its CPU can still be read. A log
            // that keeps coming (a module printing from a timer) delays the reaping by one drain
            // slice at most: the exit, not the log, decides when the operation is over.
            let more = self.drain_kmsg();
            let status = match exited {
                Ok(true) if !more || seen_exited => child.try_wait(),
                Ok(true) => {
                    seen_exited = true;
                    Ok(None)
                }
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            };
            match status {
                Ok(Some(status)) => return helper::outcome(status),
                Ok(None) => {}
                Err(e) => {
                    self.channel.error("wait for helper process", &e);
                    return OpResult::Died {
                        signal: format!("unknown (wait failed: {e})"),
                    };
                }
            }
            // An exited child is reaped on the next pass, even past the deadline.
            if Instant::now() >= deadline && !seen_exited {
                // The child is stuck in the kernel; it cannot be killed there, so leave it.
                return OpResult::TimedOut;
            }
            if !more {
                let wake: Vec<BorrowedFd> = pidfd.iter().map(|fd| fd.as_fd()).collect();
                self.sleep_until_event(deadline, &wake, tick);
            }
        }
    }

    fn run_test(&mut self, test: &PlannedTest) -> Flow {
        // Records from before the test belong to no test's KTAP document.
        self.drain_all();
        let started = Instant::now();
        let deadline = started
            .checked_add(Duration::from_millis(test.timeout_ms))
            .unwrap_or(far_future(started));
        let taint = self.taint();
        self.channel.send(&Event::TestStarted {
            test: test.id,
            taint,
        });
        self.ktap = test.ktap.then(Completion::new);

        let flow = self.load_wait_unload(test, deadline);
        self.ktap = None;
        self.drain_all();
        let taint = self.taint();
        self.channel.send(&Event::TestFinished {
            test: test.id,
            taint,
            duration_us: micros(started.elapsed()),
        });
        flow
    }

    fn load_wait_unload(&mut self, test: &PlannedTest, deadline: Instant) -> Flow {
        let (loaded, all_loaded) = match self.load_modules(test, Round::First, deadline) {
            Loading::Done(loaded) => (loaded, true),
            Loading::Failed(loaded) => {
                self.wait_ended(test, WaitEnd::NotLoaded, 0);
                (loaded, false)
            }
            Loading::Stop(end) => {
                self.wait_ended(test, end, 0);
                return Flow::Stop;
            }
        };
        if all_loaded {
            let (end, duration_us) = self.wait(test, deadline);
            self.wait_ended(test, end, duration_us);
            if end == WaitEnd::TimedOut {
                return Flow::Stop;
            }
            for run in &test.run {
                match self.run_program(test, run) {
                    ProgramEnd::Ended => {}
                    ProgramEnd::Killed => break,
                    ProgramEnd::Stuck => return Flow::Stop,
                }
            }
        }
        let unloaded = match self.unload(test, &loaded, deadline, Round::First) {
            Unloading::Stop => return Flow::Stop,
            Unloading::Done(all) => all,
        };
        if test.reload && all_loaded && unloaded && !test.modules.is_empty() {
            // No watch between the rounds: a leftover of the first round that fires into the
            // second's code (the module usually gets the same addresses back) is this test's all
            // the same, and the second round leaves the same thing behind for the final watch.
            return self.load_again(test);
        }
        self.after_unload(test);
        Flow::Next
    }

    /// The second round of a test with `reload`: load again, settle, unload, watch. It has a
    /// time limit of its own, as long as the test's.
    fn load_again(&mut self, test: &PlannedTest) -> Flow {
        // What is in the log now came before the second round.
        self.drain_all();
        self.channel.send(&Event::Reloading { test: test.id });
        let started = Instant::now();
        let deadline = started
            .checked_add(Duration::from_millis(test.timeout_ms))
            .unwrap_or(far_future(started));
        let loaded = match self.load_modules(test, Round::Reload, deadline) {
            Loading::Done(loaded) => {
                let settle = Instant::now()
                    .checked_add(Duration::from_millis(test.settle_ms))
                    .unwrap_or(deadline);
                self.wait_for(settle.min(deadline), |_| false);
                loaded
            }
            Loading::Failed(loaded) => loaded,
            Loading::Stop(_) => return Flow::Stop,
        };
        if self.unload(test, &loaded, deadline, Round::Reload) == Unloading::Stop {
            return Flow::Stop;
        }
        self.after_unload(test);
        Flow::Next
    }

    /// Loads the test's modules in order, sending where each one lies in memory. Stops at the
    /// first that fails.
    fn load_modules<'t>(
        &mut self,
        test: &'t PlannedTest,
        round: Round,
        deadline: Instant,
    ) -> Loading<'t> {
        let mut loaded = Vec::new();
        for module in &test.modules {
            let op = HelperOp::Load {
                path: module.path.clone(),
                params: module.params.clone(),
            };
            let (result, duration_us, pid) = self.run_helper(&op, deadline);
            self.channel.send(&Event::ModuleLoaded {
                test: test.id,
                module: module.name.clone(),
                result: result.clone(),
                duration_us,
                reload: round == Round::Reload,
                pid,
            });
            match result {
                OpResult::Ok => {
                    loaded.push(module.name.as_str());
                    self.send_map(test, module);
                }
                OpResult::Failed { .. } => return Loading::Failed(loaded),
                // A hung or killed init leaves the kernel in a bad state: unloading could hang or
                // crash it further, so leave everything as it is for the host to look at.
                OpResult::TimedOut => return Loading::Stop(WaitEnd::TimedOut),
                OpResult::Died { .. } => return Loading::Stop(WaitEnd::NotLoaded),
            }
        }
        Loading::Done(loaded)
    }

    /// Sends where a module just loaded lies in memory, for reports printed after its unload.
    fn send_map(&mut self, test: &PlannedTest, module: &ModuleLoad) {
        match module_map::read(&module.name, &module.path) {
            Ok(map) => self.channel.send(&Event::ModuleMapped {
                test: test.id,
                module: module.name.clone(),
                map,
            }),
            Err(e) => self.channel.error("map module", e),
        }
    }

    /// Keeps reading the kernel log for the test's after-unload window: what the module left
    /// behind (an armed timer, a queued work item) runs into freed memory within it, and the
    /// report is this test's.
    fn after_unload(&mut self, test: &PlannedTest) {
        if test.modules.is_empty() || test.after_unload_ms == 0 {
            return;
        }
        let now = Instant::now();
        let until = now
            .checked_add(Duration::from_millis(test.after_unload_ms))
            .unwrap_or(now);
        self.wait_for(until, |_| false);
    }

    /// Runs one program of the test, forwarding kernel records meanwhile, and reports how it ended.
    fn run_program(&mut self, test: &PlannedTest, run: &ProgramRun) -> ProgramEnd {
        let started = Instant::now();
        let mut running = match program::start(run) {
            Ok(running) => running,
            Err(e) => {
                self.channel.send(&Event::ProgramFinished {
                    test: test.id,
                    program: run.name.clone(),
                    exit_code: None,
                    signal: None,
                    timed_out: false,
                    output: format!("[kmodlab-agent] cannot start {}: {e}\n", run.path),
                    duration_us: micros(started.elapsed()),
                    pid: None,
                });
                return ProgramEnd::Ended;
            }
        };
        let mut limit = started
            .checked_add(Duration::from_millis(run.timeout_ms))
            .unwrap_or(far_future(started));
        let tick = if running.has_pidfd() {
            None
        } else {
            Some(CHILD_TICK)
        };
        let mut timed_out = false;
        let status = loop {
            let more = self.drain_kmsg();
            running.read_available();
            match running.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(e) => {
                    running
                        .output
                        .note(&format!("waiting for the program failed: {e}"));
                    running.kill();
                    break None;
                }
            }
            let now = Instant::now();
            if now >= limit {
                if timed_out {
                    running.output.note(&format!(
                        "still running {}s after SIGKILL: stuck in the kernel",
                        KILL_GRACE.as_secs()
                    ));
                    break None;
                }
                timed_out = true;
                running.output.note(&format!(
                    "killed (SIGKILL) after its time limit of {} ms",
                    run.timeout_ms
                ));
                running.kill();
                limit = now.checked_add(KILL_GRACE).unwrap_or(now);
                continue;
            }
            if !more {
                let wake = running.wake_fds();
                self.sleep_until_event(limit, &wake, tick);
            }
        };
        let duration_us = micros(started.elapsed());
        // What it wrote just before it ended; a child it left behind may hold the pipe open, so
        // wait only briefly for the end of the output.
        let linger = Instant::now().checked_add(OUTPUT_LINGER).unwrap_or(limit);
        while status.is_some() && !running.output_closed() && Instant::now() < linger {
            let more = self.drain_kmsg();
            if running.read_available() == 0 && !more {
                let wake = running.wake_fds();
                let pipe_only = &wake[..wake.len().min(1)];
                self.sleep_until_event(linger, pipe_only, None);
            }
        }
        running.read_available();
        let (exit_code, signal) = status.map_or((None, None), program::status_parts);
        let end = match (status, timed_out) {
            (None, _) => ProgramEnd::Stuck,
            (Some(_), true) => ProgramEnd::Killed,
            (Some(_), false) => ProgramEnd::Ended,
        };
        self.channel.send(&Event::ProgramFinished {
            test: test.id,
            program: run.name.clone(),
            exit_code,
            signal,
            timed_out,
            output: std::mem::take(&mut running.output).into_text(),
            duration_us,
            pid: Some(running.pid()),
        });
        end
    }

    fn wait_ended(&mut self, test: &PlannedTest, end: WaitEnd, duration_us: u64) {
        self.channel.send(&Event::WaitEnded {
            test: test.id,
            end,
            duration_us,
        });
    }

    /// Waits for the module's KTAP document (if it has one), then for the settle time.
    fn wait(&mut self, test: &PlannedTest, deadline: Instant) -> (WaitEnd, u64) {
        let started = Instant::now();
        let end = if test.ktap {
            let complete = self.wait_for(deadline, |agent| {
                agent.ktap.as_ref().is_some_and(Completion::is_complete)
            });
            if complete {
                WaitEnd::KtapComplete
            } else {
                WaitEnd::TimedOut
            }
        } else {
            WaitEnd::Settled
        };
        if end != WaitEnd::TimedOut {
            // Late messages get the settle time, but never past the test's limit: the settle is
            // extra listening, not something the module can fail at.
            let settle = Instant::now()
                .checked_add(Duration::from_millis(test.settle_ms))
                .unwrap_or(deadline);
            self.wait_for(settle.min(deadline), |_| false);
        }
        (end, micros(started.elapsed()))
    }

    /// Unloads `loaded` in reverse order.
    fn unload(
        &mut self,
        test: &PlannedTest,
        loaded: &[&str],
        deadline: Instant,
        round: Round,
    ) -> Unloading {
        let mut all = true;
        for name in loaded.iter().rev() {
            let now = Instant::now();
            let limit = deadline.max(now.checked_add(UNLOAD_MIN).unwrap_or(deadline));
            let op = HelperOp::Unload {
                name: name.to_string(),
            };
            let (result, duration_us, pid) = self.run_helper(&op, limit);
            let stop = matches!(result, OpResult::TimedOut | OpResult::Died { .. });
            all &= result == OpResult::Ok;
            self.channel.send(&Event::ModuleUnloaded {
                test: test.id,
                module: name.to_string(),
                result,
                duration_us,
                reload: round == Round::Reload,
                pid,
            });
            if stop {
                return Unloading::Stop;
            }
        }
        Unloading::Done(all)
    }

    fn taint(&mut self) -> u64 {
        system::taint().unwrap_or_else(|e| {
            self.channel.error("read taint", e);
            0
        })
    }
}

/// A pidfd for the child: readable once it exits, so `poll` wakes at once instead of on a timer.
pub fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A deadline that is never reached, for a limit too large to add.
fn far_future(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent<Vec<u8>> {
        Agent::new(Channel::new(Vec::new()), None)
    }

    fn test_with(run: Vec<ProgramRun>) -> PlannedTest {
        PlannedTest {
            id: 4,
            name: "demo/programs".into(),
            modules: vec![],
            ktap: false,
            settle_ms: 0,
            timeout_ms: 1000,
            run,
            after_unload_ms: 300,
            reload: true,
        }
    }

    fn sh(name: &str, script: &str, timeout_ms: u64) -> ProgramRun {
        ProgramRun {
            name: name.into(),
            path: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            timeout_ms,
        }
    }

    /// Runs the programs as a test would (no modules) and returns the events sent.
    fn run_all(runs: Vec<ProgramRun>) -> (Flow, Vec<Event>) {
        let mut agent = agent();
        let test = test_with(runs);
        let deadline = Instant::now() + Duration::from_secs(5);
        let flow = agent.load_wait_unload(&test, deadline);
        let text = String::from_utf8(agent.channel.into_inner()).expect("UTF-8");
        let events = text
            .lines()
            .map(|l| Event::from_line(l).expect("event"))
            .collect();
        (flow, events)
    }

    /// A `program_finished` event's name, exit code, signal, timed_out and output.
    type Finished = (String, Option<i32>, Option<String>, bool, String);

    fn finished(events: &[Event]) -> Vec<Finished> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ProgramFinished {
                    program,
                    exit_code,
                    signal,
                    timed_out,
                    output,
                    ..
                } => Some((
                    program.clone(),
                    *exit_code,
                    signal.clone(),
                    *timed_out,
                    output.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn programs_run_in_order_with_their_output_and_exit_codes() {
        let (flow, events) = run_all(vec![
            sh(
                "first",
                "echo out; echo err >&2; echo \"args:$0\"; exit 3",
                2000,
            ),
            sh("second", "printf 'no newline'", 2000),
        ]);
        assert_eq!(flow, Flow::Next);
        let done = finished(&events);
        assert_eq!(done.len(), 2, "{events:?}");
        assert_eq!(done[0].0, "first");
        assert_eq!(
            (done[0].1, done[0].2.as_deref(), done[0].3),
            (Some(3), None, false)
        );
        assert_eq!(done[0].4, "out\nerr\nargs:/bin/sh\n");
        assert_eq!(done[1].1, Some(0));
        assert_eq!(done[1].4, "no newline");
        // The wait ended before the programs ran.
        assert!(matches!(events[0], Event::WaitEnded { .. }), "{events:?}");
    }

    #[test]
    fn a_program_past_its_limit_is_killed_and_the_rest_skipped() {
        let started = Instant::now();
        let (flow, events) = run_all(vec![
            sh("hang", "echo started; sleep 30", 300),
            sh("never", "echo should not run", 2000),
        ]);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            flow,
            Flow::Next,
            "a killed program still lets the modules unload"
        );
        let done = finished(&events);
        assert_eq!(done.len(), 1, "{done:?}");
        let (name, code, signal, timed_out, output) = &done[0];
        assert_eq!(
            (name.as_str(), *code, signal.as_deref(), *timed_out),
            ("hang", None, Some("SIGKILL"), true)
        );
        assert!(output.starts_with("started\n"), "{output}");
        assert!(
            output.contains("killed (SIGKILL) after its time limit of 300 ms"),
            "{output}"
        );
    }

    #[test]
    fn signals_missing_programs_and_background_children_are_reported() {
        let started = Instant::now();
        let (_, events) = run_all(vec![
            sh("segv", "kill -SEGV $$", 2000),
            ProgramRun {
                name: "missing".into(),
                path: "/nonexistent/kmodlab/prog".into(),
                args: vec![],
                timeout_ms: 1000,
            },
            // Exits at once, but leaves a child that holds the output pipe open.
            sh("leaves_child", "sleep 5 & echo parent done", 2000),
        ]);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let done = finished(&events);
        assert_eq!(done.len(), 3, "{done:?}");
        assert_eq!((done[0].1, done[0].2.as_deref()), (None, Some("SIGSEGV")));
        assert_eq!(
            (done[1].1, done[1].2.as_deref(), done[1].3),
            (None, None, false)
        );
        assert!(
            done[1].4.contains("cannot start /nonexistent/kmodlab/prog"),
            "{}",
            done[1].4
        );
        assert_eq!(done[2].1, Some(0));
        assert_eq!(done[2].4, "parent done\n");
    }

    #[test]
    fn a_flood_of_output_is_bounded() {
        let (_, events) = run_all(vec![sh(
            "flood",
            "i=0; while [ $i -lt 3000 ]; do echo line $i of forty bytes or so......; i=$((i+1)); done",
            5000,
        )]);
        let done = finished(&events);
        let output = &done[0].4;
        assert!(output.len() < 70 * 1024, "{}", output.len());
        assert!(output.starts_with("line 0 of"), "{}", &output[..40]);
        assert!(output.contains("bytes of output left out"));
        assert!(output.ends_with("line 2999 of forty bytes or so......\n"));
    }
}
