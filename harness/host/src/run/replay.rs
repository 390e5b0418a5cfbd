//! `parse` of a run folder: its `vmN.events.jsonl` files are what the agent recorded, so each test
//! is judged again by [`crate::judge::rules::judge`] through the same session logic `test` ran live
//! ([`session::drive`] over a [`Recording`]). The run keeps the tests' specs in [`PLAN_FILE`] when
//! it can; without that file the names come from `verdicts.json` and the spec is inferred from the
//! events (see [`inferred_spec`]).

use super::folder::{RunFolder, SavedTest, PLAN_FILE, VERDICTS_FILE};
use super::parse::Parsed;
use super::session::{self, Progress, Recording};
use crate::judge::records::TestRecord;
use crate::judge::verdict::{Outcome, Verdict};
use crate::spec::{ProgramSpec, TestSpec};
use anyhow::Result;
use kmodlab_protocol::{OpResult, WaitEnd};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Judges a run folder again from its recorded events.
pub fn run_folder(dir: &Path) -> Result<Parsed> {
    let folder = RunFolder::read(dir)?;
    let mut parsed = Parsed {
        run_folder: Some(dir.to_path_buf()),
        found_anything: true,
        ..Parsed::default()
    };
    if folder.plan.is_none() {
        parsed.notes.push(format!(
            "{} has no {PLAN_FILE}: names come from {VERDICTS_FILE}, and each test is judged \
             without its expect/forbid patterns, with `ktap` and the time limit read from its events",
            dir.display()
        ));
    }
    let judge = Replayed::new(&folder)?;
    let mut judged: BTreeMap<u32, Verdict> = BTreeMap::new();
    // Tests a VM ended from outside the guest interrupted: the first time, they ran again.
    let mut held_once = BTreeSet::new();
    for number in &folder.vms {
        let vm = folder.vm(*number)?;
        parsed.notes.extend(vm.notes);
        let mut recording = Recording::new(vm.events, &vm.console).ended(vm.qemu_end);
        let label = vm.label;
        let notes = &mut parsed.notes;
        let session = session::drive(&mut recording, &judge, None, &mut |progress| {
            if let Progress::AgentError(text) = progress {
                notes.push(format!("{label}: {text}"));
            }
        });
        if session.booted {
            parsed.vms += 1;
        }
        if parsed.kernel_release.is_none() {
            parsed.kernel_release = session.kernel_release;
        }
        // A test a crash or timeout cut short in one VM ran again in the next: the later counts.
        judged.extend(session.verdicts);
        if let Some((id, verdict)) = session.held {
            if !held_once.insert(id) {
                judged.insert(id, session::held_twice(verdict, &label));
            }
        }
    }
    parsed.verdicts = in_test_order(judged, &folder);
    Ok(parsed)
}

/// Every test's verdict by id: judged again from the events, else as the run recorded it (a
/// missing kernel option, an agent that ran nothing: no VM ran the test), else an ERROR.
fn in_test_order(mut judged: BTreeMap<u32, Verdict>, folder: &RunFolder) -> Vec<Verdict> {
    let recorded = &folder.verdicts;
    let mut ids: Vec<u32> = judged.keys().copied().collect();
    ids.extend(0..recorded.len() as u32);
    if let Some(plan) = &folder.plan {
        ids.extend(plan.keys().copied());
    }
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            judged
                .remove(&id)
                .or_else(|| recorded.get(id as usize).cloned())
                .unwrap_or_else(|| {
                    let (module, test) = folder.plan.as_ref().and_then(|p| p.get(&id)).map_or_else(
                        || ("unknown".to_string(), format!("test{id}")),
                        |t| (t.module.clone(), t.test.clone()),
                    );
                    Verdict::new(
                        &module,
                        &test,
                        Outcome::Error,
                        "planned, but no VM recorded it and the run wrote no verdict",
                    )
                })
        })
        .collect()
}

/// One planned test as the replay judges it.
struct Planned {
    module: String,
    spec: TestSpec,
    source_paths: Option<(PathBuf, PathBuf)>,
}

/// Judges a recorded test against its saved spec, or against one inferred from its events.
struct Replayed<'a> {
    plan: Option<BTreeMap<u32, Planned>>,
    recorded: &'a [Verdict],
}

impl<'a> Replayed<'a> {
    fn new(folder: &'a RunFolder) -> Result<Replayed<'a>> {
        let planned = |saved: &SavedTest| -> Result<(u32, Planned)> {
            Ok((
                saved.id,
                Planned {
                    module: saved.module.clone(),
                    spec: saved.spec()?,
                    source_paths: saved.build_copy.clone().zip(saved.source_dir.clone()),
                },
            ))
        };
        let plan = match &folder.plan {
            Some(plan) => Some(plan.values().map(planned).collect::<Result<_>>()?),
            None => None,
        };
        Ok(Replayed {
            plan,
            recorded: &folder.verdicts,
        })
    }
}

impl session::Judge for Replayed<'_> {
    /// A recording has no clock to hold a limit against; the spec's stands in.
    fn limit(&self, test: u32) -> Duration {
        self.plan
            .as_ref()
            .and_then(|p| p.get(&test))
            .map_or(Duration::from_secs(10), |p| p.spec.timeout)
    }

    fn judge(&self, record: &TestRecord) -> Option<Verdict> {
        let id = record.id;
        if let Some(planned) = self.plan.as_ref().and_then(|p| p.get(&id)) {
            return Some(super::judge_in_user_paths(
                &planned.module,
                &planned.spec,
                record,
                planned.source_paths.as_ref(),
            ));
        }
        let (module, test) = match self.recorded.get(id as usize) {
            Some(v) => (v.module.clone(), v.test.clone()),
            None => (
                record
                    .loads
                    .last()
                    .map_or_else(|| "unknown".to_string(), |(m, _)| m.clone()),
                format!("test{id}"),
            ),
        };
        let spec = inferred_spec(&test, record);
        Some(super::judge_in_user_paths(&module, &spec, record, None))
    }
}

/// The spec a test is judged against when the run folder did not keep it: no expect or forbid
/// patterns, KTAP awaited when the agent waited for KTAP, and the time limit the agent enforced
/// (it stops a load or wait at the limit, so their durations show it, rounded to whole seconds).
/// The programs it ran are expected to exit 0; a timed-out one's limit is its duration.
pub fn inferred_spec(name: &str, record: &TestRecord) -> TestSpec {
    let ktap = matches!(
        record.wait,
        Some(WaitEnd::KtapComplete) | Some(WaitEnd::TimedOut)
    );
    let timed_out = record.wait == Some(WaitEnd::TimedOut)
        || record
            .loads
            .iter()
            .any(|(_, r)| matches!(r, OpResult::TimedOut));
    let timeout = if timed_out && !record.duration.is_zero() {
        Duration::from_secs((record.duration.as_secs_f64().round() as u64).max(1))
    } else {
        Duration::from_secs(10)
    };
    TestSpec {
        name: name.to_string(),
        load: record.loads.iter().map(|(m, _)| m.clone()).collect(),
        params: String::new(),
        ktap,
        settle: Duration::from_millis(50),
        timeout,
        after_unload: Duration::ZERO,
        reload: !record.reloads.is_empty(),
        expect: vec![],
        forbid: vec![],
        run: record
            .programs
            .iter()
            .map(|p| ProgramSpec {
                program: p.program.clone(),
                args: vec![],
                exit: 0,
                expect: vec![],
                forbid: vec![],
                timeout: p
                    .timed_out
                    .then(|| Duration::from_secs((p.duration.as_secs_f64().round() as u64).max(1))),
            })
            .collect(),
        // Without the spec a refused load cannot be told from an expected refusal: it is an ERROR.
        load_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::folder::{save_plan, SavedProgram};
    use super::super::parse::parse_path;
    use super::*;
    use kmodlab_protocol::Event;
    use regex::Regex;

    fn data(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(path)
    }

    fn lines(parsed: &Parsed) -> Vec<String> {
        crate::test_support::verdict_lines(&parsed.verdicts)
    }

    const RUN: &str = "runs/hello_ktap_fail_warn_hang";

    #[test]
    fn a_run_folder_is_judged_again_to_the_verdicts_it_recorded() {
        let parsed = run_folder(&data(RUN)).expect("run folder parses");
        let recorded: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(data(RUN).join(VERDICTS_FILE)).expect("verdicts.json"),
        )
        .expect("JSON");
        let recorded: Vec<String> = recorded
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| {
                format!(
                    "{}/{} {} {}",
                    v["module"].as_str().unwrap_or(""),
                    v["test"].as_str().unwrap_or(""),
                    v["outcome"].as_str().unwrap_or(""),
                    v["reason"].as_str().unwrap_or("")
                )
                .trim_end()
                .to_string()
            })
            .collect();
        assert_eq!(lines(&parsed), recorded);
        assert_eq!(
            lines(&parsed),
            [
                "hello/greets PASS",
                "ktap_fail/reports_not_ok FAIL not ok 2 arithmetic_is_broken: check failed: 2 + delta == 4 (ktap_fail.c:21)",
                "warn_init/warns CRASH WARNING in warn_init_trigger",
                "init_hang/hangs TIMEOUT load: init_hang's init did not return within 3s",
            ]
        );
        assert_eq!(parsed.vms, 2);
        assert_eq!(parsed.kernel_release.as_deref(), Some("6.12.117"));
        assert!(
            parsed.notes.iter().any(|n| n.contains(PLAN_FILE)),
            "{:?}",
            parsed.notes
        );
        let crash = &parsed.verdicts[2];
        assert!(crash.details.iter().any(|d| d.starts_with("WARNING: CPU:")));
        assert!(crash.log.iter().any(|l| l.contains("warn_init_init+0x5")));
        // The test that started in vm1 after the crash was judged from vm2, where it ran again.
        assert_eq!(
            parsed.verdicts[3].duration,
            Duration::from_micros(3_000_187)
        );
    }

    #[test]
    fn a_saved_plan_brings_back_the_specs_and_the_users_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(data(RUN)).expect("data") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let folders = [
            root.join("modules/hello"),
            root.join("tests/fixtures/ktap_fail"),
            root.join("tests/fixtures/warn_init"),
            root.join("tests/fixtures/init_hang"),
        ];
        // Where this run built warn_init (it shows in the crash report).
        let copy = PathBuf::from(
            "/root/.cache/kmodlab/modules/a0b136b7955cbaa0/warn_init-8be88deb/warn_init",
        );
        let stricter = Regex::new("Hello, nobody").expect("regex");
        let mut plan = Vec::new();
        for (id, folder) in folders.iter().enumerate() {
            let spec = crate::spec::load(folder).expect("spec");
            let mut test = spec.tests[0].clone();
            if id == 0 {
                // The same facts against a stricter spec: the saved spec is what judges.
                test.expect = vec![stricter.clone()];
            }
            let paths = (copy.clone(), folder.clone());
            let mut saved = SavedTest::new(id as u32, &spec.name, &test, Some(&paths));
            if id == 3 {
                saved.timeout_ms = 3000;
            }
            plan.push(saved);
        }
        plan.push(SavedTest {
            id: 4,
            test: "never_ran".into(),
            ..plan[0].clone()
        });
        save_plan(dir.path(), &plan).expect("plan saved");
        let reread: Vec<SavedTest> = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(PLAN_FILE)).expect("plan.json"),
        )
        .expect("plan.json reads back");
        assert_eq!(reread, plan);

        let parsed = run_folder(dir.path()).expect("parses");
        assert!(parsed.notes.is_empty(), "{:?}", parsed.notes);
        assert_eq!(
            lines(&parsed),
            [
                "hello/greets FAIL expected /Hello, nobody/ in the kernel log; it never appeared",
                "ktap_fail/reports_not_ok FAIL not ok 2 arithmetic_is_broken: check failed: 2 + delta == 4 (ktap_fail.c:21)",
                "warn_init/warns CRASH WARNING in warn_init_trigger",
                "init_hang/hangs TIMEOUT load: init_hang's init did not return within 3s",
                "hello/never_ran ERROR planned, but no VM recorded it and the run wrote no verdict",
            ]
        );
        let warning = parsed.verdicts[2]
            .details
            .iter()
            .find(|d| d.starts_with("WARNING: CPU:"))
            .expect("the marker line");
        assert!(
            warning.contains("fixtures/warn_init/warn_init.c:12") && !warning.contains(".cache"),
            "{warning}"
        );
    }

    #[test]
    fn programs_are_judged_again_with_or_without_the_saved_plan() {
        use kmodlab_protocol::KmsgRecord;
        let dir = tempfile::tempdir().expect("tempdir");
        let program = |test: u32, name: &str, exit: Option<i32>, timed_out: bool, us: u64| {
            Event::ProgramFinished {
                test,
                program: name.into(),
                exit_code: exit,
                signal: timed_out.then(|| "SIGKILL".to_string()),
                timed_out,
                output: "read back: hello\nFAILED: ioctl INFO (line 3)\n".into(),
                duration_us: us,
                pid: None,
            }
        };
        let mut events = vec![Event::Hello {
            agent_version: "0.1.0".into(),
            kernel_release: "6.12.117".into(),
            uptime_ms: 500,
            tests: 2,
            leak_scan: false,
        }];
        for (test, run) in [
            (0, program(0, "chardev_test", Some(1), false, 40_000)),
            (1, program(1, "hang", None, true, 2_001_000)),
        ] {
            events.extend([
                Event::TestStarted { test, taint: 0 },
                Event::ModuleLoaded {
                    test,
                    module: "kmodlab_chardev".into(),
                    result: OpResult::Ok,
                    duration_us: 900,
                    reload: false,
                    pid: None,
                },
                Event::Kmsg(KmsgRecord {
                    seq: u64::from(test),
                    level: 6,
                    facility: 0,
                    ts_us: 1000,
                    text: "kmodlab_chardev: registered".into(),
                    caller: None,
                }),
                Event::WaitEnded {
                    test,
                    end: WaitEnd::Settled,
                    duration_us: 50_000,
                },
                run,
                Event::ModuleUnloaded {
                    test,
                    module: "kmodlab_chardev".into(),
                    result: OpResult::Ok,
                    duration_us: 300,
                    reload: false,
                    pid: None,
                },
                Event::TestFinished {
                    test,
                    taint: 4096,
                    duration_us: 100_000,
                },
            ]);
        }
        events.push(Event::Done);
        let jsonl: String = events.iter().map(|e| e.to_line() + "\n").collect();
        std::fs::write(dir.path().join("vm1.events.jsonl"), jsonl).expect("events");

        // No plan.json: each program is expected to exit 0, and a killed one's limit is its duration.
        let parsed = run_folder(dir.path()).expect("parses");
        assert_eq!(
            lines(&parsed),
            [
                "kmodlab_chardev/test0 FAIL chardev_test exited 1, expected 0",
                "kmodlab_chardev/test1 TIMEOUT program hang did not finish within 2s",
            ]
        );

        // With it: the saved exit status, patterns and limits judge.
        let spec = |name: &str, run: Vec<SavedProgram>| SavedTest {
            id: 0,
            module: "chardev".into(),
            test: name.into(),
            load: vec!["kmodlab_chardev".into()],
            params: String::new(),
            ktap: false,
            settle_ms: 50,
            after_unload_ms: 0,
            reload: false,
            timeout_ms: 10_000,
            expect: vec![],
            forbid: vec![],
            build_copy: None,
            source_dir: None,
            run,
            load_error: None,
        };
        let saved =
            |program: &str, exit: i32, forbid: &[&str], timeout_ms: Option<u64>| SavedProgram {
                program: program.into(),
                args: vec!["/dev/kmodlab_chardev".into()],
                exit,
                expect: vec!["^read back: hello$".into()],
                forbid: forbid.iter().map(|f| f.to_string()).collect(),
                timeout_ms,
            };
        let plan = vec![
            spec(
                "exits_one",
                vec![saved("chardev_test", 1, &["FAILED"], None)],
            ),
            SavedTest {
                id: 1,
                ..spec("hangs", vec![saved("hang", 0, &[], Some(2000))])
            },
        ];
        save_plan(dir.path(), &plan).expect("plan");
        let reread: Vec<SavedTest> = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(PLAN_FILE)).expect("plan.json"),
        )
        .expect("reads back");
        assert_eq!(reread, plan);
        let parsed = run_folder(dir.path()).expect("parses");
        assert_eq!(
            lines(&parsed),
            [
                "chardev/exits_one FAIL chardev_test: forbidden /FAILED/ appeared: FAILED: ioctl INFO (line 3)",
                "chardev/hangs TIMEOUT program hang did not finish within 2s",
            ]
        );
        // A plan.json from before companions has no `run`: its tests ran no programs.
        let old: SavedTest = serde_json::from_str(
            r#"{"id":0,"module":"m","test":"t","load":["m"],"params":"","ktap":false,
                "settle_ms":50,"timeout_ms":1000,"expect":[],"forbid":[]}"#,
        )
        .expect("old plan entry");
        assert!(old.run.is_empty());
    }

    #[test]
    fn a_saved_load_error_judges_the_refusal_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let refused = OpResult::Failed {
            errno: 22,
            name: "EINVAL".into(),
            message: "Invalid argument".into(),
        };
        let events = [
            Event::Hello {
                agent_version: "0.1.0".into(),
                kernel_release: "6.12.117".into(),
                uptime_ms: 500,
                tests: 1,
                leak_scan: false,
            },
            Event::TestStarted { test: 0, taint: 0 },
            Event::ModuleLoaded {
                test: 0,
                module: "params_demo".into(),
                result: refused,
                duration_us: 900,
                reload: false,
                pid: None,
            },
            Event::WaitEnded {
                test: 0,
                end: WaitEnd::NotLoaded,
                duration_us: 0,
            },
            Event::TestFinished {
                test: 0,
                taint: 4096,
                duration_us: 2_000,
            },
            Event::Done,
        ];
        let jsonl: String = events.iter().map(|e| e.to_line() + "\n").collect();
        std::fs::write(dir.path().join("vm1.events.jsonl"), jsonl).expect("events");
        std::fs::write(dir.path().join("verdicts.json"), "[]").expect("verdicts");
        // Without the plan, the refusal is the ERROR any refused load is.
        let parsed = run_folder(dir.path()).expect("parses");
        assert_eq!(
            lines(&parsed),
            ["params_demo/test0 ERROR load params_demo: EINVAL (Invalid argument)"]
        );

        let spec = crate::spec::TestSpec {
            params: "level=99".into(),
            load_error: Some(nix::errno::Errno::EINVAL),
            ..crate::spec::TestSpec::load_and_unload("refuses", vec!["params_demo".into()])
        };
        let saved = SavedTest::new(0, "params", &spec, None);
        assert_eq!(saved.load_error.as_deref(), Some("EINVAL"));
        save_plan(dir.path(), std::slice::from_ref(&saved)).expect("plan");
        let text = std::fs::read_to_string(dir.path().join(PLAN_FILE)).expect("plan.json");
        assert!(text.contains(r#""load_error": "EINVAL""#), "{text}");
        let reread: Vec<SavedTest> = serde_json::from_str(&text).expect("reads back");
        assert_eq!(reread, std::slice::from_ref(&saved));
        assert_eq!(reread[0].spec().expect("spec").load_error, spec.load_error);
        let parsed = run_folder(dir.path()).expect("parses");
        assert_eq!(lines(&parsed), ["params/refuses PASS"]);
        // Another expectation judges the same facts differently.
        let enoent = SavedTest {
            load_error: Some("ENOENT".into()),
            ..saved.clone()
        };
        save_plan(dir.path(), &[enoent]).expect("plan");
        let parsed = run_folder(dir.path()).expect("parses");
        assert_eq!(
            lines(&parsed),
            ["params/refuses FAIL load params_demo: EINVAL, expected ENOENT"]
        );
        // Tests without it keep plan.json as it was; a name this version does not know is an error.
        let plain = SavedTest::new(
            0,
            "params",
            &crate::spec::TestSpec {
                load_error: None,
                ..spec
            },
            None,
        );
        assert!(!serde_json::to_string(&plain)
            .expect("json")
            .contains("load_error"));
        let bogus = SavedTest {
            load_error: Some("EBOGUS".into()),
            ..saved
        };
        let e = format!("{:#}", bogus.spec().expect_err("unknown name"));
        assert!(
            e.contains("plan.json: params/refuses load_error: unknown errno name `EBOGUS`"),
            "{e}"
        );
    }

    #[test]
    fn a_folder_that_is_no_run_folder_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = run_folder(dir.path()).expect_err("refused").to_string();
        assert!(error.contains("not a kmodlab run folder"), "{error}");
        assert!(parse_path(&dir.path().join("absent.log")).is_err());
    }
}
