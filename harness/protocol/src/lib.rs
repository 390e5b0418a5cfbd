//! The contract between the kmodlab host and the guest agent.
//!
//! The host writes a [`Plan`] into the initramfs, or sends it to a VM restored from a snapshot
//! ([`payload`]); the agent answers
//! with [`Event`]s, one JSON object per line, on its own serial port. The agent only records facts;
//! every judgement (pass, fail, crash title) is made on the host from these events.

pub mod ktap;
pub mod payload;

use serde::{Deserialize, Serialize};

/// Where the host puts the plan inside the initramfs.
pub const PLAN_PATH: &str = "/kmodlab/plan.json";
/// The guest side of the agent channel: the second 16550 UART.
pub const AGENT_PORT: &str = "/dev/ttyS1";

/// Everything the agent needs to run, in order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub tests: Vec<PlannedTest>,
}

/// One test: load these modules in order, wait, unload them in reverse order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PlannedTest {
    /// The host's index for this test; every event about it carries it.
    pub id: u32,
    /// Display name, e.g. `hello/greets`.
    pub name: String,
    pub modules: Vec<ModuleLoad>,
    /// Wait for a complete KTAP document after loading (else wait `settle_ms`).
    pub ktap: bool,
    /// Quiet time after loading (and after KTAP completes) for late messages, in milliseconds.
    pub settle_ms: u64,
    /// Limit for loading plus waiting; past it the agent reports a timeout and runs nothing more.
    pub timeout_ms: u64,
    /// Programs to run, in order, once the modules are loaded and the wait is over, before the
    /// unload. Absent in plans written before companions existed.
    #[serde(default)]
    pub run: Vec<ProgramRun>,
    /// How long the agent keeps reading the kernel log after each unload, before the test ends:
    /// a timer or work item the module left behind fires into freed code within it, and the
    /// crash is this test's. Absent (0) in plans written before it existed.
    #[serde(default)]
    pub after_unload_ms: u64,
    /// Load, unload, then load and unload again: a second load that is refused, warns or crashes
    /// shows that the first unload left something behind. The second round neither waits for
    /// KTAP nor runs programs.
    #[serde(default)]
    pub reload: bool,
}

/// A user-space program the agent runs during a test (a module's companion).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ProgramRun {
    /// The name events and verdicts use, e.g. `chardev_test`.
    pub name: String,
    /// The executable inside the guest.
    pub path: String,
    pub args: Vec<String>,
    /// Past this the agent kills the program (SIGKILL) and reports it as timed out.
    pub timeout_ms: u64,
}

/// The most output the agent keeps of one program: its first [`OUTPUT_HEAD`] bytes and its last
/// [`OUTPUT_TAIL`], with a line between them saying how much was left out.
pub const OUTPUT_HEAD: usize = 48 * 1024;
pub const OUTPUT_TAIL: usize = 16 * 1024;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ModuleLoad {
    /// Module name as the kernel knows it (for `delete_module`).
    pub name: String,
    /// Path of the `.ko` inside the guest.
    pub path: String,
    /// Parameters as `finit_module` takes them: `a=1 b=text`.
    pub params: String,
}

/// Where a loaded module lies in kernel memory: its allocated sections and functions, as
/// addresses, so that a report naming an address after the module is gone can still name the
/// module and its function.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct ModuleMap {
    /// Sections the kernel allocated (`.text`, `.init.text`, `.data`, `.bss`, ...).
    pub sections: Vec<AddressRange>,
    /// Functions, from the module's symbol table.
    pub functions: Vec<AddressRange>,
}

/// A named range of kernel addresses.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AddressRange {
    pub name: String,
    pub start: u64,
    pub size: u64,
}

impl AddressRange {
    pub fn contains(&self, address: u64) -> bool {
        address >= self.start && address - self.start < self.size.max(1)
    }
}

impl ModuleMap {
    /// Whether `address` lies in one of the module's sections.
    pub fn contains(&self, address: u64) -> bool {
        self.sections.iter().any(|s| s.contains(address))
    }

    /// The function `address` lies in, and the offset into it.
    pub fn function_at(&self, address: u64) -> Option<(&str, u64)> {
        self.functions
            .iter()
            .find(|f| f.contains(address))
            .map(|f| (f.name.as_str(), address - f.start))
    }
}

/// How a load or unload went.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OpResult {
    Ok,
    /// The syscall failed: errno number, its symbolic name and description.
    Failed {
        errno: i32,
        name: String,
        message: String,
    },
    /// The syscall did not return within the test's limit.
    TimedOut,
    /// The helper process doing the syscall died (e.g. killed by an oops) before it returned.
    Died {
        signal: String,
    },
}

/// Why the agent stopped waiting after the load.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WaitEnd {
    /// The module's KTAP document had all its results.
    KtapComplete,
    /// No KTAP expected; the settle time passed.
    Settled,
    /// The test's time limit passed first.
    TimedOut,
    /// Loading failed, so there was nothing to wait for.
    NotLoaded,
}

/// One record of the kernel log, as `/dev/kmsg` gives it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct KmsgRecord {
    pub seq: u64,
    /// Syslog level, 0 (emerg) to 7 (debug).
    pub level: u8,
    pub facility: u8,
    /// Microseconds since boot.
    pub ts_us: u64,
    pub text: String,
    /// Who printed it, on kernels with `CONFIG_PRINTK_CALLER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
}

/// Who printed a kernel record, and on which CPU.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "context", rename_all = "snake_case")]
pub enum Caller {
    /// Interrupt context (hard or soft: timers, tasklets, BH work): the kernel names the CPU itself.
    Interrupt { cpu: u32 },
    /// Task context: the kernel names the thread. `cpu` is the CPU the thread was on when the
    /// agent read the record (exact for per-CPU workers and bound kthreads, a good guess for the
    /// rest), `comm` its name then; both are `None` when the thread had already exited.
    Task {
        pid: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comm: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu: Option<u32>,
    },
}

impl Caller {
    /// The CPU the record was printed on, as far as it is known.
    pub fn cpu(&self) -> Option<u32> {
        match self {
            Caller::Interrupt { cpu } => Some(*cpu),
            Caller::Task { cpu, .. } => *cpu,
        }
    }
}

impl KmsgRecord {
    /// The record's lines: one printk with embedded newlines is one record, and /dev/kmsg escapes
    /// each newline as `\x0a` (backslashes are escaped too, so the sequence is unambiguous).
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split("\\x0a")
    }
}

/// What the agent reports. One JSON object per line, tagged by `event`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The agent is up, found no plan in its initramfs and waits for a [`payload`]: the moment
    /// the host saves a snapshot of the VM.
    Waiting {
        agent_version: String,
        uptime_ms: u64,
    },
    /// The agent is up and has read its plan.
    Hello {
        agent_version: String,
        kernel_release: String,
        uptime_ms: u64,
        tests: u32,
        /// The kernel has kmemleak and the agent will scan for leaks after the last test
        /// ([`Event::LeakScan`]).
        #[serde(default, skip_serializing_if = "is_false")]
        leak_scan: bool,
    },
    TestStarted {
        test: u32,
        taint: u64,
    },
    ModuleLoaded {
        test: u32,
        module: String,
        result: OpResult,
        duration_us: u64,
        /// The second load of a test with [`PlannedTest::reload`].
        #[serde(default, skip_serializing_if = "is_false")]
        reload: bool,
        /// The process that made the syscall (`comm "kmodlab-load", pid N` in kernel reports,
        /// kmemleak's among them); absent when it could not be started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// The second round of a test with [`PlannedTest::reload`] begins: what the kernel prints
    /// from here on came from loading the modules again.
    Reloading {
        test: u32,
    },
    /// Where a module just loaded lies in memory (sent after a successful load).
    ModuleMapped {
        test: u32,
        module: String,
        map: ModuleMap,
    },
    /// A kernel log record, sent as soon as the agent read it.
    Kmsg(KmsgRecord),
    WaitEnded {
        test: u32,
        end: WaitEnd,
        duration_us: u64,
    },
    ModuleUnloaded {
        test: u32,
        module: String,
        result: OpResult,
        duration_us: u64,
        /// The unload after the second load of a test with [`PlannedTest::reload`].
        #[serde(default, skip_serializing_if = "is_false")]
        reload: bool,
        /// The process that made the syscall, as for [`Event::ModuleLoaded`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// After the last test, kmemleak's report of unreferenced objects (empty when none), read
    /// once the objects the tests allocated were old enough for kmemleak to consider.
    LeakScan {
        report: String,
        duration_us: u64,
    },
    /// A program of the test's `run` list ended (or was killed); what it printed, stdout and stderr
    /// interleaved as written, bounded (see [`OUTPUT_HEAD`]).
    ProgramFinished {
        test: u32,
        /// The [`ProgramRun::name`].
        program: String,
        /// Its exit status, when it exited.
        #[serde(default)]
        exit_code: Option<i32>,
        /// The signal that ended it (e.g. `SIGSEGV`, or `SIGKILL` after a timeout), when one did.
        #[serde(default)]
        signal: Option<String>,
        /// It did not end within its limit and was killed.
        #[serde(default)]
        timed_out: bool,
        /// stdout and stderr as one stream. When the program could not be started at all (no
        /// exit code, no signal) this says why.
        #[serde(default)]
        output: String,
        #[serde(default)]
        duration_us: u64,
        /// Its process id, when it started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    TestFinished {
        test: u32,
        taint: u64,
        duration_us: u64,
    },
    /// Something in the agent itself went wrong; `context` says what it was doing.
    AgentError {
        context: String,
        message: String,
    },
    /// The agent has run the whole plan (or stopped after a timeout) and will do nothing more.
    Done,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Event {
    /// The line sent on the channel (without its newline).
    pub fn to_line(&self) -> String {
        // Serialising these plain types cannot fail; fall back to a valid event rather than panic.
        serde_json::to_string(self).unwrap_or_else(|e| Event::encoding_failed(&e.to_string()))
    }

    /// The line of an [`Event::AgentError`] saying that an event could not be encoded, with
    /// `message` escaped as JSON wants it.
    fn encoding_failed(message: &str) -> String {
        let error = Event::AgentError {
            context: "encode event".to_string(),
            message: message.to_string(),
        };
        // Two strings always encode; should even that fail, a fixed line is still a valid event.
        serde_json::to_string(&error).unwrap_or_else(|_| {
            r#"{"event":"agent_error","context":"encode event","message":"unknown"}"#.to_string()
        })
    }

    /// Parses one line from the channel; tolerates the serial line's `\r`.
    pub fn from_line(line: &str) -> Result<Event, serde_json::Error> {
        serde_json::from_str(line.trim_end_matches(['\r', '\n']))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_a_line() {
        let events = [
            Event::Hello {
                agent_version: "0.1.0".into(),
                kernel_release: "6.12.117".into(),
                uptime_ms: 310,
                tests: 2,
                leak_scan: true,
            },
            Event::ModuleLoaded {
                test: 1,
                module: "hello".into(),
                result: OpResult::Failed {
                    errno: 2,
                    name: "ENOENT".into(),
                    message: "No such file".into(),
                },
                duration_us: 1200,
                reload: true,
                pid: Some(38),
            },
            Event::ModuleMapped {
                test: 1,
                module: "hello".into(),
                map: ModuleMap {
                    sections: vec![AddressRange {
                        name: ".text".into(),
                        start: 0xffff_ffff_c000_0000,
                        size: 0x200,
                    }],
                    functions: vec![],
                },
            },
            Event::Reloading { test: 1 },
            Event::LeakScan {
                report: "unreferenced object 0xffff888003e5e000 (size 64):".into(),
                duration_us: 9,
            },
            Event::Kmsg(KmsgRecord {
                seq: 9,
                level: 6,
                facility: 0,
                ts_us: 42,
                text: "x: \"quoted\"".into(),
                caller: Some(Caller::Task {
                    pid: 71,
                    comm: Some("kworker/1:1".into()),
                    cpu: Some(1),
                }),
            }),
            Event::WaitEnded {
                test: 1,
                end: WaitEnd::KtapComplete,
                duration_us: 5,
            },
            Event::ProgramFinished {
                test: 1,
                program: "chardev_test".into(),
                exit_code: Some(1),
                signal: None,
                timed_out: false,
                output: "read back: \"x\"\nFAILED\n".into(),
                duration_us: 900,
                pid: Some(40),
            },
            Event::Done,
        ];
        let multi = KmsgRecord {
            seq: 1,
            level: 6,
            facility: 0,
            ts_us: 0,
            text: r"KTAP version 1\x0a1..1".into(),
            caller: None,
        };
        assert_eq!(
            multi.lines().collect::<Vec<_>>(),
            ["KTAP version 1", "1..1"]
        );
        for event in events {
            let line = event.to_line();
            assert!(!line.contains('\n'));
            assert_eq!(
                Event::from_line(&format!("{line}\r\n")).expect("parses"),
                event
            );
        }
    }

    #[test]
    fn a_map_names_the_function_an_address_falls_in() {
        let map = ModuleMap {
            sections: vec![AddressRange {
                name: ".text".into(),
                start: 0x1000,
                size: 0x100,
            }],
            functions: vec![
                AddressRange {
                    name: "a".into(),
                    start: 0x1000,
                    size: 0x40,
                },
                AddressRange {
                    name: "b".into(),
                    start: 0x1040,
                    size: 0x20,
                },
            ],
        };
        assert!(map.contains(0x1000) && map.contains(0x10ff));
        assert!(!map.contains(0xfff) && !map.contains(0x1100));
        assert_eq!(map.function_at(0x1044), Some(("b", 4)));
        assert_eq!(map.function_at(0x1080), None);
    }

    #[test]
    fn an_encoding_error_is_a_valid_event_whatever_its_message_says() {
        let message = "key \"a\\b\"\nmust be a string\t\u{1}";
        let line = Event::encoding_failed(message);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(
            Event::from_line(&line).expect("parses"),
            Event::AgentError {
                context: "encode event".into(),
                message: message.into(),
            }
        );
    }

    #[test]
    fn plans_and_events_from_before_companions_still_parse() {
        let test: PlannedTest = serde_json::from_str(
            r#"{"id":1,"name":"a/b","modules":[],"ktap":false,"settle_ms":50,"timeout_ms":1000}"#,
        )
        .expect("an old planned test parses");
        assert!(test.run.is_empty());
        let event = Event::from_line(r#"{"event":"program_finished","test":2,"program":"p"}"#)
            .expect("a sparse event parses");
        assert_eq!(
            event,
            Event::ProgramFinished {
                test: 2,
                program: "p".into(),
                exit_code: None,
                signal: None,
                timed_out: false,
                output: String::new(),
                duration_us: 0,
                pid: None,
            }
        );
    }
}
