//! Running the plan: load, wait, unload, and forward every kernel log record as it appears.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use kmodlab_protocol::ktap::Completion;
use kmodlab_protocol::{Event, OpResult, Plan, PlannedTest, WaitEnd};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::channel::Channel;
use crate::helper::{self, Helper, HelperOp};
use crate::kmsg::{Kmsg, Read1};
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

    pub fn run_plan(&mut self, plan: &Plan) {
        for test in &plan.tests {
            if self.run_test(test) == Flow::Stop {
                break;
            }
        }
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
                Ok(Read1::Record(record)) => {
                    if let Some(ktap) = self.ktap.as_mut() {
                        for line in record.lines() {
                            ktap.feed(line);
                        }
                    }
                    if record.level <= self.max_level {
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
        child: Option<BorrowedFd<'_>>,
        tick: Option<Duration>,
    ) {
        let mut timeout = until.saturating_duration_since(Instant::now());
        if let Some(tick) = tick {
            timeout = timeout.min(tick);
        }
        // Round up so a sub-millisecond remainder does not spin with a zero timeout.
        let ms = timeout.as_micros().div_ceil(1000);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = Vec::with_capacity(2);
        if let Some(kmsg) = self.kmsg.as_ref() {
            fds.push(PollFd::new(kmsg.fd(), PollFlags::POLLIN));
        }
        if let Some(child) = child {
            fds.push(PollFd::new(child, PollFlags::POLLIN));
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
                self.sleep_until_event(until, None, None);
            }
        }
    }

    /// Runs one helper syscall, forwarding kernel records meanwhile, and says how it went.
    fn run_helper(&mut self, op: &HelperOp, deadline: Instant) -> (OpResult, u64) {
        let started = Instant::now();
        let result = match op.spawn() {
            Ok(child) => self.wait_child(child, deadline),
            Err(e) => {
                self.channel
                    .error("start helper process", format!("{op:?}: {e}"));
                helper::failed(e.raw_os_error().unwrap_or(libc::EIO))
            }
        };
        (result, micros(started.elapsed()))
    }

    fn wait_child(&mut self, child: Helper, deadline: Instant) -> OpResult {
        let pidfd = pidfd_open(child.pid().as_raw());
        // Without a pidfd nothing wakes us when the child exits, so look often.
        let tick = if pidfd.is_some() {
            None
        } else {
            Some(CHILD_TICK)
        };
        loop {
            let status = child.try_wait();
            // Whatever the child made the kernel print is in the log by the time it has exited.
            let more = self.drain_kmsg();
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
            if Instant::now() >= deadline {
                // The child is stuck in the kernel; it cannot be killed there, so leave it.
                return OpResult::TimedOut;
            }
            if !more {
                self.sleep_until_event(deadline, pidfd.as_ref().map(|fd| fd.as_fd()), tick);
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
        let mut loaded = Vec::new();
        for module in &test.modules {
            let op = HelperOp::Load {
                path: module.path.clone(),
                params: module.params.clone(),
            };
            let (result, duration_us) = self.run_helper(&op, deadline);
            self.channel.send(&Event::ModuleLoaded {
                test: test.id,
                module: module.name.clone(),
                result: result.clone(),
                duration_us,
            });
            match result {
                OpResult::Ok => loaded.push(module.name.as_str()),
                OpResult::Failed { .. } => {
                    self.wait_ended(test, WaitEnd::NotLoaded, 0);
                    return self.unload(test, &loaded, deadline);
                }
                // A hung or killed init leaves the kernel in a bad state: unloading could hang or
                // crash it further, so leave everything as it is for the host to look at.
                OpResult::TimedOut => {
                    self.wait_ended(test, WaitEnd::TimedOut, 0);
                    return Flow::Stop;
                }
                OpResult::Died { .. } => {
                    self.wait_ended(test, WaitEnd::NotLoaded, 0);
                    return Flow::Stop;
                }
            }
        }

        let (end, duration_us) = self.wait(test, deadline);
        self.wait_ended(test, end, duration_us);
        if end == WaitEnd::TimedOut {
            return Flow::Stop;
        }
        self.unload(test, &loaded, deadline)
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
    fn unload(&mut self, test: &PlannedTest, loaded: &[&str], deadline: Instant) -> Flow {
        for name in loaded.iter().rev() {
            let now = Instant::now();
            let limit = deadline.max(now.checked_add(UNLOAD_MIN).unwrap_or(deadline));
            let op = HelperOp::Unload {
                name: name.to_string(),
            };
            let (result, duration_us) = self.run_helper(&op, limit);
            let stop = matches!(result, OpResult::TimedOut | OpResult::Died { .. });
            self.channel.send(&Event::ModuleUnloaded {
                test: test.id,
                module: name.to_string(),
                result,
                duration_us,
            });
            if stop {
                return Flow::Stop;
            }
        }
        Flow::Next
    }

    fn taint(&mut self) -> u64 {
        system::taint().unwrap_or_else(|e| {
            self.channel.error("read taint", e);
            0
        })
    }
}

/// A pidfd for the child: readable once it exits, so `poll` wakes at once instead of on a timer.
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
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
