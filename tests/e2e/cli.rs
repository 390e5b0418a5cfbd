//! The command line's exit codes, through the same code path `cargo xtask` takes.

use clap::Parser;
use kmodlab::cli::{run_cli, Cli, Context, EXIT_FAIL, EXIT_UNABLE};
use kmodlab_e2e::{context, fixture};

fn run(args: &[&str], ctx: &Context) -> i32 {
    let mut all = vec!["kmodlab"];
    all.extend_from_slice(args);
    run_cli(Cli::try_parse_from(all).expect("arguments parse"), ctx)
}

#[test]
fn an_unknown_module_cannot_run() {
    assert_eq!(
        run(&["test", "nosuchmodule", "--no-setup"], &context()),
        EXIT_UNABLE
    );
}

#[test]
fn a_spec_with_a_typo_cannot_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("typo");
    std::fs::create_dir(&module).expect("mkdir");
    std::fs::write(
        module.join("kmodlab.toml"),
        "[module]\nlanguage = \"c\"\n[[test]]\nname = \"a\"\nexpct = ['x']\n",
    )
    .expect("write spec");
    let path = module.display().to_string();
    assert_eq!(run(&["test", &path, "--no-setup"], &context()), EXIT_UNABLE);
    let error = kmodlab::spec::load(&module)
        .expect_err("typo is rejected")
        .to_string();
    assert!(
        error.contains("kmodlab.toml:5:1") && error.contains("expct"),
        "{error}"
    );
}

#[test]
fn a_failing_ktap_case_fails_the_run() {
    let path = fixture("ktap_fail");
    assert_eq!(run(&["test", &path, "--no-setup"], &context()), EXIT_FAIL);
}
