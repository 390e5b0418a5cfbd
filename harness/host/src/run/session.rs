//! One VM's session: reading its events until the agent is done, a test crashes or times out, or
//! QEMU ends, with the host's deadlines on top. A QEMU that something outside the guest ended (a
//! signal kmodlab did not send, QEMU's own crash) is an infrastructure failure: the test it
//! interrupted is judged but its verdict is held back ([`Session::held`]), for the run to try the
//! test again in a fresh VM. The events come from a live [`Vm`] or, for
//! `parse`, from the files a run folder kept of one ([`Recording`]); [`VmRecords`] puts both
//! together into the same per-test records, so a run folder is judged again as it was judged live.

use crate::guest::vm::{QemuEnd, Vm, VmEvent};
use crate::judge::records::{Interruption, Step, TestRecord, VmRecords};
use crate::judge::rules;
use crate::judge::unload::{self, Leak};
use crate::judge::verdict::{Outcome, Verdict};
use kmodlab_protocol::Event;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a guest may take to boot and greet us before the boot counts as failed.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(20);
/// Extra time the host gives the agent beyond a test's own limit before it stops waiting.
pub const AGENT_GRACE: Duration = Duration::from_secs(2);
/// Once a failure report starts during a test, the test has this long to finish (and the report to
/// be printed in full) before the host ends the VM: a detector's report (soft lockup, hung task)
/// means the test will not finish by itself, and its verdict should not wait for the time limit.
const REPORT_GRACE: Duration = Duration::from_secs(3);
/// After the last test of a VM whose agent scans for leaks, how long the host waits for the
/// scan: the agent waits until every allocation is over 5 s old (kmemleak ignores younger
/// ones), then scans.
pub const LEAK_SCAN_WAIT: Duration = Duration::from_secs(30);

/// Where one VM's events come from.
pub trait EventSource {
    /// The next event, or `None` once `deadline` has passed with nothing new.
    fn next_event(&mut self, deadline: Instant) -> Option<VmEvent>;
    /// Ends the VM; what its channels still held.
    fn stop(&mut self) -> Vec<VmEvent>;
    /// When the VM started.
    fn started(&self) -> Instant;
    /// The host's clock. A recording's stands still: only the agent's durations count there.
    fn now(&self) -> Instant;
    /// How QEMU ended, once its console closed by itself; `None` when that cannot be told.
    fn end(&mut self) -> Option<QemuEnd>;
}

impl EventSource for Vm {
    fn next_event(&mut self, deadline: Instant) -> Option<VmEvent> {
        Vm::next_event(self, deadline)
    }

    fn stop(&mut self) -> Vec<VmEvent> {
        Vm::stop(self);
        self.drain()
    }

    fn started(&self) -> Instant {
        self.started
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn end(&mut self) -> Option<QemuEnd> {
        Vm::end(self)
    }
}

/// A VM's events as a run folder kept them: the agent's events in order, then the console's
/// lines. The files do not say how the two interleaved, so console lines can only matter to the
/// test that was still running when the events stop (a kernel dying before the agent could send
/// its report), and [`VmRecords`] gives them to it by their timestamps.
pub struct Recording {
    events: VecDeque<VmEvent>,
    at: Instant,
    end: Option<QemuEnd>,
}

impl Recording {
    pub fn new(events: Vec<Event>, console: &str) -> Recording {
        let mut queue: VecDeque<VmEvent> = events.into_iter().map(VmEvent::Agent).collect();
        queue.extend(
            console
                .lines()
                .map(|line| VmEvent::Console(line.to_string())),
        );
        Recording {
            events: queue,
            at: Instant::now(),
            end: None,
        }
    }

    /// The recording of a VM whose QEMU ended as `end` says (from its `<label>.qemu.txt`). When
    /// something outside the guest ended it, the events end with the console closing, as they
    /// did live; otherwise running out of them still reads as silence.
    pub fn ended(mut self, end: Option<QemuEnd>) -> Recording {
        if matches!(end, Some(QemuEnd::Infrastructure(_))) {
            self.events.push_back(VmEvent::ConsoleClosed);
        }
        self.end = end;
        self
    }
}

impl EventSource for Recording {
    /// The events do not say whether QEMU exited or the host stopped waiting when they stop; the
    /// host's limit is by far the more common end, so running out of them reads as silence.
    fn next_event(&mut self, _deadline: Instant) -> Option<VmEvent> {
        self.events.pop_front()
    }

    fn stop(&mut self) -> Vec<VmEvent> {
        self.events.drain(..).collect()
    }

    fn started(&self) -> Instant {
        self.at
    }

    fn now(&self) -> Instant {
        self.at
    }

    fn end(&mut self) -> Option<QemuEnd> {
        self.end.clone()
    }
}

/// The verdict of a test whose VM was ended from outside the guest a second time
/// ([`Session::held`]): it stands, saying that it ran again once.
pub fn held_twice(mut verdict: Verdict, label: &str) -> Verdict {
    verdict.details.insert(
        0,
        format!("retried once in a fresh VM; QEMU ended from outside the guest again ({label})"),
    );
    verdict
}

/// What a session needs of the plan.
pub trait Judge {
    /// How long the host waits for a test to finish once it began, before [`AGENT_GRACE`].
    fn limit(&self, test: u32) -> Duration;
    /// The verdict on a test's record; `None` for a test the plan does not have.
    fn judge(&self, record: &TestRecord) -> Option<Verdict>;
}

/// What a session tells as it goes.
pub enum Progress<'a> {
    /// The agent greeted the host, this long after the VM started.
    Booted {
        after: Duration,
    },
    TestStarted(u32),
    /// `agent error while CONTEXT: MESSAGE`.
    AgentError(String),
    Verdict(u32, &'a Verdict),
}

/// What one VM did.
#[derive(Debug, Default)]
pub struct Session {
    /// Whether the guest came up (or the run simply had no time left to wait for it).
    pub booted: bool,
    pub kernel_release: Option<String>,
    pub verdicts: Vec<(u32, Verdict)>,
    /// Why the session ended, in words.
    pub end: String,
    pub last_verdict: Option<Instant>,
    /// Set when something outside the guest ended QEMU: the cause, in words.
    pub infrastructure: Option<String>,
    /// The verdict on the test that [`Session::infrastructure`] interrupted, not told: it stands
    /// only if the test's next attempt ends the same way.
    pub held: Option<(u32, Verdict)>,
}

/// Reads one VM's events until the agent is done, a test crashes or times out, or QEMU ends.
pub fn drive(
    source: &mut dyn EventSource,
    judge: &dyn Judge,
    run_deadline: Option<Instant>,
    tell: &mut dyn FnMut(Progress),
) -> Session {
    let mut driver = Driver {
        records: VmRecords::default(),
        session: Session::default(),
        judge,
        test_deadline: None,
        test_started: source.now(),
        vm_ended: false,
        untold: Vec::new(),
    };
    loop {
        let (deadline, run_limited) = driver.deadline(source, run_deadline);
        let Some(event) = source.next_event(deadline) else {
            driver.stop_waiting(run_limited);
            break;
        };
        if driver.take(event, source, tell) == Flow::Stop {
            break;
        }
    }
    // What the channels still held when QEMU ended belongs to the test that was running.
    for event in source.stop() {
        if driver.records.running().is_none() {
            break;
        }
        match event {
            VmEvent::Console(line) => {
                driver.records.console(&line);
            }
            VmEvent::Agent(event) => {
                if let Step::TestFinished(record) = driver.records.event(&event) {
                    driver.finish(&record, source, tell);
                }
            }
            _ => {}
        }
    }
    let why = match (&driver.session.infrastructure, driver.vm_ended) {
        (Some(cause), _) => Interruption::Infrastructure(cause.clone()),
        (None, true) => Interruption::VmEnded,
        (None, false) => Interruption::HostTimeout,
    };
    let ran = source.now().saturating_duration_since(driver.test_started);
    if let Some(record) = driver.records.interrupt(why, ran) {
        if driver.session.infrastructure.is_some() && !record.finished {
            driver.session.held = driver.judge.judge(&record).map(|v| (record.id, v));
        } else {
            driver.finish(&record, source, tell);
        }
    }
    // No leak scan came (a crash ended the VM first): the verdicts stand as they are, saying so.
    for &at in &driver.untold {
        if let Some((_, verdict)) = driver.session.verdicts.get_mut(at) {
            verdict.details.push(
                "note: the VM ended before kmemleak's scan reported: leaks were not checked"
                    .to_string(),
            );
        }
    }
    driver.tell_held(tell);
    driver.session.booted |= driver.records.booted();
    driver.session.kernel_release = driver.records.kernel_release().map(str::to_string);
    driver.session
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// The session's state between events.
struct Driver<'j> {
    records: VmRecords,
    session: Session,
    judge: &'j dyn Judge,
    /// When the host stops waiting for the running test (moved closer by a failure report).
    test_deadline: Option<Instant>,
    /// When the running test began, on the host's clock.
    test_started: Instant,
    vm_ended: bool,
    /// Indices in `session.verdicts` of the verdicts held back for the leak scan, not told yet.
    untold: Vec<usize>,
}

impl Driver<'_> {
    /// How long to wait for the next event, and whether the run's limit is what bounds it.
    fn deadline(&self, source: &dyn EventSource, run_deadline: Option<Instant>) -> (Instant, bool) {
        let deadline = match self.test_deadline {
            Some(deadline) => deadline,
            None if !self.records.booted() => source.started() + BOOT_TIMEOUT,
            // The agent waits for kmemleak after the last test before it scans.
            None if self.records.leak_scan() && self.records.all_ended() => {
                source.now() + LEAK_SCAN_WAIT
            }
            // Between tests the agent moves on at once; silence this long means it is stuck.
            None => source.now() + AGENT_GRACE * 2,
        };
        match run_deadline {
            Some(run) if run < deadline => (run, true),
            _ => (deadline, false),
        }
    }

    /// Nothing came before the deadline: the host stops waiting.
    fn stop_waiting(&mut self, run_limited: bool) {
        let booted = self.records.booted();
        self.session.end = match (self.records.running(), booted) {
            _ if run_limited => "the run's time limit was reached".into(),
            (_, false) => format!("no word from the agent within {}s", BOOT_TIMEOUT.as_secs()),
            (Some(_), true) => "test time limit reached".into(),
            (None, true) => "the agent went silent between tests".into(),
        };
        self.records.mark_interrupted(if run_limited {
            Interruption::RunTimeLimit
        } else {
            Interruption::HostTimeout
        });
        // Not the guest's fault: the run simply has no time left.
        self.session.booted = run_limited && !booted;
    }

    fn take(
        &mut self,
        event: VmEvent,
        source: &mut dyn EventSource,
        tell: &mut dyn FnMut(Progress),
    ) -> Flow {
        match event {
            VmEvent::Console(line) => {
                if self.records.console(&line) {
                    self.report_started(source);
                }
                Flow::Continue
            }
            VmEvent::AgentNoise(_) => Flow::Continue,
            VmEvent::ConsoleClosed => match source.end() {
                Some(QemuEnd::Infrastructure(cause)) => {
                    self.session.infrastructure = Some(cause.clone());
                    self.vm_ended(cause)
                }
                Some(QemuEnd::Guest) | None => self.vm_ended("QEMU exited".into()),
            },
            VmEvent::ChannelError(e) => self.vm_ended(e),
            VmEvent::Agent(event) => self.agent_event(&event, &*source, tell),
        }
    }

    fn vm_ended(&mut self, why: String) -> Flow {
        self.session.end = why;
        self.vm_ended = true;
        Flow::Stop
    }

    fn report_started(&mut self, source: &dyn EventSource) {
        let soon = source.now() + REPORT_GRACE;
        self.test_deadline = self.test_deadline.map(|d| d.min(soon));
    }

    fn agent_event(
        &mut self,
        event: &Event,
        source: &dyn EventSource,
        tell: &mut dyn FnMut(Progress),
    ) -> Flow {
        match self.records.event(event) {
            Step::Recorded => {}
            Step::Booted => tell(Progress::Booted {
                after: source.now().saturating_duration_since(source.started()),
            }),
            Step::TestStarted(test) => {
                tell(Progress::TestStarted(test));
                self.test_started = source.now();
                self.test_deadline = Some(self.test_started + self.judge.limit(test) + AGENT_GRACE);
            }
            Step::ReportStarted => self.report_started(source),
            Step::TestFinished(record) => {
                self.test_deadline = None;
                let charged = !unload::charged_elsewhere(&record).is_empty();
                let verdict = self.finish(&record, source, tell);
                // A crashed or stuck kernel must not judge the next test: fresh VM. So too a
                // kernel another test's module crashed in.
                if charged || verdict.is_some_and(|v| v.outcome.ends_the_vm()) {
                    self.session.end = "a test crashed or timed out".into();
                    return Flow::Stop;
                }
            }
            Step::LeakScan(report) => {
                let leaks = unload::leaks(&report, &self.records.maps());
                charge_leaks(&mut self.session.verdicts, &leaks);
                self.tell_held(tell);
            }
            Step::AgentError(text) => tell(Progress::AgentError(text)),
            Step::Done => {
                self.session.end = "the agent finished its plan".into();
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Judges a test's record and tells its verdict (or holds it back for the leak scan). A
    /// crash in the memory of a module an earlier test loaded and unloaded is that test's: its
    /// verdict becomes the crash, told again.
    fn finish(
        &mut self,
        record: &TestRecord,
        source: &dyn EventSource,
        tell: &mut dyn FnMut(Progress),
    ) -> Option<&Verdict> {
        let verdict = self.judge.judge(record)?;
        for found in unload::charged_elsewhere(record) {
            let Some((owner, title, details)) = rules::charged_crash(&found, record.id) else {
                continue;
            };
            let Some(at) = self
                .session
                .verdicts
                .iter()
                .position(|(id, _)| *id == owner)
            else {
                continue;
            };
            let earlier = &mut self.session.verdicts[at].1;
            if earlier.outcome == Outcome::Crash {
                continue;
            }
            let mut all = details;
            if earlier.outcome != Outcome::Pass || !earlier.reason.is_empty() {
                all.push(format!(
                    "before the crash, the test's verdict was {} {}",
                    earlier.outcome.label(),
                    earlier.reason
                ));
            }
            all.append(&mut earlier.details);
            earlier.outcome = Outcome::Crash;
            earlier.reason = title;
            earlier.details = all;
            earlier.log.extend(found.crash.report.iter().cloned());
            *earlier = earlier.clone().with_evidence();
            if !self.untold.contains(&at) {
                tell(Progress::Verdict(owner, &self.session.verdicts[at].1));
            }
        }
        self.session.verdicts.push((record.id, verdict));
        self.session.last_verdict = Some(source.now());
        let index = self.session.verdicts.len() - 1;
        if self.records.leak_scan() {
            self.untold.push(index);
        } else {
            tell(Progress::Verdict(
                record.id,
                &self.session.verdicts[index].1,
            ));
        }
        self.session.verdicts.last().map(|(_, v)| v)
    }

    /// Tells the verdicts held back for the leak scan, in order.
    fn tell_held(&mut self, tell: &mut dyn FnMut(Progress)) {
        for at in std::mem::take(&mut self.untold) {
            if let Some((id, verdict)) = self.session.verdicts.get(at) {
                tell(Progress::Verdict(*id, verdict));
            }
        }
    }
}

/// Charges each leak to the test that loaded the module whose code allocated it: a test that
/// passed gets `FAIL memory leak in FUNCTION` (the first leak's; the details count them); one
/// whose verdict already says worse keeps it, with the leaks in its details.
fn charge_leaks(verdicts: &mut [(u32, Verdict)], leaks: &[Leak]) {
    for (id, verdict) in verdicts.iter_mut() {
        let mine: Vec<&Leak> = leaks.iter().filter(|l| l.test == *id).collect();
        let Some(first) = mine.first() else {
            continue;
        };
        let mut details = Vec::new();
        if mine.len() > 1 {
            details.push(format!(
                "kmemleak found {} unreferenced objects this test's modules allocated",
                mine.len()
            ));
        }
        for leak in &mine {
            details.extend(leak.details());
        }
        let log: Vec<String> = mine.iter().flat_map(|l| l.block.iter().cloned()).collect();
        verdict.log.extend(log);
        if verdict.outcome == Outcome::Pass {
            verdict.outcome = Outcome::Fail;
            verdict.reason = first.title();
            details.append(&mut verdict.details);
            verdict.details = details;
        } else if verdict.outcome != Outcome::Skip {
            verdict.details.push(format!("also: {}", first.title()));
            verdict.details.extend(details);
        }
        *verdict = verdict.clone().with_evidence();
    }
}

#[cfg(test)]
mod tests {
    /// What is told when a timer unload_timer left armed fires during test 1: test 0 passed,
    /// then is charged with the crash; test 1, which it interrupted, could not finish.
    const TIMER_CHARGED_TO_TEST_0: [&str; 3] = [
        "0 PASS ",
        "0 CRASH use after unload in unload_timer: timer callback unload_timer_tick",
        "1 ERROR the kernel crashed in unload_timer, unloaded by test 0, and this test could not \
         finish: use after unload in unload_timer: timer callback unload_timer_tick",
    ];

    use super::*;
    use crate::judge::rules;
    use kmodlab_protocol::{KmsgRecord, OpResult};
    use std::path::Path;

    /// Judges every test against the spec `parse` infers from its events; 10 s limits.
    struct Inferred;

    impl Judge for Inferred {
        fn limit(&self, _test: u32) -> Duration {
            Duration::from_secs(10)
        }

        fn judge(&self, record: &TestRecord) -> Option<Verdict> {
            let spec = crate::run::replay::inferred_spec(&format!("test{}", record.id), record);
            Some(rules::judge("m", &spec, record))
        }
    }

    /// A VM that says what it is told to, one item per wait: `None` is a wait that reached its
    /// deadline. It keeps the deadlines it was asked to wait for, on a clock that stands still.
    struct Scripted {
        script: VecDeque<Option<VmEvent>>,
        left_in_channels: Vec<VmEvent>,
        deadlines: Vec<Instant>,
        at: Instant,
        /// How QEMU ended when the script closes the console.
        end: Option<QemuEnd>,
    }

    impl Scripted {
        fn new(script: Vec<Option<VmEvent>>) -> Scripted {
            Scripted {
                script: script.into(),
                left_in_channels: vec![],
                deadlines: vec![],
                at: Instant::now(),
                end: Some(QemuEnd::Guest),
            }
        }
    }

    impl EventSource for Scripted {
        fn next_event(&mut self, deadline: Instant) -> Option<VmEvent> {
            self.deadlines.push(deadline);
            self.script.pop_front().flatten()
        }

        fn stop(&mut self) -> Vec<VmEvent> {
            std::mem::take(&mut self.left_in_channels)
        }

        fn started(&self) -> Instant {
            self.at
        }

        fn now(&self) -> Instant {
            self.at
        }

        fn end(&mut self) -> Option<QemuEnd> {
            self.end.clone()
        }
    }

    fn agent(event: Event) -> Option<VmEvent> {
        Some(VmEvent::Agent(event))
    }

    fn hello() -> Option<VmEvent> {
        agent(Event::Hello {
            agent_version: "0.1.0".into(),
            kernel_release: "6.12.117".into(),
            uptime_ms: 500,
            tests: 2,
            leak_scan: false,
        })
    }

    fn started(test: u32) -> Option<VmEvent> {
        agent(Event::TestStarted { test, taint: 0 })
    }

    fn loaded(test: u32) -> Option<VmEvent> {
        agent(Event::ModuleLoaded {
            test,
            module: "demo".into(),
            result: OpResult::Ok,
            duration_us: 900,
            reload: false,
            pid: None,
        })
    }

    fn kmsg(ts_us: u64, text: &str) -> Option<VmEvent> {
        agent(Event::Kmsg(KmsgRecord {
            seq: ts_us,
            level: 4,
            facility: 0,
            ts_us,
            text: text.into(),
            caller: None,
        }))
    }

    /// `test OUTCOME reason` per verdict, and why the session ended.
    fn outcome(session: &Session) -> (Vec<String>, &str) {
        let verdicts = session
            .verdicts
            .iter()
            .map(|(id, v)| format!("{id} {} {}", v.outcome.label(), v.reason))
            .collect();
        (verdicts, session.end.as_str())
    }

    fn drive_quietly(source: &mut dyn EventSource, run_deadline: Option<Instant>) -> Session {
        drive(source, &Inferred, run_deadline, &mut |_| {})
    }

    fn recorded_vm(label: &str) -> Recording {
        recorded("hello_ktap_fail_warn_hang", label)
    }

    /// A VM a real run kept: LABEL.events.jsonl and LABEL.console.log in a folder of
    /// harness/host/tests/data/runs.
    fn recorded(run: &str, label: &str) -> Recording {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/runs")
            .join(run);
        let text = |name: String| std::fs::read_to_string(dir.join(name)).expect("recorded run");
        let events = text(format!("{label}.events.jsonl"))
            .lines()
            .map(|line| Event::from_line(line).expect("an agent event"))
            .collect();
        Recording::new(events, &text(format!("{label}.console.log")))
    }

    /// The debug kernel, real runs (vm3 from a module written outside the fixtures): a timer left
    /// armed faults in freed code during the unload,
    /// before the agent could report it, after a long trace of unreliable frames; a delayed work
    /// left queued makes lockdep print "bad unlock balance" and fault on the lock's name in the
    /// freed module. Both are the use after unload they are, on the test that loaded the module.
    #[test]
    fn recorded_leftovers_on_the_debug_kernel_are_uses_after_unload() {
        for (vm, want) in [
            (
                "vm1",
                "0 CRASH use after unload in unload_timer: timer callback unload_timer_tick",
            ),
            (
                "vm2",
                "1 CRASH use after unload in unload_delayed_work: timer callback",
            ),
            // A kthread left running: it faults in its freed function while the first unload
            // returns, and again after the second load's unload, both before the agent reported
            // the unload.
            (
                "vm3",
                "0 CRASH use after unload in kthread_left: kthread function loop_fn",
            ),
        ] {
            let session = drive_quietly(&mut recorded("debug_after_unload", vm), None);
            let (verdicts, _) = outcome(&session);
            assert_eq!(verdicts, [want], "{vm}");
        }
    }

    #[test]
    fn a_recorded_vm_is_read_up_to_the_crash_that_ended_it() {
        let mut told = Vec::new();
        let session = drive(&mut recorded_vm("vm1"), &Inferred, None, &mut |p| {
            told.push(match p {
                Progress::Booted { .. } => "booted".to_string(),
                Progress::TestStarted(test) => format!("started {test}"),
                Progress::AgentError(text) => text,
                Progress::Verdict(id, v) => format!("verdict {id} {}", v.outcome.label()),
            })
        });
        assert!(session.booted);
        assert_eq!(session.kernel_release.as_deref(), Some("6.12.117"));
        let (verdicts, end) = outcome(&session);
        assert_eq!(
            verdicts[..2],
            [
                "0 PASS ",
                "1 FAIL not ok 2 arithmetic_is_broken: check failed: 2 + delta == 4 (ktap_fail.c:21)"
            ]
        );
        assert_eq!(verdicts[2], "2 CRASH WARNING in warn_init_trigger");
        // Test 3 began in the crashed kernel; it is not judged there (it ran again in vm2).
        assert_eq!((verdicts.len(), end), (3, "a test crashed or timed out"));
        assert_eq!(
            told,
            [
                "booted",
                "started 0",
                "verdict 0 PASS",
                "started 1",
                "verdict 1 FAIL",
                "started 2",
                "verdict 2 CRASH"
            ]
        );
        let session = drive_quietly(&mut recorded_vm("vm2"), None);
        assert_eq!(
            outcome(&session),
            (
                vec!["3 TIMEOUT load: init_hang's init did not return within 3s".to_string()],
                "a test crashed or timed out"
            )
        );
    }

    #[test]
    fn silence_during_a_test_is_its_timeout_and_a_failure_report_shortens_the_wait() {
        let marker = "BUG: soft lockup - CPU#0 stuck for 22s! [insmod:53]";
        let mut vm = Scripted::new(vec![
            hello(),
            started(0),
            loaded(0),
            kmsg(1_000, marker),
            None,
        ]);
        let session = drive_quietly(&mut vm, None);
        assert_eq!(
            outcome(&session),
            (
                vec!["0 CRASH BUG: soft lockup".to_string()],
                "test time limit reached"
            )
        );
        let at = vm.at;
        assert_eq!(
            vm.deadlines,
            [
                at + BOOT_TIMEOUT,
                at + AGENT_GRACE * 2,
                at + Duration::from_secs(10) + AGENT_GRACE,
                at + Duration::from_secs(10) + AGENT_GRACE,
                at + REPORT_GRACE,
            ]
        );
        // Without a report, the guest simply stopped answering.
        let mut vm = Scripted::new(vec![hello(), started(0), loaded(0), None]);
        assert_eq!(
            outcome(&drive_quietly(&mut vm, None)),
            (
                vec!["0 TIMEOUT the guest stopped answering within 10s".to_string()],
                "test time limit reached"
            )
        );
    }

    #[test]
    fn the_vm_ending_or_the_run_running_out_of_time_interrupt_the_test() {
        let mut vm = Scripted::new(vec![
            hello(),
            started(0),
            loaded(0),
            Some(VmEvent::Console(
                "[    1.0] reboot: Restarting system".into(),
            )),
            Some(VmEvent::ConsoleClosed),
        ]);
        let session = drive_quietly(&mut vm, None);
        assert_eq!(
            outcome(&session),
            (
                vec!["0 CRASH the VM ended during the test".to_string()],
                "QEMU exited"
            )
        );
        assert_eq!(
            session.verdicts[0].1.details,
            ["[    1.0] reboot: Restarting system"]
        );
        // The run's limit comes before the test's.
        let mut vm = Scripted::new(vec![hello(), started(0), loaded(0), None]);
        let run_deadline = vm.at + Duration::from_secs(1);
        let session = drive_quietly(&mut vm, Some(run_deadline));
        assert_eq!(
            outcome(&session),
            (
                vec!["0 TIMEOUT the run's time limit was reached during this test".to_string()],
                "the run's time limit was reached"
            )
        );
        assert_eq!(vm.deadlines.last(), Some(&run_deadline));
    }

    const KILLED: &str =
        "QEMU was killed by SIGKILL, not by kmodlab: an infrastructure failure, not the module's";

    #[test]
    fn qemu_exiting_by_a_signal_during_a_test_holds_its_verdict_back_as_an_error() {
        let mut vm = Scripted::new(vec![
            hello(),
            agent(Event::TestStarted { test: 0, taint: 0 }),
            agent(Event::TestFinished {
                test: 0,
                taint: 0,
                duration_us: 900,
            }),
            started(1),
            loaded(1),
            Some(VmEvent::Console("[    1.0] hello: Hello, kmodlab!".into())),
            Some(VmEvent::ConsoleClosed),
        ]);
        vm.end = Some(QemuEnd::Infrastructure(KILLED.into()));
        let mut told = Vec::new();
        let session = drive(&mut vm, &Inferred, None, &mut |p| {
            if let Progress::Verdict(id, v) = p {
                told.push(format!("{id} {}", v.outcome.label()));
            }
        });
        // The test before is judged as usual; the one it interrupted is not told, nor CRASH.
        assert_eq!(told, ["0 PASS"]);
        assert_eq!(outcome(&session), (vec!["0 PASS ".to_string()], KILLED));
        assert!(session.booted);
        assert_eq!(session.infrastructure.as_deref(), Some(KILLED));
        let (id, held) = session
            .held
            .as_ref()
            .expect("the interrupted test's verdict");
        assert_eq!(
            (*id, held.outcome.label(), held.reason.as_str()),
            (1, "ERROR", KILLED)
        );
        assert_eq!(held.details, ["[    1.0] hello: Hello, kmodlab!"]);
    }

    #[test]
    fn qemu_exiting_by_a_signal_between_tests_or_as_a_test_ended_holds_nothing_back() {
        // Between tests: nothing to judge, the session only says why.
        let mut vm = Scripted::new(vec![hello(), Some(VmEvent::ConsoleClosed)]);
        vm.end = Some(QemuEnd::Infrastructure(KILLED.into()));
        let session = drive_quietly(&mut vm, None);
        assert!(session.booted && session.held.is_none() && session.verdicts.is_empty());
        assert_eq!(session.infrastructure.as_deref(), Some(KILLED));
        // The agent had finished the test when QEMU was killed: its verdict stands.
        let mut vm = Scripted::new(vec![
            hello(),
            started(0),
            loaded(0),
            Some(VmEvent::ConsoleClosed),
        ]);
        vm.end = Some(QemuEnd::Infrastructure(KILLED.into()));
        vm.left_in_channels = vec![VmEvent::Agent(Event::TestFinished {
            test: 0,
            taint: 0,
            duration_us: 900,
        })];
        let session = drive_quietly(&mut vm, None);
        assert!(session.held.is_none());
        assert_eq!(outcome(&session).0, ["0 PASS "]);
        // Before the agent greeted: a boot that failed, for the run to retry.
        let mut vm = Scripted::new(vec![Some(VmEvent::ConsoleClosed)]);
        vm.end = Some(QemuEnd::Infrastructure(KILLED.into()));
        let session = drive_quietly(&mut vm, None);
        assert!(!session.booted);
        assert_eq!(session.end, KILLED);
    }

    #[test]
    fn a_recording_of_a_vm_ended_from_outside_is_judged_as_it_was_live() {
        let events = [hello(), started(0), loaded(0)].into_iter().flatten();
        let events: Vec<Event> = events
            .filter_map(|e| match e {
                VmEvent::Agent(event) => Some(event),
                _ => None,
            })
            .collect();
        let end = Some(QemuEnd::Infrastructure(KILLED.into()));
        let session = drive_quietly(&mut Recording::new(events.clone(), "").ended(end), None);
        let (id, held) = session.held.expect("held back");
        assert_eq!((id, held.outcome.label()), (0, "ERROR"));
        assert_eq!(session.end, KILLED);
        // Without the record (or when the guest ended it), running out of events is silence.
        let session = drive_quietly(&mut Recording::new(events, "").ended(None), None);
        assert!(session.held.is_none());
        assert_eq!(outcome(&session).1, "test time limit reached");
    }

    #[test]
    fn a_guest_that_never_greets_did_not_boot_unless_the_run_had_no_time_left() {
        let mut vm = Scripted::new(vec![Some(VmEvent::Console("SeaBIOS".into())), None]);
        let session = drive_quietly(&mut vm, None);
        assert!(!session.booted);
        assert_eq!(session.end, "no word from the agent within 20s");
        let mut vm = Scripted::new(vec![None]);
        let no_time_left = Some(vm.at);
        let session = drive_quietly(&mut vm, no_time_left);
        assert!(session.booted);
        assert_eq!(session.end, "the run's time limit was reached");
    }

    #[test]
    fn what_the_channels_still_held_goes_to_the_test_that_was_running() {
        let mut vm = Scripted::new(vec![hello(), started(0), loaded(0), None]);
        vm.left_in_channels = vec![
            VmEvent::Agent(Event::TestFinished {
                test: 0,
                taint: 0,
                duration_us: 12_000_000,
            }),
            // The next test began just as the host gave up: it runs again in a fresh VM.
            VmEvent::Agent(Event::TestStarted { test: 1, taint: 0 }),
        ];
        let session = drive_quietly(&mut vm, None);
        let (verdicts, _) = outcome(&session);
        assert_eq!(
            verdicts,
            ["0 TIMEOUT the guest stopped answering within 10s"]
        );
        assert_eq!(session.verdicts[0].1.duration, Duration::from_secs(12));
    }

    // ---- issue 11: after unload, reload, leaks ----

    use kmodlab_protocol::{AddressRange, ModuleMap};

    const TEXT: u64 = 0xffff_ffff_a000_0000;

    /// A module's map: `.text` at `text` (4 KiB) with `functions` at the given offsets (64 bytes
    /// each), `.init.text` 24 KiB above it.
    fn map_at(text: u64, functions: &[(&str, u64)]) -> ModuleMap {
        let range = |name: &str, start: u64, size: u64| AddressRange {
            name: name.into(),
            start,
            size,
        };
        ModuleMap {
            sections: vec![
                range(".text", text, 0x1000),
                range(".init.text", text + 0x6000, 0x1000),
            ],
            functions: functions
                .iter()
                .map(|(name, offset)| range(name, text + offset, 0x40))
                .collect(),
        }
    }

    fn hello_with_leak_scan(tests: u32, leak_scan: bool) -> Event {
        Event::Hello {
            agent_version: "0.1.0".into(),
            kernel_release: "6.12.118".into(),
            uptime_ms: 500,
            tests,
            leak_scan,
        }
    }

    /// One test's events: load, map, settle, unload (and a reload round), finished or not.
    fn test_events(
        test: u32,
        module: &str,
        map: &ModuleMap,
        ts_us: u64,
        reload: bool,
        finished: bool,
    ) -> Vec<Event> {
        let mut events = vec![Event::TestStarted { test, taint: 0 }];
        let rounds: &[bool] = if reload { &[false, true] } else { &[false] };
        for &second in rounds {
            events.push(Event::ModuleLoaded {
                test,
                module: module.into(),
                result: OpResult::Ok,
                duration_us: 900,
                reload: second,
                pid: None,
            });
            events.push(Event::ModuleMapped {
                test,
                module: module.into(),
                map: map.clone(),
            });
            events.push(Event::Kmsg(KmsgRecord {
                seq: ts_us,
                level: 6,
                facility: 0,
                ts_us: ts_us + u64::from(second),
                text: format!("{module}: loaded"),
                caller: None,
            }));
            if !second {
                events.push(Event::WaitEnded {
                    test,
                    end: kmodlab_protocol::WaitEnd::Settled,
                    duration_us: 50_000,
                });
            }
            events.push(Event::ModuleUnloaded {
                test,
                module: module.into(),
                result: OpResult::Ok,
                duration_us: 300,
                reload: second,
                pid: None,
            });
        }
        if finished {
            events.push(Event::TestFinished {
                test,
                taint: 4096,
                duration_us: 400_000,
            });
        }
        events
    }

    fn captured(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/oops")
            .join(format!("captured_{name}.log"));
        std::fs::read_to_string(path).expect("a captured log")
    }

    /// A captured log's lines as the agent sends them: kernel records from `seq` on, at `level`,
    /// all stamped `ts_us`.
    fn captured_records(name: &str, seq: u64, level: u8, ts_us: u64) -> Vec<Event> {
        captured(name)
            .lines()
            .enumerate()
            .map(|(i, line)| {
                Event::Kmsg(KmsgRecord {
                    seq: seq + i as u64,
                    level,
                    facility: 0,
                    ts_us,
                    text: kmodlab_protocol::ktap::strip_timestamp(line).to_string(),
                    caller: None,
                })
            })
            .collect()
    }

    /// Every verdict as told: `verdict ID OUTCOME reason`.
    fn drive_telling(source: &mut dyn EventSource) -> (Session, Vec<String>) {
        let mut told = Vec::new();
        let session = drive(source, &Inferred, None, &mut |p| {
            if let Progress::Verdict(id, v) = p {
                told.push(format!("{id} {} {}", v.outcome.label(), v.reason));
            }
        });
        (session, told)
    }

    #[test]
    fn a_timer_left_armed_crashing_in_its_own_window_is_a_use_after_unload() {
        let map = map_at(
            TEXT,
            &[("unload_timer_tick", 0), ("unload_timer_init", 0x6000)],
        );
        let mut events = vec![hello_with_leak_scan(1, false)];
        events.extend(test_events(0, "unload_timer", &map, 600_000, true, false));
        // The kernel died in the window after the unload: only the console has the report.
        let mut vm = Recording::new(events, &captured("unload_timer"));
        let (session, told) = drive_telling(&mut vm);
        assert_eq!(
            told,
            ["0 CRASH use after unload in unload_timer: timer callback unload_timer_tick"]
        );
        let details = &session.verdicts[0].1.details;
        assert_eq!(
            details[0],
            "the kernel's report: BUG: unable to handle page fault for address: ffffffffa0000000"
        );
        // It came after the second round's unload: not a reload finding.
        assert!(
            !details.iter().any(|d| d.contains("second load")),
            "{details:?}"
        );
    }

    #[test]
    fn work_and_tasklets_left_behind_are_named_by_their_runner() {
        for (name, module, kind) in [
            ("unload_delayed_work", "unload_delayed_work", "work item"),
            ("unload_tasklet", "unload_tasklet", "tasklet"),
        ] {
            let function = format!("{module}_fn");
            let map = map_at(TEXT, &[(function.as_str(), 0)]);
            let mut events = vec![hello_with_leak_scan(1, false)];
            events.extend(test_events(0, module, &map, 500_000, false, false));
            let (_, told) = drive_telling(&mut Recording::new(events, &captured(name)));
            assert_eq!(
                told,
                [format!(
                    "0 CRASH use after unload in {module}: {kind} {function}"
                )]
            );
        }
        // Without a function at the address, the title leaves it out.
        let map = map_at(TEXT, &[]);
        let mut events = vec![hello_with_leak_scan(1, false)];
        events.extend(test_events(
            0,
            "unload_tasklet",
            &map,
            500_000,
            false,
            false,
        ));
        let (_, told) = drive_telling(&mut Recording::new(events, &captured("unload_tasklet")));
        assert_eq!(
            told,
            ["0 CRASH use after unload in unload_tasklet: tasklet"]
        );
    }

    #[test]
    fn a_crash_in_a_later_tests_window_is_charged_to_the_test_that_loaded_the_module() {
        let timer = map_at(TEXT, &[("unload_timer_tick", 0)]);
        // hello came after it, elsewhere in module memory.
        let hello = map_at(TEXT + 0x10_000, &[("hello_init", 0x6000)]);
        let mut events = vec![hello_with_leak_scan(2, false)];
        events.extend(test_events(0, "unload_timer", &timer, 300_000, false, true));
        events.extend(test_events(1, "hello", &hello, 500_000, false, false));
        let (session, told) = drive_telling(&mut Recording::new(events, &captured("unload_timer")));
        assert_eq!(told, TIMER_CHARGED_TO_TEST_0);
        let (verdicts, _) = outcome(&session);
        assert_eq!(verdicts.len(), 2);
        assert!(verdicts[0].starts_with("0 CRASH use after unload"));
        assert!(session.verdicts[0].1.details[0].contains("during test 1"));
    }

    #[test]
    fn a_timer_firing_while_the_next_module_loads_is_charged_to_the_test_that_left_it() {
        // The callback 8 KiB into .text; the next test's module (sleeper) is still in its init,
        // so its map has not come: the freed address is the timer's module's alone.
        let mut timer = map_at(TEXT, &[]);
        timer.sections[0].size = 0x3000;
        timer.functions.push(AddressRange {
            name: "unload_timer_tick".into(),
            start: TEXT + 0x2010,
            size: 0x40,
        });
        let mut events = vec![hello_with_leak_scan(2, false)];
        events.extend(test_events(0, "unload_timer", &timer, 300_000, false, true));
        events.push(Event::TestStarted {
            test: 1,
            taint: 4096,
        });
        let console = captured("unload_timer_next_module");
        let (_, told) = drive_telling(&mut Recording::new(events, &console));
        assert_eq!(told, TIMER_CHARGED_TO_TEST_0);
    }

    #[test]
    fn a_later_test_that_finished_keeps_its_verdict_with_a_note() {
        let work = map_at(TEXT, &[("unload_delayed_work_fn", 0)]);
        let hello = map_at(TEXT + 0x10_000, &[]);
        let mut events = vec![hello_with_leak_scan(3, false)];
        events.extend(test_events(
            0,
            "unload_delayed_work",
            &work,
            300_000,
            false,
            true,
        ));
        // The agent sent the report as kernel records, and test 1 finished all the same, with
        // the kernel tainted D (died) by the crash.
        let mut second = test_events(1, "hello", &hello, 500_000, false, true);
        let mut finished = second.pop().expect("test_finished");
        if let Event::TestFinished { taint, .. } = &mut finished {
            *taint |= 1 << 7;
        }
        second.extend(captured_records("unload_delayed_work", 100, 1, 561_688));
        second.push(finished);
        events.extend(second);
        events.extend(test_events(2, "hello", &hello, 900_000, false, true));
        let (session, told) = drive_telling(&mut Recording::new(events, ""));
        assert_eq!(
            told,
            [
                "0 PASS ",
                "0 CRASH use after unload in unload_delayed_work: work item unload_delayed_work_fn",
                "1 PASS ",
            ]
        );
        let note = &session.verdicts[1].1.details;
        assert!(
            note.iter().any(|d| d.contains("charged to test 0")),
            "{note:?}"
        );
        // The kernel had crashed: test 2 runs again in a fresh VM.
        assert_eq!(session.end, "a test crashed or timed out");
    }

    #[test]
    fn a_second_load_that_warns_says_the_first_unload_left_something_behind() {
        let map = map_at(TEXT, &[("proc_left_init", 0x6000)]);
        let module = || "proc_left".to_string();
        let mut events = vec![
            hello_with_leak_scan(1, false),
            Event::TestStarted { test: 0, taint: 0 },
            Event::ModuleLoaded {
                test: 0,
                module: module(),
                result: OpResult::Ok,
                duration_us: 900,
                reload: false,
                pid: None,
            },
            Event::ModuleMapped {
                test: 0,
                module: module(),
                map: map.clone(),
            },
            Event::WaitEnded {
                test: 0,
                end: kmodlab_protocol::WaitEnd::Settled,
                duration_us: 50_000,
            },
            Event::ModuleUnloaded {
                test: 0,
                module: module(),
                result: OpResult::Ok,
                duration_us: 300,
                reload: false,
                pid: None,
            },
        ];
        // The second load: the kernel warns during its init (its own init text, at the first
        // instance's address, shows as a bare `? 0xffffffffa0006000`), then init fails.
        events.extend(captured_records("proc_left", 200, 4, 1_187_672));
        events.push(Event::ModuleLoaded {
            test: 0,
            module: module(),
            result: OpResult::Failed {
                errno: 12,
                name: "ENOMEM".into(),
                message: "Cannot allocate memory".into(),
            },
            duration_us: 900,
            reload: true,
            pid: None,
        });
        events.push(Event::TestFinished {
            test: 0,
            taint: 4096 | 512,
            duration_us: 700_000,
        });
        let (session, told) = drive_telling(&mut Recording::new(events, ""));
        assert_eq!(told, ["0 CRASH WARNING in proc_register"]);
        let details = &session.verdicts[0].1.details;
        assert!(details[0].contains("second load"), "{details:?}");
        assert!(
            details
                .iter()
                .any(|d| d.contains("proc_dir_entry '/proc/proc_left' already registered")),
            "{details:?}"
        );
    }

    #[test]
    fn a_report_after_the_unload_that_names_no_module_address_says_when_it_came() {
        // The timer code warns about the freed timer; no address of the module in the report.
        let warning = "\
------------[ cut here ]------------
WARNING: CPU: 1 PID: 0 at kernel/time/timer.c:1782 __run_timers+0x22a/0x2a0
Modules linked in:
RIP: 0010:__run_timers+0x22a/0x2a0
Call Trace:
 <IRQ>
 run_timer_softirq+0x2a4/0x2f0
 handle_softirqs+0xbf/0x210
 </IRQ>
---[ end trace 0000000000000000 ]---";
        let map = map_at(TEXT, &[]);
        let mut events = vec![hello_with_leak_scan(1, false)];
        let mut test = test_events(0, "unload_timer", &map, 300_000, false, true);
        let finished = test.pop().expect("test_finished");
        test.push(Event::Kmsg(KmsgRecord {
            seq: 900,
            level: 4,
            facility: 0,
            ts_us: 450_000,
            text: warning.replace('\n', "\\x0a"),
            caller: None,
        }));
        test.push(finished);
        events.extend(test);
        let (session, told) = drive_telling(&mut Recording::new(events, ""));
        assert_eq!(told, ["0 CRASH WARNING in __run_timers"]);
        assert!(
            session.verdicts[0].1.details[0].starts_with("this came after the module was unloaded"),
            "{:?}",
            session.verdicts[0].1.details
        );
    }

    #[test]
    fn a_second_load_refused_or_a_second_unload_refused_is_a_fail() {
        let map = map_at(TEXT, &[]);
        let refused = |errno: i32, name: &str, message: &str| OpResult::Failed {
            errno,
            name: name.into(),
            message: message.into(),
        };
        let mut events = vec![hello_with_leak_scan(2, false)];
        let mut test = test_events(0, "chrdev_left", &map, 1_000_000, true, true);
        for event in &mut test {
            if let Event::ModuleLoaded {
                result,
                reload: true,
                ..
            } = event
            {
                *result = refused(17, "EEXIST", "File exists");
            }
        }
        // What the module said when its second init failed (the last record is the second round's).
        if let Some(Event::Kmsg(record)) =
            test.iter_mut().rev().find(|e| matches!(e, Event::Kmsg(_)))
        {
            record.text = "chrdev_left: register_chrdev_region failed: -17".into();
        }
        test.retain(|e| !matches!(e, Event::ModuleUnloaded { reload: true, .. }));
        events.extend(test);
        let mut test = test_events(
            1,
            "busy",
            &map_at(TEXT + 0x10_000, &[]),
            2_000_000,
            true,
            true,
        );
        for event in &mut test {
            if let Event::ModuleUnloaded {
                result,
                reload: true,
                ..
            } = event
            {
                *result = refused(16, "EBUSY", "Device or resource busy");
            }
        }
        events.extend(test);
        let (_, told) = drive_telling(&mut Recording::new(events, ""));
        assert_eq!(
            told,
            [
                "0 FAIL loaded again after unload: chrdev_left was refused (EEXIST: File exists): \
                 the first unload left something behind; kernel: chrdev_left: \
                 register_chrdev_region failed: -17",
                "1 FAIL unloading again after a reload: busy was refused (EBUSY: Device or \
                 resource busy)",
            ]
        );
    }

    const KMEMLEAK: &str = "unreferenced object 0xffff888003900000 (size 256):
  comm \"kmodlab-load\", pid 36, jiffies 4294892641
  hex dump (first 32 bytes):
    5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a  ZZZZZZZZZZZZZZZZ
  backtrace (crc 5edaf73e):
    __kmalloc_cache_noprof+0x1b3/0x2f0
    0xffffffffa0000006
    0xffffffffa0006006
    do_one_initcall+0x5f/0x260
    do_init_module+0x5b/0x220
unreferenced object 0xffff888003900300 (size 256):
  comm \"kmodlab-load\", pid 39, jiffies 4294892785
  hex dump (first 32 bytes):
    5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a 5a  ZZZZZZZZZZZZZZZZ
  backtrace (crc 5edaf73e):
    __kmalloc_cache_noprof+0x1b3/0x2f0
    0xffffffffa0000006
    0xffffffffa0006006
    do_one_initcall+0x5f/0x260
unreferenced object 0xffff888002000000 (size 64):
  comm \"swapper/0\", pid 1, jiffies 4294667296
  backtrace (crc 0):
    [<ffffffff811c9a2e>] kmemleak_alloc+0x4e/0x90
    [<ffffffff81000a57>] do_one_initcall+0x47/0x2f0
";

    /// The scan's event never came whole (the guest powered off while sending it): the verdicts
    /// are told as they are, and say that leaks were not checked.
    #[test]
    fn verdicts_without_the_leak_scan_say_leaks_were_not_checked() {
        let leaky = map_at(TEXT, &[("leak_init_alloc", 0)]);
        let mut events = vec![hello_with_leak_scan(1, true)];
        events.extend(test_events(0, "leak_init", &leaky, 300_000, true, true));
        let (session, told) = drive_telling(&mut Recording::new(events, ""));
        assert_eq!(told, ["0 PASS "]);
        assert!(
            session.verdicts[0]
                .1
                .details
                .iter()
                .any(|d| d.contains("leaks were not checked")),
            "{:?}",
            session.verdicts[0].1.details
        );
    }

    #[test]
    fn leaks_are_charged_to_the_test_that_loaded_the_allocating_module() {
        let leaky = map_at(TEXT, &[("leak_init_alloc", 0), ("leak_init_init", 0x6000)]);
        let hello = map_at(TEXT + 0x10_000, &[]);
        let mut events = vec![hello_with_leak_scan(2, true)];
        events.extend(test_events(0, "leak_init", &leaky, 300_000, true, true));
        events.extend(test_events(1, "hello", &hello, 500_000, false, true));
        events.push(Event::LeakScan {
            report: KMEMLEAK.into(),
            duration_us: 6_200_000,
        });
        events.push(Event::Done);
        let (session, told) = drive_telling(&mut Recording::new(events, ""));
        // Held back until the scan, then told with the leak.
        assert_eq!(told, ["0 FAIL memory leak in leak_init_alloc", "1 PASS "]);
        let details = &session.verdicts[0].1.details;
        assert_eq!(
            details[..2],
            [
                "kmemleak found 2 unreferenced objects this test's modules allocated",
                "kmemleak: unreferenced object of 256 bytes allocated by leak_init"
            ]
        );
        assert!(
            details.contains(&"  0xffffffffa0000006".to_string()),
            "{details:?}"
        );
    }

    #[test]
    fn without_a_scan_held_verdicts_are_told_as_they_are_and_worse_verdicts_stay() {
        // The VM ended before the scan: the verdicts stand as judged.
        let map = map_at(TEXT, &[]);
        let mut events = vec![hello_with_leak_scan(1, true)];
        events.extend(test_events(0, "leak_init", &map, 300_000, false, true));
        let (_, told) = drive_telling(&mut Recording::new(events, ""));
        assert_eq!(told, ["0 PASS "]);
        // A test that already failed keeps its verdict, with the leak in its details.
        let mut verdicts = vec![(
            0,
            Verdict::new("m", "t", Outcome::Timeout, "the guest stopped answering"),
        )];
        let maps = [crate::judge::records::MappedModule {
            test: 0,
            module: "leak_init".into(),
            map: map_at(TEXT, &[("leak_init_alloc", 0)]),
            reload: false,
            mapped_at: 0,
            unloaded_at: Some(1),
            load_pid: None,
        }];
        let leaks = unload::leaks(KMEMLEAK, &maps.iter().collect::<Vec<_>>());
        assert_eq!(leaks.len(), 2, "the boot-time object is not a module's");
        charge_leaks(&mut verdicts, &leaks);
        let v = &verdicts[0].1;
        assert_eq!(v.outcome, Outcome::Timeout);
        assert_eq!(v.details[0], "also: memory leak in leak_init_alloc");
    }

    #[test]
    fn with_a_leak_scan_the_host_waits_for_it_after_the_last_test() {
        let map = map_at(TEXT, &[]);
        let mut script = vec![agent(hello_with_leak_scan(1, true))];
        script.extend(
            test_events(0, "leak_init", &map, 300_000, false, true)
                .into_iter()
                .map(agent),
        );
        script.push(None);
        let mut vm = Scripted::new(script);
        drive_quietly(&mut vm, None);
        assert_eq!(vm.deadlines.last(), Some(&(vm.at + LEAK_SCAN_WAIT)));
    }
}
