//! Kernels: a source tree, Kconfig fragments merged onto allnoconfig and checked, and a build, all
//! cached under `cache/kernels/<key>/` by a hash of everything that affects them.
//!
//! The key covers [`RECIPE`], the source's identity (the Debian package version, or a tree's
//! canonical path and kernel version), every fragment's bytes in order, and the toolchain (gcc, and
//! for CONFIG_RUST also rustc, bindgen and clang). For the Debian source, a second [`ensure`] with the
//! same key runs no make at all. A [`SourceSpec::Dir`] tree is the user's to edit, and its path says
//! nothing about its contents, so every `ensure` re-runs make on it (incrementally: seconds when
//! nothing changed).
//!
//! Layout: `kernels/<key>/build` (the `O=` folder, KDIR for modules), `build.log`, `stamp.json`
//! (written last, so an interrupted build never counts as finished) and `lock` (a `flock` that
//! makes a second process wait for the first one's build instead of repeating it).

mod build;
mod config;
mod debian;
pub mod fragments;
mod prebuilt;
mod source;
pub mod symbols;

pub use source::DEBIAN_PACKAGE;

use crate::host::cache::{self, lock, KeyBuilder};
use crate::host::progress::{format_duration, Step};
use crate::host::setup;
use anyhow::{bail, Context, Result};
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The version of how kmodlab configures and builds kernels; changing it rebuilds every kernel.
pub const RECIPE: &str = "kmodlab-kernel-1";

/// Where the kernel source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// Debian's `linux-source-6.12`, unpacked into the cache (no root needed).
    Debian,
    /// A kernel tree the user has; it must be clean (`make mrproper`) since kmodlab builds with `O=`.
    Dir(PathBuf),
    /// Debian's prebuilt cloud kernel image and headers, unpacked into the cache (no build, no
    /// fragments: its own `.config` decides the options; no CONFIG_RUST). `abi` pins one
    /// (`6.12.117+deb12`); `None`: the newest 6.12 apt's lists offer when it is first fetched.
    DebianPrebuilt { abi: Option<String> },
}

/// Which kernel to provide.
#[derive(Debug, Clone)]
pub struct KernelRequest {
    pub source: SourceSpec,
    /// Kconfig fragments, merged in order onto allnoconfig; later ones override earlier ones.
    pub fragments: Vec<PathBuf>,
    /// Parallel make jobs; `None` uses every available core.
    pub jobs: Option<usize>,
}

/// A built kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub key: String,
    pub source_dir: PathBuf,
    /// The `O=` folder: KDIR for module builds.
    pub build_dir: PathBuf,
    /// The bzImage.
    pub image: PathBuf,
    /// `uname -r` of the kernel, from `include/config/kernel.release`.
    pub release: String,
    pub fragments: Vec<PathBuf>,
    options: BTreeMap<String, String>,
    /// Debian's prebuilt kernel: `build_dir` holds headers only, never a bootable vmlinux.
    prebuilt: bool,
}

impl Kernel {
    /// What QEMU boots: the uncompressed ELF `vmlinux` through its PVH entry point when the build
    /// has one, else the bzImage. Under TCG, emulating the bzImage's decompressor costs ~150 ms per
    /// boot (docs/PERFORMANCE.md).
    pub fn boot_image(&self) -> PathBuf {
        let vmlinux = self.build_dir.join("vmlinux");
        if !self.prebuilt && self.option("CONFIG_PVH") == Some("y") && vmlinux.is_file() {
            vmlinux
        } else {
            self.image.clone()
        }
    }

    /// Debian's prebuilt kernel (`--kernel-prebuilt`) rather than one kmodlab built.
    pub fn is_prebuilt(&self) -> bool {
        self.prebuilt
    }

    /// Kernel command-line words that make this kernel's detectors report within seconds instead
    /// of minutes, for the ones it has (a word for a missing detector logs a complaint at boot).
    /// The soft-lockup threshold stays below the RCU stall timeout, or the stall report wins.
    pub fn detector_args(&self) -> String {
        let enabled = |option: &str| self.option(option) == Some("y");
        let mut words = vec!["rcupdate.rcu_cpu_stall_timeout=10"];
        if enabled("CONFIG_SOFTLOCKUP_DETECTOR") {
            words.push("watchdog_thresh=2");
        }
        if enabled("CONFIG_WQ_WATCHDOG") {
            words.push("workqueue.watchdog_thresh=10");
        }
        if enabled("CONFIG_DETECT_HUNG_TASK") {
            words.push("sysctl.kernel.hung_task_timeout_secs=5");
        }
        words.join(" ")
    }

    /// An option's value in the built `.config` (`"y"`, `"m"`, a number, a quoted string), or `None`
    /// when it is not set. The name may be given with or without `CONFIG_`.
    pub fn option(&self, name: &str) -> Option<&str> {
        let name = if name.starts_with("CONFIG_") {
            name.to_string()
        } else {
            format!("CONFIG_{name}")
        };
        self.options.get(&name).map(String::as_str)
    }

    /// Those of `options` this kernel does not have built in or as a module.
    pub fn lacks<'a>(&self, options: &'a [String]) -> Vec<&'a str> {
        options
            .iter()
            .filter(|o| !matches!(self.option(o), Some("y") | Some("m")))
            .map(String::as_str)
            .collect()
    }
}

/// What `stamp.json` records about a finished build.
#[derive(Debug, Serialize, Deserialize)]
struct Stamp {
    recipe: String,
    key: String,
    release: String,
    image: PathBuf,
    source_dir: PathBuf,
    seconds: f64,
    steps: u64,
}

/// The cache key of the kernel `req` describes. Does not provision or build; for a Debian source
/// not provisioned yet it asks dpkg or apt (locally) which version would be.
pub fn key(req: &KernelRequest) -> Result<String> {
    if let SourceSpec::DebianPrebuilt { abi } = &req.source {
        return prebuilt::key(abi.as_deref());
    }
    let requests = config::merged_requests(&req.fragments)?;
    request_key(req, &source::identity(&req.source)?, &requests)
}

/// The kernel if it is built already; never provisions or builds.
pub fn cached(req: &KernelRequest) -> Result<Option<Kernel>> {
    if let SourceSpec::DebianPrebuilt { abi } = &req.source {
        return prebuilt::cached(abi.as_deref());
    }
    let requests = config::merged_requests(&req.fragments)?;
    let Some(src) = source::existing(&req.source)? else {
        return Ok(None);
    };
    let key = request_key(req, &src.identity, &requests)?;
    load_stamped(&kernels_dir()?.join(&key), &key, &req.fragments)
}

/// The kernel `req` describes: provisioned, configured, checked and built unless cached.
pub fn ensure(req: &KernelRequest) -> Result<Kernel> {
    if let SourceSpec::DebianPrebuilt { abi } = &req.source {
        return prebuilt::ensure(abi.as_deref());
    }
    let slot = Slot::take(req, "building")?;
    let user_tree = matches!(req.source, SourceSpec::Dir(_));
    let stamped = load_stamped(&slot.dir, &slot.key, &req.fragments)?;
    if let (Some(kernel), false) = (&stamped, user_tree) {
        return Ok(kernel.clone());
    }
    for tool in ["make", "gcc", "flex", "bison", "bc"] {
        setup::require_tool(tool).context("building a kernel")?;
    }
    let log = slot.start_log("build.log")?;
    // A user tree already built once keeps its .config: kbuild re-syncs it when Kconfig changes.
    if stamped.is_none() || !slot.build_dir.join(".config").is_file() {
        configure_into(&slot, &req.fragments, &log)?;
    }
    check_config(&slot.requests, &slot.src.dir, &slot.build_dir)?;
    build_into(&slot, req)?;
    load_stamped(&slot.dir, &slot.key, &req.fragments)?
        .with_context(|| format!("the build of kernel {} left no stamp", slot.key))
}

/// Provisions and configures (no build), then checks that every requested option survived;
/// returns the `.config`. For trying fragments quickly: seconds instead of minutes.
pub fn configure(req: &KernelRequest) -> Result<PathBuf> {
    if let SourceSpec::DebianPrebuilt { abi } = &req.source {
        return Ok(prebuilt::ensure(abi.as_deref())?.build_dir.join(".config"));
    }
    let slot = Slot::take(req, "configuring")?;
    // A finished build's .config is the answer already; rewriting it would only make kbuild redo work.
    if load_stamped(&slot.dir, &slot.key, &req.fragments)?.is_none() {
        let log = slot.start_log("configure.log")?;
        configure_into(&slot, &req.fragments, &log)?;
    }
    check_config(&slot.requests, &slot.src.dir, &slot.build_dir)?;
    Ok(slot.build_dir.join(".config"))
}

/// A kernel's place in the cache, held: what the fragments request, the provisioned source, the
/// content key, its folder, and the lock that keeps other kmodlab processes out while it is used.
struct Slot {
    requests: Vec<config::Request>,
    src: source::Source,
    key: String,
    dir: PathBuf,
    /// The `O=` folder, inside `dir`.
    build_dir: PathBuf,
    _lock: Flock<File>,
}

impl Slot {
    /// `doing` says what the holder does, for whoever waits on the lock ("building kernel KEY").
    fn take(req: &KernelRequest, doing: &str) -> Result<Slot> {
        let requests = config::merged_requests(&req.fragments)?;
        let src = source::provision(&req.source)?;
        let key = request_key(req, &src.identity, &requests)?;
        let dir = kernels_dir()?.join(&key);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock = lock(&dir.join("lock"), &format!("{doing} kernel {key}"))?;
        Ok(Slot {
            requests,
            src,
            key,
            build_dir: dir.join("build"),
            dir,
            _lock: lock,
        })
    }

    /// Makes the build folder exist and starts the log `name` afresh; returns the log's path.
    fn start_log(&self, name: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.build_dir)
            .with_context(|| format!("creating {}", self.build_dir.display()))?;
        let log = self.dir.join(name);
        File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        Ok(log)
    }
}

/// The key of `req`'s kernel from its source's identity and what its fragments request.
fn request_key(
    req: &KernelRequest,
    identity: &str,
    requests: &[config::Request],
) -> Result<String> {
    key_for(identity, &req.fragments, &toolchain(wants_rust(requests))?)
}

/// Provisions the source only (for the provisioning example and test, which time it apart from the build); returns its tree.
pub fn provision_source(spec: &SourceSpec) -> Result<PathBuf> {
    if let SourceSpec::DebianPrebuilt { abi } = spec {
        return Ok(prebuilt::ensure(abi.as_deref())?.source_dir);
    }
    Ok(source::provision(spec)?.dir)
}

fn kernels_dir() -> Result<PathBuf> {
    cache::dir("kernels")
}

fn wants_rust(requests: &[config::Request]) -> bool {
    requests
        .iter()
        .any(|r| r.name == "CONFIG_RUST" && r.value.as_deref() == Some("y"))
}

fn key_for(
    source_identity: &str,
    fragments: &[PathBuf],
    toolchain: &[(&str, String)],
) -> Result<String> {
    let mut key = config_identity(source_identity, fragments)?;
    for (tool, version) in toolchain {
        key.part(tool, version);
    }
    Ok(key.finish())
}

/// Everything but the toolchain: builds with the same configuration have the same number of steps.
fn config_identity(source_identity: &str, fragments: &[PathBuf]) -> Result<KeyBuilder> {
    let mut key = KeyBuilder::new();
    key.part("recipe", RECIPE)
        .part("arch", std::env::consts::ARCH)
        .part("source", source_identity);
    key.part("fragments", fragments.len().to_string());
    for fragment in fragments {
        key.file("fragment", fragment)
            .context("reading a kernel config fragment")?;
    }
    Ok(key)
}

/// Each tool's `--version` first line, run in parallel (about 50 ms in all). A missing tool is an
/// error naming its package, before anything slow starts.
fn toolchain(rust: bool) -> Result<Vec<(&'static str, String)>> {
    let tools: &[&'static str] = if rust {
        &["gcc", "rustc", "bindgen", "clang"]
    } else {
        &["gcc"]
    };
    let paths = tools
        .iter()
        .map(|tool| setup::require_tool(tool).map(|path| (*tool, path)))
        .collect::<Result<Vec<_>>>()
        .context("identifying the kernel toolchain")?;
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .iter()
            .map(|(tool, path)| scope.spawn(move || (*tool, first_line_of_version(path))))
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok((tool, version)) => Ok((tool, version?)),
                Err(_) => bail!("a thread asking for a tool version panicked"),
            })
            .collect()
    })
}

fn first_line_of_version(tool: &Path) -> Result<String> {
    let out = Command::new(tool)
        .arg("--version")
        .env("PATH", setup::build_env_path())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {} --version", tool.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().next() {
        Some(line) if out.status.success() => Ok(line.trim().to_string()),
        _ => bail!("`{} --version` failed ({})", tool.display(), out.status),
    }
}

/// The kernel in `dir` when its stamp is complete and its image still there.
fn load_stamped(dir: &Path, key: &str, fragments: &[PathBuf]) -> Result<Option<Kernel>> {
    let stamp_path = dir.join("stamp.json");
    let text = match std::fs::read_to_string(&stamp_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", stamp_path.display())),
    };
    // An unreadable stamp (another recipe, a half-written file from elsewhere) means "not built".
    let Ok(stamp) = serde_json::from_str::<Stamp>(&text) else {
        return Ok(None);
    };
    if stamp.recipe != RECIPE || stamp.key != key || !stamp.image.is_file() {
        return Ok(None);
    }
    let build_dir = dir.join("build");
    let config_path = build_dir.join(".config");
    let config_text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    Ok(Some(Kernel {
        key: key.to_string(),
        source_dir: stamp.source_dir,
        build_dir,
        image: stamp.image,
        release: stamp.release,
        fragments: fragments.to_vec(),
        options: config::parse_dotconfig(&config_text),
        prebuilt: false,
    }))
}

/// `merge_config.sh -n`: allnoconfig with the fragments on top, as the kernel's own tool does it.
fn configure_into(slot: &Slot, fragments: &[PathBuf], log: &Path) -> Result<()> {
    let sh = setup::require_tool("sh")?;
    let mut command = build::kbuild_command(&sh, &slot.src.dir);
    command
        .arg("scripts/kconfig/merge_config.sh")
        .arg("-n")
        .arg("-O")
        .arg(&slot.build_dir);
    for fragment in fragments {
        // merge_config.sh runs in the source tree, so relative fragment paths would miss.
        let absolute = fragment
            .canonicalize()
            .with_context(|| format!("the config fragment {} is missing", fragment.display()))?;
        command.arg(absolute);
    }
    let step = Step::start(&format!("configuring kernel {}", slot.key));
    match build::run_logged(command, log, &step, None) {
        Ok(_) => {
            step.finish(&slot.build_dir.join(".config").display().to_string());
            Ok(())
        }
        Err(e) => {
            step.fail("merge_config.sh failed");
            Err(e.context("configuring the kernel"))
        }
    }
}

fn read_config(build_dir: &Path) -> Result<BTreeMap<String, String>> {
    let path = build_dir.join(".config");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(config::parse_dotconfig(&text))
}

fn check_config(requests: &[config::Request], src: &Path, build_dir: &Path) -> Result<()> {
    let config = read_config(build_dir)?;
    let Err(error) = config::check_survival(requests, &config, Some(src), build_dir) else {
        return Ok(());
    };
    let rust_lost =
        wants_rust(requests) && config.get("CONFIG_RUST").map(String::as_str) != Some("y");
    if !rust_lost {
        return Err(error);
    }
    // The kernel's own check says exactly which Rust piece is missing or too old: show its answer.
    match rust_available(src, build_dir) {
        Ok(answer) => bail!(
            "{error:#}\n\n`make rustavailable` says:\n{}",
            answer.trim_end()
        ),
        Err(e) => Err(error.context(format!("(and `make rustavailable` could not run: {e:#})"))),
    }
}

fn rust_available(src: &Path, build_dir: &Path) -> Result<String> {
    let make = setup::require_tool("make")?;
    let mut command = build::kbuild_command(&make, src);
    command
        .arg("-s")
        .arg("-C")
        .arg(src)
        .arg(format!("O={}", build_dir.display()))
        .arg("rustavailable");
    let out = command
        .stdin(Stdio::null())
        .output()
        .context("running make rustavailable")?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// `make bzImage modules`, then the stamp, last.
fn build_into(slot: &Slot, req: &KernelRequest) -> Result<()> {
    let jobs = req.jobs.filter(|&j| j > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let command = make_command(slot, jobs)?;
    // A fresh build does as many steps as the last fresh build of the same configuration did.
    let config_id = config_identity(&slot.src.identity, &req.fragments)?.finish();
    let steps_file = kernels_dir()?.join(format!("steps-{config_id}"));
    let fresh = !slot.build_dir.join("vmlinux").exists();
    let expected = fresh
        .then(|| {
            std::fs::read_to_string(&steps_file)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .flatten();

    let log = slot.dir.join("build.log");
    let step = Step::start(&format!("building kernel {} (-j{jobs})", slot.key));
    let started = Instant::now();
    let steps = match build::run_logged(command, &log, &step, expected) {
        Ok(steps) => steps,
        Err(e) => {
            step.fail(&format!("log: {}", log.display()));
            return Err(e.context(format!("building kernel {}", slot.key)));
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let (release, image, size) = built_image(slot)?;
    if fresh {
        // Only a guide for the next progress bar: failing to keep it costs nothing.
        let _ = source::write_atomic(&steps_file, steps.to_string().as_bytes());
    }
    let stamp = Stamp {
        recipe: RECIPE.to_string(),
        key: slot.key.clone(),
        release: release.clone(),
        image,
        source_dir: slot.src.dir.clone(),
        seconds,
        steps,
    };
    source::write_atomic(
        &slot.dir.join("stamp.json"),
        &serde_json::to_vec_pretty(&stamp).context("encoding the stamp")?,
    )?;
    step.finish(&format!(
        "{release}, bzImage {:.1} MB, {steps} steps in {}",
        size as f64 / 1e6,
        format_duration(started.elapsed())
    ));
    Ok(())
}

/// `make -C SRC O=BUILD -jN bzImage [modules]`.
fn make_command(slot: &Slot, jobs: usize) -> Result<Command> {
    let src = slot.src.dir.as_path();
    let make = setup::require_tool("make")?;
    let mut command = build::kbuild_command(&make, src);
    command
        .arg("-C")
        .arg(src)
        .arg(format!("O={}", slot.build_dir.display()))
        .arg(format!("-j{jobs}"));
    command.arg("bzImage");
    // Without CONFIG_MODULES, kbuild fails the `modules` target instead of skipping it.
    let config = read_config(&slot.build_dir)?;
    if config.get("CONFIG_MODULES").map(String::as_str) == Some("y") {
        command.arg("modules");
    }
    Ok(command)
}

/// Checks a finished build; returns its release, its bzImage and the image's size.
fn built_image(slot: &Slot) -> Result<(String, PathBuf, u64)> {
    // Kbuild re-syncs .config during the build (a user tree's Kconfig may have changed): check again.
    check_config(&slot.requests, &slot.src.dir, &slot.build_dir)?;
    let release_path = slot.build_dir.join("include/config/kernel.release");
    let release = std::fs::read_to_string(&release_path)
        .with_context(|| format!("reading {}", release_path.display()))?
        .trim()
        .to_string();
    let image = slot.build_dir.join("arch/x86/boot/bzImage");
    let size = image
        .metadata()
        .with_context(|| format!("the build left no {}", image.display()))?
        .len();
    Ok((release, image, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toolchain() -> Vec<(&'static str, String)> {
        vec![
            ("gcc", "gcc 12.2.0".to_string()),
            ("rustc", "rustc 1.95.0".to_string()),
        ]
    }

    #[test]
    fn keys_are_stable_and_follow_every_fragment_byte() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.config");
        let rust = dir.path().join("rust.config");
        std::fs::write(&base, "CONFIG_64BIT=y\nCONFIG_SMP=y\n").unwrap();
        std::fs::write(&rust, "CONFIG_RUST=y\n").unwrap();
        let frags = vec![base.clone(), rust.clone()];
        let key = key_for("debian:linux-source-6.12=6.12.117", &frags, &toolchain()).unwrap();
        assert_eq!(key.len(), 16);
        assert_eq!(
            key,
            key_for("debian:linux-source-6.12=6.12.117", &frags, &toolchain()).unwrap()
        );

        std::fs::write(&base, "CONFIG_64BIT=y\nCONFIG_SMP=n\n").unwrap();
        let changed = key_for("debian:linux-source-6.12=6.12.117", &frags, &toolchain()).unwrap();
        assert_ne!(key, changed, "one changed byte in a fragment");
        std::fs::write(&base, "CONFIG_64BIT=y\nCONFIG_SMP=y\n").unwrap();
        assert_eq!(
            key,
            key_for("debian:linux-source-6.12=6.12.117", &frags, &toolchain()).unwrap()
        );

        let reversed = vec![rust.clone(), base.clone()];
        assert_ne!(
            key,
            key_for("debian:linux-source-6.12=6.12.117", &reversed, &toolchain()).unwrap()
        );
        assert_ne!(
            key,
            key_for("debian:linux-source-6.12=6.12.118", &frags, &toolchain()).unwrap()
        );
        let mut newer = toolchain();
        newer[1].1 = "rustc 1.96.0".to_string();
        assert_ne!(
            key,
            key_for("debian:linux-source-6.12=6.12.117", &frags, &newer).unwrap()
        );

        // Only contents count: the same fragment elsewhere gives the same key.
        let moved = dir.path().join("moved.config");
        std::fs::copy(&base, &moved).unwrap();
        let frags_moved = vec![moved, rust];
        assert_eq!(
            key,
            key_for(
                "debian:linux-source-6.12=6.12.117",
                &frags_moved,
                &toolchain()
            )
            .unwrap()
        );
    }

    #[test]
    fn a_missing_fragment_is_an_error_naming_it() {
        let err = key_for("x", &[PathBuf::from("/nonexistent/k.config")], &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/k.config"),
            "{err:#}"
        );
    }

    #[test]
    fn options_accept_names_with_or_without_prefix() {
        let kernel = Kernel {
            key: "k".into(),
            source_dir: "/s".into(),
            build_dir: "/b".into(),
            image: "/b/bzImage".into(),
            release: "6.12.117".into(),
            fragments: vec![],
            options: config::parse_dotconfig("CONFIG_RUST=y\n# CONFIG_KASAN is not set\n"),
            prebuilt: false,
        };
        assert_eq!(kernel.option("CONFIG_RUST"), Some("y"));
        assert_eq!(kernel.option("RUST"), Some("y"));
        assert_eq!(kernel.option("KASAN"), None);
    }
}
