//! Building user-space companions (found by [`crate::spec::companions`]): programs in a module
//! folder that tests run inside the guest.
//!
//! A module folder may hold, under `companions/`:
//! - `<name>.c`: one C file, built on the host as a **static** program with the C compiler the
//!   `cc` crate picks (it honours `CC` and `CFLAGS`), plus `-static`;
//! - `<name>/Cargo.toml`: a Rust package, built with cargo for `x86_64-unknown-linux-musl`
//!   (static) with its own target folder in the cache.
//!
//! Static, because the guest has no shared libraries: its whole filesystem is the initramfs. The
//! builds happen in a copy of the module folder in the cache (`companions/<folder>-<hash>/`) that
//! keeps the folder's layout, so a companion includes the module's headers by relative path
//! (`#include "../uapi/x.h"`, or a build.rs reading `../../uapi/x.h`). The copy is per module
//! folder, not per kernel like the module build: companions use the host's UAPI headers, not the
//! kernel under test's, so one build serves every kernel. A content hash of the folder skips the
//! compilers entirely when nothing changed. Rust companions share one cargo target folder
//! (`companions/cargo-target/`), so their dependencies are compiled once for all folders.
//!
//! In the guest each companion is `/kmodlab/bin/<module>/<name>` (see [`guest_path`]).

use crate::build::copy::{key_sources, relocate, source_files, BuildCopy};
use crate::host::cache::{self, KeyBuilder};
use crate::host::paths::display_path;
use crate::spec::companions::{discover, Companion, Kind};
use crate::spec::ModuleSpec;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where companions go in the guest.
pub const GUEST_BIN: &str = "/kmodlab/bin";
/// The Rust target of Rust companions: static, like the agent.
pub const RUST_TARGET: &str = crate::build::agent::TARGET;
/// The C target: the guest is x86_64, whatever the host is.
const C_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Where a module's companion is in the guest.
pub fn guest_path(module: &str, program: &str) -> String {
    format!("{GUEST_BIN}/{module}/{program}")
}

/// A module folder's built companions.
#[derive(Debug, Clone, Default)]
pub struct CompanionsBuild {
    /// Each companion's name and its static executable on the host.
    pub programs: Vec<(String, PathBuf)>,
    /// True when the previous build was current and no compiler ran.
    pub reused: bool,
    pub duration: Duration,
    /// Compiler warnings, with paths pointing into the user's folder.
    pub warnings: String,
}

/// Builds every companion of `spec`'s folder (nothing to do when it has none).
pub fn build(spec: &ModuleSpec) -> Result<CompanionsBuild> {
    let started = Instant::now();
    let companions = discover(&spec.dir)?;
    if companions.is_empty() {
        return Ok(CompanionsBuild {
            reused: true,
            ..Default::default()
        });
    }
    // Companions may include any file of the folder (the module's UAPI header), so all of them
    // count, as for the module build.
    let sources = source_files(&spec.dir)?;
    let mut key = KeyBuilder::new();
    key.part("layout", "companions v1");
    for var in ["CC", "CFLAGS", "RUSTFLAGS", "RUSTUP_TOOLCHAIN"] {
        key.part(
            var,
            std::env::var_os(var).unwrap_or_default().as_encoded_bytes(),
        );
    }
    key_sources(&mut key, &spec.dir, &sources)?;
    let key = key.finish();

    // One copy per module folder, shared by all kernels.
    let mut build_copy = BuildCopy::open(&cache::dir("companions")?, spec)?;
    let copy = build_copy.root.join("src");
    let bin = build_copy.root.join("bin");
    let mut build = CompanionsBuild {
        programs: companions
            .iter()
            .map(|c| (c.name.clone(), bin.join(&c.name)))
            .collect(),
        reused: true,
        duration: Duration::ZERO,
        warnings: String::new(),
    };
    if !build_copy.is_current(&key, build.programs.iter().map(|(_, path)| path.as_path())) {
        // Rewrite only changed files, so cargo's own change detection keeps Rust builds incremental.
        build_copy.sync(&spec.dir, &sources, &copy)?;
        std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
        build.warnings = build_each(spec, &companions, &copy, &bin)?;
        build_copy.finish(key)?;
        build.reused = false;
    }
    build.duration = started.elapsed();
    Ok(build)
}

/// Builds each companion from the copy into `bin`; returns what the compilers said.
fn build_each(
    spec: &ModuleSpec,
    companions: &[Companion],
    copy: &Path,
    bin: &Path,
) -> Result<String> {
    let mut warnings = String::new();
    for companion in companions {
        let out = bin.join(&companion.name);
        let said = match companion.kind {
            Kind::C => build_c(spec, companion, copy, &out)?,
            Kind::Rust => build_rust(spec, companion, copy, &out)?,
        };
        if !said.trim().is_empty() {
            warnings.push_str(&said);
            if !warnings.ends_with('\n') {
                warnings.push('\n');
            }
        }
    }
    Ok(warnings)
}

/// The C compiler and flags for the guest, as the `cc` crate chooses them.
pub fn c_compiler() -> Result<Command> {
    let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let tool = cc::Build::new()
        .target(C_TARGET)
        .host(&host)
        .opt_level(2)
        .debug(false)
        .warnings(true)
        .cargo_metadata(false)
        .try_get_compiler()
        .map_err(|e| {
            anyhow!("finding a C compiler for the companions: {e} (Debian package: gcc)")
        })?;
    Ok(tool.to_command())
}

/// `cc ... <copy>/companions/<name>.c -static -o OUT`; messages then name the user's file.
fn build_c(spec: &ModuleSpec, companion: &Companion, copy: &Path, out: &Path) -> Result<String> {
    let mut command = c_compiler()?;
    command
        .current_dir(copy)
        .arg(copy.join(&companion.source))
        .arg("-static")
        .arg("-o")
        .arg(out);
    let output = command.output().with_context(|| {
        format!(
            "running the C compiler for companion `{}` ({command:?})",
            companion.name
        )
    })?;
    let said = shown(&output.stderr, copy, spec);
    if !output.status.success() {
        bail!(
            "building companion `{}` of module `{}` failed:\n{}",
            companion.name,
            spec.name,
            said.trim_end()
        );
    }
    Ok(said)
}

/// `cargo build --release --target x86_64-unknown-linux-musl` of `companions/<name>/Cargo.toml`.
///
/// All Rust companions share one target folder, so a module folder's copy elsewhere (a second
/// checkout, the end-to-end tests' changed copies) reuses the compiled dependencies (bindgen takes
/// a minute to build) and compiles only its own package. Two packages of the same name would
/// overwrite each other's binary there, so a lock is held from the build until the copy.
fn build_rust(spec: &ModuleSpec, companion: &Companion, copy: &Path, out: &Path) -> Result<String> {
    let shared = cache::dir("companions")?;
    let target_dir = shared.join("cargo-target");
    let lock_path = shared.join("cargo-target.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let manifest = copy.join(&companion.source).join("Cargo.toml");
    let first = !target_dir.join(RUST_TARGET).is_dir();
    if first {
        eprintln!(
            "companion building {} for {RUST_TARGET} (the first build fetches and compiles its dependencies)",
            companion.name
        );
    }
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(copy.join(&companion.source))
        .args(["build", "--quiet", "--release", "--target", RUST_TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--message-format", "json-render-diagnostics"])
        .env("PATH", crate::host::setup::build_env_path())
        .output()
        .with_context(|| format!("running cargo for companion `{}`", companion.name))?;
    // rustc names the package's files relative to the package (`--> src/main.rs:3:5`).
    let said = package_paths(
        &shown(&output.stderr, copy, spec),
        &display_path(&spec.dir).join(&companion.source),
    );
    if !output.status.success() {
        bail!(
            "building companion `{}` of module `{}` failed:\n{}{}",
            companion.name,
            spec.name,
            said.trim_end(),
            if said.contains("can't find crate for `std`") || said.contains(RUST_TARGET) {
                format!("\n(if the target is missing: rustup target add {RUST_TARGET})")
            } else {
                String::new()
            }
        );
    }
    let executables = executables(&String::from_utf8_lossy(&output.stdout));
    let built = match executables.as_slice() {
        [one] => one.clone(),
        many => many
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == companion.name.as_str()))
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "companion `{}` of module `{}`: cargo built {} executables ({}); name the \
                     package (or its one binary) `{}`",
                    companion.name,
                    spec.name,
                    many.len(),
                    many.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    companion.name
                )
            })?,
    };
    std::fs::copy(&built, out)
        .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    drop(lock);
    Ok(said)
}

/// The executables in cargo's JSON messages (`compiler-artifact` with an `executable`).
fn executables(json_lines: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = json_lines
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Diagnostics' `--> src/main.rs:3:5` (and `::: build.rs:1:1`) made relative to where the user is.
fn package_paths(text: &str, package: &Path) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker = ["--> ", "::: "]
            .into_iter()
            .find(|m| trimmed.starts_with(m));
        match marker {
            Some(marker) if !trimmed[marker.len()..].starts_with('/') => {
                let indent = &line[..line.len() - trimmed.len()];
                out.push_str(&format!(
                    "{indent}{marker}{}/{}",
                    package.display(),
                    &trimmed[marker.len()..]
                ));
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// Compiler output with the copy's paths turned into the user's.
fn shown(bytes: &[u8], copy: &Path, spec: &ModuleSpec) -> String {
    relocate(&String::from_utf8_lossy(bytes), copy, &spec.dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::touch;

    #[test]
    fn cargo_messages_name_the_executable() {
        let stdout = r#"{"reason":"compiler-artifact","target":{"kind":["custom-build"]},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["bin"]},"executable":"/t/release/demo"}
not json
{"reason":"build-finished","success":true}"#;
        assert_eq!(executables(stdout), [PathBuf::from("/t/release/demo")]);
    }

    #[test]
    fn rust_diagnostics_name_the_users_package() {
        let text = "error[E0308]: mismatched types\n   --> src/main.rs:173:55\n    |\n  ::: /rustc/abc/library/core/x.rs:1:1\n";
        assert_eq!(
            package_paths(text, Path::new("modules/chardev/companions/chardev_rs")),
            "error[E0308]: mismatched types\n   --> modules/chardev/companions/chardev_rs/src/main.rs:173:55\n    |\n  ::: /rustc/abc/library/core/x.rs:1:1\n"
        );
    }

    #[test]
    fn the_c_compiler_builds_a_static_program() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(
            dir.path(),
            "hi.c",
            "#include <stdio.h>\nint main(void){puts(\"hi from C\");return 0;}\n",
        );
        let out = dir.path().join("hi");
        let status = c_compiler()
            .expect("compiler")
            .current_dir(dir.path())
            .args(["hi.c", "-static", "-o"])
            .arg(&out)
            .status()
            .expect("runs");
        assert!(status.success());
        let run = Command::new(&out).output().expect("runs");
        assert_eq!(String::from_utf8_lossy(&run.stdout), "hi from C\n");
        // Static: no program interpreter (.interp) to look for in the guest.
        use object::Object;
        let data = std::fs::read(&out).expect("read");
        let elf = object::File::parse(&*data).expect("ELF");
        assert!(elf.section_by_name(".interp").is_none());
    }
}
