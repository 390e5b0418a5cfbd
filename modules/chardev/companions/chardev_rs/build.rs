//! Generates the Rust view of `uapi/kmodlab_chardev.h` (the struct and the ioctl numbers) with
//! bindgen, from the very header the module and the C companion include.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let header =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../uapi/kmodlab_chardev.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("uapi.rs");
    bindgen::Builder::default()
        .header(header.to_string_lossy())
        // Only our names, not everything <linux/ioctl.h> and <linux/types.h> define.
        .allowlist_type("kmodlab_chardev_.*")
        .allowlist_var("KMODLAB_CHARDEV_.*")
        // `_IOR(...)` is a function-like macro bindgen cannot evaluate on its own; this asks clang to.
        .clang_macro_fallback()
        .derive_default(true)
        .generate()?
        .write_to_file(&out)?;
    Ok(())
}
