//! Folders without a spec: `kmodlab test` inside one builds it, tests each `.ko` it produced
//! (dependencies loaded first, in depmod's order), and gives each `.ko` that did not build its own
//! ERROR; `kmodlab init` writes what it found as a spec.

use kmodlab::cli::{Context, EXIT_FAIL, EXIT_PASS, EXIT_UNABLE};
use kmodlab::judge::verdict::Outcome;
use kmodlab::spec::select;
use kmodlab_e2e::{assert_outcome, context, fixture, kmodlab_in, run_selection, verdict};
use std::path::Path;

/// The context of the standalone `kmodlab` run inside `dir`: its modules folder is the current one.
fn inside(dir: &Path) -> Context {
    Context {
        modules_dir: dir.to_path_buf(),
        ..context()
    }
}

#[test]
fn a_folder_without_a_spec_passes_each_module_with_its_dependency_loaded_first() {
    let dir = fixture("zero-config-pair");
    let dir = Path::new(&dir);
    // `kmodlab test` with no names, inside the folder.
    let selection = select::select(dir, &[]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(selection.len(), 1);
    assert!(selection[0].spec.discovered);
    let report = run_selection(selection, &Default::default());
    assert_eq!(report.verdicts.len(), 2, "one test per .ko");
    let user = verdict(&report, "zero-config-pair/a_user (a-user.ko)");
    assert_outcome(user, Outcome::Pass);
    assert_outcome(
        verdict(&report, "zero-config-pair/a_core (a-core.ko)"),
        Outcome::Pass,
    );
    // a-user loads only after a-core (its symbol is a-core's): the pass is the proof, and its
    // window shows the value it got.
    let log = user.log.join("\n");
    assert!(log.contains("a-user: a-core says 42"), "{log}");

    // The command line, as the standalone binary runs inside the folder, and with `.`-like paths.
    let runs = tempfile::tempdir().expect("tempdir");
    let runs_dir = runs.path().display().to_string();
    let args = ["test", "--no-setup", "--runs-dir", &runs_dir];
    assert_eq!(kmodlab_in(&inside(dir), &args), EXIT_PASS);
    let path = dir.display().to_string();
    assert_eq!(
        kmodlab_in(
            &context(),
            &[
                "test",
                &format!("{path}/."),
                "--no-setup",
                "--runs-dir",
                &runs_dir
            ]
        ),
        EXIT_PASS
    );
}

#[test]
fn a_partial_build_runs_what_built_and_names_what_did_not() {
    let dir = fixture("zero-config-partial");
    let selection = select::select(Path::new(&dir), &[]).unwrap_or_else(|e| panic!("{e:#}"));
    let report = run_selection(selection, &Default::default());
    let ids: Vec<String> = report.verdicts.iter().map(|v| v.id()).collect();
    assert_eq!(
        ids,
        [
            "zero-config-partial/fine",
            "zero-config-partial/broken",
            "zero-config-partial/needs_net (needs-net.ko)"
        ],
        "in the Makefile's order"
    );
    assert_outcome(&report.verdicts[0], Outcome::Pass);
    let broken = &report.verdicts[1];
    assert_outcome(broken, Outcome::Error);
    assert!(
        broken.reason.contains("broken.c:8:9: error:"),
        "{}",
        broken.reason
    );
    assert!(
        broken
            .details
            .iter()
            .all(|l| !l.contains("kmodlab/modules/")),
        "paths point at the folder, not the build copy: {:?}",
        broken.details
    );
    let net = &report.verdicts[2];
    assert_outcome(net, Outcome::Error);
    assert!(
        net.reason
            .starts_with("load: needs symbols the kernel lacks: ")
            && net.reason.contains("register_netdev")
            && net.reason.contains("net/core/dev.c")
            && net.reason.contains(", CONFIG_NET; ")
            && (net.reason.contains("run with --kernel-config ")
                || net.reason.contains("no kmodlab kernel profile sets it")),
        "{}",
        net.reason
    );
    // The exit code of a run with errors.
    let runs = tempfile::tempdir().expect("tempdir");
    let runs_dir = runs.path().display().to_string();
    assert_eq!(
        kmodlab_in(
            &inside(Path::new(&dir)),
            &["test", "--no-setup", "--runs-dir", &runs_dir]
        ),
        EXIT_FAIL
    );
}

#[test]
fn init_writes_a_spec_that_passes_and_never_overwrites_one() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("my-driver");
    std::fs::create_dir(&dir).expect("mkdir");
    let fixture_dir = fixture("zero-config-pair");
    for name in ["a-core.c", "a-user.c", "Kbuild"] {
        std::fs::copy(Path::new(&fixture_dir).join(name), dir.join(name)).expect("copy");
    }
    let path = dir.display().to_string();
    assert_eq!(
        kmodlab_in(&context(), &["init", &path, "--no-setup"]),
        EXIT_PASS
    );
    let spec = kmodlab::spec::load(&dir).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!spec.discovered);
    assert_eq!(spec.build, ["a-core", "a-user"], "load order");
    let user = spec
        .tests
        .iter()
        .find(|t| t.name == "a_user")
        .expect("a test per .ko");
    assert_eq!(user.load, ["a-core", "a-user"]);
    let written = std::fs::read_to_string(dir.join("kmodlab.toml")).expect("spec");
    assert_eq!(
        kmodlab_in(&context(), &["init", &path, "--no-setup"]),
        EXIT_UNABLE
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("kmodlab.toml")).expect("spec"),
        written,
        "left as it was"
    );
    let selection = select::select(&dir, &[]).unwrap_or_else(|e| panic!("{e:#}"));
    let report = run_selection(selection, &Default::default());
    for verdict in &report.verdicts {
        assert_outcome(verdict, Outcome::Pass);
    }
    assert_eq!(report.verdicts.len(), 2);
}
