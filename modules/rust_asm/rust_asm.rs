// SPDX-License-Identifier: GPL-2.0

//! rust_asm: x86 inline assembly from a Rust kernel module.
//!
//! Reads the time-stamp counter twice with `rdtsc` and asks `cpuid` leaf 0
//! for the CPU vendor, keeping RBX intact around `cpuid` because LLVM owns
//! that register.  A KTAP document checks the answers, including against the
//! vendor string the kernel itself recorded at boot.

use core::arch::asm;
use kernel::prelude::*;

#[path = "../include/kmodlab_ktap.rs"]
mod ktap;

module! {
    type: RustAsm,
    name: "rust_asm",
    author: "kmodlab",
    description: "rdtsc and cpuid with core::arch::asm!, checked against the kernel's own view",
    license: "GPL",
}

/// The 12-byte vendor names that x86 CPUs return from `cpuid` leaf 0, as
/// listed by the kernel's per-vendor CPU support (arch/x86/kernel/cpu/).
const KNOWN_VENDORS: [&[u8; 12]; 11] = [
    b"GenuineIntel",
    b"AuthenticAMD",
    b"HygonGenuine",
    b"CentaurHauls",
    b"  Shanghai  ",
    b"CyrixInstead",
    b"Geode by NSC",
    b"GenuineTMx86",
    b"TransmetaCPU",
    b"UMC UMC UMC ",
    b"Vortex86 SoC",
];

/// Reads the time-stamp counter: the high half arrives in EDX, the low half
/// in EAX.
fn rdtsc() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: `rdtsc` writes only EAX and EDX, both declared as outputs.  It
    // reads no memory, uses no stack and leaves the flags alone.
    unsafe {
        asm!(
            "rdtsc",
            out("eax") low,
            out("edx") high,
            options(nomem, nostack, preserves_flags),
        );
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// What `cpuid` leaf 0 answers: the highest basic leaf, and the vendor name.
struct Leaf0 {
    max_leaf: u32,
    vendor: [u8; 12],
}

/// Runs `cpuid` with EAX = 0.
///
/// `cpuid` overwrites EBX, but LLVM reserves RBX (it may hold a base pointer)
/// and refuses it as an `asm!` operand.  So the block copies RBX to a scratch
/// register chosen by the compiler, runs `cpuid`, and swaps the two back:
/// afterwards RBX holds its old value again and the scratch register holds
/// what `cpuid` put in EBX.
fn cpuid_leaf0() -> Leaf0 {
    let max_leaf: u32;
    let ebx: u64;
    let ecx: u32;
    let edx: u32;
    // SAFETY: `cpuid` writes EAX, EBX, ECX and EDX.  EAX, ECX and EDX are
    // operands; RBX is restored by the `xchg` before the block ends.  The
    // scratch register is an output, so the compiler does not keep anything
    // in it.  No memory, stack or flags are touched.
    unsafe {
        asm!(
            "mov {scratch}, rbx",
            "cpuid",
            "xchg {scratch}, rbx",
            scratch = out(reg) ebx,
            inout("eax") 0u32 => max_leaf,
            inout("ecx") 0u32 => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags),
        );
    }
    // The name is spelled by EBX, then EDX, then ECX (not alphabetical
    // order!), four bytes each, least significant byte first.
    let words = [ebx as u32, edx, ecx];
    let mut vendor = [0u8; 12];
    for (chunk, word) in vendor.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Leaf0 { max_leaf, vendor }
}

/// The vendor name the kernel stored at boot (`boot_cpu_data.x86_vendor_id`,
/// what /proc/cpuinfo shows as `vendor_id`).
///
/// 6.12 has no safe Rust API for CPU information, so this goes through the
/// raw C bindings: one unsafe read of an exported global.
fn kernel_vendor() -> [u8; 16] {
    // SAFETY: `boot_cpu_data` is an exported global that the kernel fills in
    // during early boot and does not change once modules can load.  The
    // field is a plain byte array: `addr_of!` takes its address without
    // creating a reference to the `static mut`, and the read copies it.
    let raw = unsafe { core::ptr::addr_of!(kernel::bindings::boot_cpu_data.x86_vendor_id).read() };
    raw.map(|c| c as u8)
}

/// Shows a byte string in the log, with anything unprintable as `?`.
struct Printable<'a>(&'a [u8]);

impl core::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &b in self.0 {
            let c = if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            };
            core::fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

struct RustAsm;

impl kernel::Module for RustAsm {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("loaded\n");
        let mut t = ktap::Ktap::plan(4);

        let first = rdtsc();
        let second = rdtsc();
        t.diag(format_args!(
            "rdtsc: first={} second={} delta={}",
            first,
            second,
            second.wrapping_sub(first)
        ));
        t.check(second > first, "tsc_monotonic");

        let leaf0 = cpuid_leaf0();
        t.diag(format_args!(
            "cpuid(0): max_leaf={} vendor=\"{}\"",
            leaf0.max_leaf,
            Printable(&leaf0.vendor)
        ));
        // Every CPU that runs x86-64 Linux has at least leaf 1 (the feature flags).
        t.check(leaf0.max_leaf >= 1, "max_leaf_has_features");
        t.check(
            KNOWN_VENDORS.iter().any(|v| **v == leaf0.vendor),
            "vendor_is_known",
        );

        let kernel = kernel_vendor();
        t.diag(format_args!(
            "boot_cpu_data.x86_vendor_id=\"{}\"",
            Printable(&kernel[..12])
        ));
        // The kernel's copy is NUL-terminated after the 12 name bytes.
        t.check(
            kernel[..12] == leaf0.vendor && kernel[12] == 0,
            "vendor_matches_kernel",
        );
        t.finish();

        Ok(RustAsm)
    }
}

impl Drop for RustAsm {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
