//! The command line's exit codes, through the same code path `cargo xtask` takes.

use kmodlab::cli::{Context, EXIT_FAIL, EXIT_UNABLE};
use kmodlab_e2e::{context, fixture, kmodlab_in};

fn run(args: &[&str], ctx: &Context) -> i32 {
    kmodlab_in(ctx, args)
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

#[test]
fn a_build_error_shows_the_compilers_lines_and_boots_nothing() {
    let ctx = context();
    let spec = kmodlab::spec::load(std::path::Path::new(&fixture("build_error"))).expect("spec");
    let request = kmodlab::cli::kernel_request(&Default::default(), &ctx).expect("request");
    let kernel = kmodlab::kernel::ensure(&request).expect("kernel");
    let error = format!(
        "{:#}",
        kmodlab::build::module::build(&spec, &kernel).expect_err("does not compile")
    );
    assert!(
        error.contains("build_error/build_error.c:12:9: error:"),
        "{error}"
    );
    assert!(
        !error.contains("kmodlab/modules/"),
        "paths point at the module folder, not the build copy: {error}"
    );

    let runs = tempfile::tempdir().expect("tempdir");
    let runs_dir = runs.path().display().to_string();
    let path = fixture("build_error");
    assert_eq!(
        run(
            &["test", &path, "--no-setup", "--runs-dir", &runs_dir],
            &ctx
        ),
        EXIT_UNABLE
    );
    let booted = walk(runs.path())
        .into_iter()
        .any(|p| p.to_string_lossy().ends_with(".console.log"));
    assert!(!booted, "no VM may start after a failed build");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
