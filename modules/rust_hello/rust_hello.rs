// SPDX-License-Identifier: GPL-2.0

//! rust_hello: a Rust kernel module that reads the CPU's time-stamp counter
//! with inline assembly and reports two checks as KTAP.

use core::arch::asm;
use kernel::prelude::*;

// The shared KTAP helper.  `#[path]` is resolved from this file's folder;
// the harness puts `include/` next to the module folder in its build copy.
#[path = "../include/kmodlab_ktap.rs"]
mod ktap;

module! {
    type: RustHello,
    name: "rust_hello",
    author: "kmodlab",
    description: "Reads the time-stamp counter with inline assembly and checks it advances",
    license: "GPL",
}

/// Reads the time-stamp counter: `rdtsc` puts its high half in EDX and its
/// low half in EAX.
fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: `rdtsc` only writes EAX and EDX, which are declared as outputs;
    // it touches no memory, no stack and no flags.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Asks CPUID leaf 1 whether the CPU has a time-stamp counter (EDX bit 4).
fn cpu_has_tsc() -> bool {
    let edx: u32;
    // SAFETY: `cpuid` writes EAX, EBX, ECX and EDX.  EAX, ECX and EDX are
    // declared; RBX may not be named as an operand (LLVM reserves it), so it
    // is saved in a scratch register and restored.  No memory, stack or
    // flags are touched.
    unsafe {
        asm!(
            "mov {saved_rbx}, rbx",
            "cpuid",
            "mov rbx, {saved_rbx}",
            saved_rbx = out(reg) _,
            inout("eax") 1u32 => _,
            inout("ecx") 0u32 => _,
            out("edx") edx,
            options(nomem, nostack, preserves_flags),
        );
    }
    edx & (1 << 4) != 0
}

struct RustHello;

impl kernel::Module for RustHello {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("Hello from Rust\n");

        let mut t = ktap::Ktap::plan(3);
        let has_tsc = cpu_has_tsc();
        t.check(has_tsc, "cpu_has_tsc");
        if has_tsc {
            let first = rdtsc();
            let second = rdtsc();
            t.diag(format_args!(
                "rdtsc: first={} second={} delta={}",
                first,
                second,
                second.wrapping_sub(first)
            ));
            t.check(second > first, "tsc_advances");
        } else {
            t.skip("tsc_advances", "the CPU has no time-stamp counter");
        }
        // `init` runs in the task that loads the module (the agent's loader, or insmod).
        let loader = kernel::current!().pid();
        t.diag(format_args!("loaded by pid {loader}"));
        t.check(loader > 1, "runs_in_the_loading_task");
        t.finish();

        // Failed checks are reported through KTAP; the module still loads.
        Ok(RustHello)
    }
}

impl Drop for RustHello {
    fn drop(&mut self) {
        pr_info!("Goodbye from Rust\n");
    }
}
