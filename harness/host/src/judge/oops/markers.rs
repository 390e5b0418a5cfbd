//! The marker table: which lines start a kernel failure report, what class each is, and how its
//! title is built; the lines that end a report; the functions a title skips to name the caller.

use super::CrashClass;

/// Where the function in a title comes from; a marker lists the sources to try in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    /// The marker's own `func` group (WARNING's `at file:line func+0x..`, KASAN's `in func+0x..`).
    Marker,
    /// The faulting instruction: x86 `RIP: 0010:func+0x..`, arm64 `pc : func+0x..`.
    Rip,
    /// Lockdep's acquisition site: `..., at: func+0x..`.
    LockSite,
    /// The first reliable call-trace frame (not `? func`) that is not infrastructure.
    Trace,
    /// When the faulting instruction is a bare address (`RIP: 0010:0xffffffffc0201234`: code in
    /// freed module memory, a callback that outlived its module) and the first reliable frame is
    /// a [`CALLBACK_RUNNERS`] entry: the kind of callback and its runner,
    /// `timer callback (call_timer_fn)`.
    Callback,
    /// The faulting instruction's function even when it is infrastructure: a fault in
    /// `destroy_workqueue` whose trace names nothing better is titled by it.
    AnyRip,
}

/// The kernel functions that call a callback, and what the callback is; see [`Func::Callback`].
pub(super) const CALLBACK_RUNNERS: &[(&str, &str)] = &[
    ("call_timer_fn", "timer callback"),
    ("__run_hrtimer", "hrtimer callback"),
    ("process_one_work", "work item"),
    ("tasklet_action_common", "tasklet"),
    ("rcu_do_batch", "RCU callback"),
    ("__handle_irq_event_percpu", "interrupt handler"),
    ("notifier_call_chain", "notifier callback"),
    ("kthread", "kthread function"),
];

/// One row of the table.
pub(super) struct Marker {
    pub(super) class: CrashClass,
    /// Matched against the line without its timestamp or leading blanks; starts with `^`.
    /// Named groups can be used by the title.
    pub(super) pattern: &'static str,
    /// `{name}` is a group from `pattern` or `detail`, `{func}` the blamed function; a `[...]`
    /// part is left out when a placeholder inside it has no value.
    pub(super) title: &'static str,
    pub(super) func: &'static [Func],
    /// A later line supplying more groups, searched this many lines after the marker.
    pub(super) detail: Option<(&'static str, usize)>,
    /// Markers of these classes inside this report are part of it (the `Oops:` line after
    /// `kernel BUG at`), not crashes of their own.
    pub(super) absorbs: &'static [CrashClass],
}

use CrashClass as C;

/// Where a fault's title looks for its function: the faulting instruction, then the callback a
/// bare faulting address was called as, the first useful frame, and at last the faulting
/// instruction's function however generic.
const FAULT: &[Func] = &[Rip, Callback, Trace, AnyRip];
use Func::{AnyRip, Callback, LockSite, Marker as FromMarker, Rip, Trace};

/// The marker table. The first matching row wins, so specific rows come before general ones
/// (`general protection fault` before `Oops:`, `BUG: KASAN:` before `BUG:`). Patterns are
/// matched after the timestamp is removed; they may start with a lowercase `pr_fmt` tag such as
/// `watchdog: ` or `rcu: `.
pub(super) static MARKERS: &[Marker] = &[
    // kernel/module/main.c `do_init_module`, then `dump_stack()`: init returned a positive
    // value; the module is loaded anyway. A FAIL (`CrashClass::outcome`), titled for the module.
    Marker {
        class: C::InitReturn,
        pattern: r"^(?:do_init_module: )?'(?P<module>[^']+)'->init suspiciously returned (?P<ret>\d+), it should follow 0/-E convention",
        title: "init returned {ret} (positive; the kernel expects 0 or -errno) in {module}",
        func: &[],
        detail: None,
        absorbs: &[],
    },
    // fs/sysfs/dir.c `sysfs_warn_dup`, then `dump_stack()`: a name already taken (on a reload,
    // by what the first unload left behind). A FAIL; the registration was refused.
    Marker {
        class: C::DuplicateName,
        pattern: r"^sysfs: cannot create duplicate filename '(?P<path>[^']+)'",
        title: "sysfs: cannot create duplicate filename {path}",
        func: &[],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::RustPanic,
        pattern: r"^(?:[a-z][\w.-]*: )?panicked at (?P<loc>\S+?):?(?:\s+(?P<msg>\S.*))?$",
        title: "Rust panic[: {msg}]",
        func: &[],
        // Rust prints `panicked at file:line:col:` and the message on the next line.
        detail: Some((r"^\s*(?P<msg>[^\s-].*)$", 1)),
        absorbs: &[C::Bug, C::Oops],
    },
    // Debug objects print their finding, then WARN from inside lib/debugobjects.c: the title
    // names the module code that misused the object (syzkaller's form), or the object's `hint`
    // (its callback) when no module frame is on the stack, e.g. for an object freed by vfree.
    Marker {
        class: C::Warning,
        pattern: concat!(
            r"^ODEBUG: (?P<op>\w+) (?P<state>\w+) \(active state \d+\) object(?:: \S+)? object type: (?P<otype>\w+)",
            r"(?: hint: (?:",
            sym!(),
            ")?)?"
        ),
        title: "WARNING: ODEBUG bug in {func}",
        func: &[Trace, FromMarker],
        detail: None,
        absorbs: &[C::Warning],
    },
    Marker {
        class: C::Warning,
        pattern: concat!(
            r"^WARNING: CPU: \d+ PID: \d+ at (?:\S+:\d+ )?(?:",
            sym!(),
            ")?"
        ),
        title: "WARNING[ in {func}]",
        func: &[FromMarker, Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::Bug,
        pattern: r"^kernel BUG at (?P<src>\S+?)!?$",
        title: "kernel BUG[ in {func}]",
        func: &[Rip, Trace],
        detail: None,
        absorbs: &[C::Oops],
    },
    Marker {
        class: C::Bug,
        pattern: concat!(r"^Kernel BUG at (?:", sym!(), ")?"),
        title: "kernel BUG[ in {func}]",
        func: &[FromMarker, Rip, Trace],
        detail: None,
        absorbs: &[C::Oops],
    },
    Marker {
        class: C::NullDeref,
        pattern: r"^(?:BUG: kernel NULL pointer dereference|BUG: unable to handle kernel NULL pointer dereference|Unable to handle kernel NULL pointer dereference)",
        title: "BUG: kernel NULL pointer dereference[ in {func}]",
        func: FAULT,
        detail: None,
        absorbs: &[C::Oops],
    },
    Marker {
        class: C::PageFault,
        pattern: r"^(?:BUG: unable to handle (?:page fault|kernel paging request)|Unable to handle kernel paging request)",
        title: "BUG: unable to handle page fault[ in {func}]",
        func: FAULT,
        detail: None,
        absorbs: &[C::Oops],
    },
    Marker {
        class: C::GeneralProtection,
        pattern: r"^(?:Oops: )?(?:segment-related )?general protection fault",
        title: "general protection fault[ in {func}]",
        func: FAULT,
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::Kasan,
        pattern: concat!(r"^BUG: KASAN: (?P<kind>[\w-]+)(?: in ", sym!(), ")?"),
        title: "KASAN: {kind}[ {access}][ in {func}]",
        func: &[FromMarker, Trace],
        detail: Some((r"^(?P<access>Read|Write) (?:of size|at addr)", 4)),
        absorbs: &[C::Oops],
    },
    Marker {
        class: C::Kfence,
        pattern: concat!(r"^BUG: KFENCE: (?P<kind>.+?) in ", sym!()),
        title: "KFENCE: {kind}[ in {func}]",
        func: &[FromMarker, Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::Ubsan,
        pattern: r"^UBSAN: (?P<kind>[\w-]+) in (?P<src>\S+)",
        title: "UBSAN: {kind}[ in {func}]",
        func: &[Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::Lockdep,
        pattern: r"^WARNING: (?:possible circular locking dependency|possible recursive locking|possible irq lock inversion dependency|\S+-safe -> \S+-unsafe lock order) detected",
        title: "possible deadlock[ in {func}]",
        func: &[LockSite, Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::Lockdep,
        pattern: r"^WARNING: inconsistent lock state",
        title: "inconsistent lock state[ in {func}]",
        func: &[LockSite, Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::Lockdep,
        pattern: r"^WARNING: bad unlock balance detected",
        title: "bad unlock balance[ in {func}]",
        func: &[Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::Lockdep,
        pattern: r"^WARNING: suspicious RCU usage",
        title: "suspicious RCU usage[ at {src}]",
        func: &[],
        detail: Some((r"^(?P<src>[\w./-]+:\d+) ", 4)),
        absorbs: &[],
    },
    Marker {
        class: C::Lockdep,
        pattern: r"^\[ BUG: Invalid wait context \]",
        title: "BUG: invalid wait context[ in {func}]",
        func: &[LockSite, Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::Lockdep,
        pattern: r"^WARNING: (?P<what>held lock freed|lock held when returning to user space|Nested lock was not taken)",
        title: "WARNING: {what}[ in {func}]",
        func: &[Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::SleepInAtomic,
        pattern: r"^BUG: (?P<what>scheduling while atomic|sleeping function called from invalid context)",
        title: "BUG: {what}[ in {func}]",
        func: &[Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::SoftLockup,
        pattern: r"^(?:watchdog: )?BUG: soft lockup",
        title: "BUG: soft lockup[ in {func}]",
        func: &[Rip, Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::HardLockup,
        pattern: r"^(?:watchdog: )?Watchdog detected hard LOCKUP",
        title: "BUG: hard lockup[ in {func}]",
        func: &[Rip, Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::HungTask,
        pattern: r"^INFO: task .+:\d+ blocked for more than \d+ seconds",
        title: "INFO: task hung[ in {func}]",
        func: &[Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::RcuStall,
        pattern: r"^(?:rcu: )?INFO: rcu\w* (?:self-)?detected (?:expedited )?stalls?",
        title: "INFO: rcu detected stall[ in {func}]",
        func: &[Rip, Trace],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::WorkqueueLockup,
        pattern: r"^BUG: workqueue lockup",
        title: "BUG: workqueue lockup",
        func: &[],
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::OtherBug,
        pattern: r"^BUG: (?P<what>stack guard page was hit|Bad page state|Bad rss-counter state|workqueue leaked [\w ,]+|spinlock [\w -]+? on CPU)",
        title: "BUG: {what}[ in {func}]",
        func: &[Rip, Trace],
        detail: None,
        absorbs: &[C::Oops],
    },
    Marker {
        class: C::Panic,
        pattern: r"^Kernel panic - not syncing: ?(?P<msg>.*)$",
        title: "kernel panic[: {msg}]",
        func: &[],
        detail: None,
        absorbs: &[],
    },
    // The general `Oops:` and `BUG:` rows last: more specific rows above claim their lines.
    Marker {
        class: C::Oops,
        pattern: r"^(?:Internal error: )?Oops: (?:(?P<what>.+?): )?[0-9a-f]+ \[#\d+\]",
        title: "Oops[: {what}][ in {func}]",
        func: FAULT,
        detail: None,
        absorbs: &[],
    },
    Marker {
        class: C::OtherBug,
        pattern: r"^BUG: (?P<what>[^:!,\[]+)",
        title: "BUG: {what}[ in {func}]",
        func: &[Rip, Trace],
        detail: None,
        absorbs: &[C::Oops],
    },
];

/// Lines that end a report (printed by `print_oops_end_marker`, `panic`, KASAN, KFENCE).
pub(super) const END_OF_REPORT: &str =
    r"^(?:---\[ end trace [0-9a-f]* ?\]---|---\[ end Kernel panic|={20,}\s*$)";

/// Reports that have no end line of their own, only the stack `dump_stack()` prints after the
/// message: each ends with that stack's closing [`END_OF_STACK`] line.
pub(super) const ENDS_WITH_ITS_STACK: &[CrashClass] = &[C::InitReturn, C::DuplicateName];
pub(super) const END_OF_STACK: &str = r"^\s*</TASK>$";

/// Functions that are generic machinery rather than the code at fault: trap and report
/// plumbing, sleeping and locking primitives, allocators, module loading and syscall entry,
/// timer interrupts and sanitizer runtimes. A title skips them to name the caller.
pub const SKIP_FRAMES: &[&str] = &[
    // debug objects (the frees that trigger their checks are listed with the allocators below)
    "debug_print_object",
    r"(?:__)?debug_check_no_obj_freed",
    r"(?:__)?debug_object_\w+",
    // WARN/BUG/oops plumbing
    "__warn",
    "warn_slowpath_fmt",
    "__warn_printk",
    "report_bug",
    "handle_bug",
    "exc_invalid_op",
    r"asm_exc_\w+",
    r"exc_page_fault",
    "do_trap",
    "do_error_trap",
    "die",
    "__die",
    "__die_body",
    "die_addr",
    "oops_end",
    "page_fault_oops",
    "kernelmode_fixup_or_oops",
    "__bad_area_nosemaphore",
    "bad_area_nosemaphore",
    "do_kern_addr_fault",
    "do_user_addr_fault",
    "handle_page_fault",
    "panic",
    "nmi_panic",
    "check_panic_on_warn",
    r"dump_stack\w*",
    "__dump_stack",
    "show_stack",
    "show_regs",
    r"show_trace_log_lvl",
    r"__pfx_\w+",
    "rust_begin_unwind",
    "rust_helper_BUG",
    // sleeping and scheduling
    "__might_sleep",
    "__might_resched",
    "__might_fault",
    "might_fault",
    "__schedule_bug",
    "schedule_debug",
    "__cond_resched",
    "__schedule",
    "schedule",
    "schedule_timeout",
    "schedule_preempt_disabled",
    r"preempt_schedule\w*",
    r"io_schedule\w*",
    r"wait_for_completion\w*",
    "__wait_for_common",
    r"wait_for_common\w*",
    "do_wait_for_common",
    "msleep",
    "msleep_interruptible",
    r"usleep_range\w*",
    "ssleep",
    // waiting for other work
    "__flush_work",
    "flush_work",
    "__flush_workqueue",
    "flush_workqueue",
    "drain_workqueue",
    "destroy_workqueue",
    r"__cancel_work\w*",
    "cancel_work_sync",
    "cancel_delayed_work_sync",
    r"kthread_stop\w*",
    r"synchronize_rcu\w*",
    r"synchronize_srcu\w*",
    "__wait_rcu_gp",
    r"rcu_barrier\w*",
    // locks and lockdep
    r"__mutex_lock\w*",
    r"mutex_lock\w*",
    "mutex_unlock",
    "__mutex_unlock_slowpath",
    "down",
    r"down_(?:read|write|interruptible|killable|timeout|trylock)\w*",
    r"__down\w*",
    "up",
    "up_read",
    "up_write",
    r"_raw_spin_\w+",
    r"_raw_read_\w+",
    r"_raw_write_\w+",
    r"do_raw_spin_\w+",
    r"queued_spin_\w+",
    r"native_queued_spin_\w+",
    "lock_acquire",
    "lock_release",
    "__lock_acquire",
    "__lock_release",
    "lock_acquired",
    "lock_contended",
    "print_circular_bug",
    "check_noncircular",
    "check_prev_add",
    "check_prevs_add",
    "validate_chain",
    "print_usage_bug",
    r"mark_lock\w*",
    "valid_state",
    "print_unlock_imbalance_bug",
    r"lockdep_\w+",
    "rcu_lock_acquire",
    "rcu_lock_release",
    r"__rcu_read_\w+",
    // allocators and string helpers
    "kmalloc",
    r"kmalloc_trace\w*",
    r"kmalloc_node\w*",
    "__kmalloc",
    r"__kmalloc_\w+",
    r"kmem_cache_alloc\w*",
    "kmem_cache_free",
    "kfree",
    "kzalloc",
    "krealloc",
    r"kvmalloc_node\w*",
    "kvfree",
    "vfree",
    r"slab_free\w*",
    "__slab_free",
    "do_slab_free",
    "___slab_alloc",
    r"__slab_alloc\w*",
    r"slab_alloc\w*",
    r"memcpy\w*",
    r"__memcpy\w*",
    r"memset\w*",
    r"__memset\w*",
    r"memmove\w*",
    r"__memmove\w*",
    "strcpy",
    "strncpy",
    "strlen",
    r"strscpy\w*",
    "bad_page",
    r"free_page_is_bad\w*",
    "free_pages_prepare",
    r"__free_pages\w*",
    r"free_unref_page\w*",
    // sanitizers
    "kasan_report",
    "kasan_check_range",
    r"__kasan_\w+",
    r"kasan_save_\w+",
    r"__asan_\w+",
    r"__hwasan_\w+",
    "print_report",
    r"print_address_description\w*",
    r"__ubsan_handle_\w+",
    r"ubsan_\w+",
    r"kfence_\w+",
    r"__kfence_\w+",
    r"__sanitizer_\w+",
    // module loading, syscall entry
    "do_one_initcall",
    "do_init_module",
    "load_module",
    "init_module_from_file",
    "idempotent_init_module",
    r"__do_sys_\w*init_module",
    r"__se_sys_\w*init_module",
    r"__x64_sys_\w*init_module",
    r"__arm64_sys_\w*init_module",
    "__do_sys_delete_module",
    "__se_sys_delete_module",
    "__x64_sys_delete_module",
    "__arm64_sys_delete_module",
    "free_module",
    "x64_sys_call",
    "do_syscall_64",
    "do_syscall_x64",
    r"entry_SYSCALL_64\w*",
    r"el0_svc\w*",
    "invoke_syscall",
    // interrupts, timers and the watchdogs reporting through them
    "watchdog_timer_fn",
    r"__hrtimer_run_queues",
    "hrtimer_interrupt",
    r"__sysvec_\w+",
    r"sysvec_\w+",
    "update_process_times",
    "tick_nohz_handler",
    "tick_sched_handle",
    "tick_sched_timer",
    "rcu_sched_clock_irq",
    "rcu_pending",
    "print_cpu_stall",
    "check_cpu_stall",
    "rcu_dump_cpu_stacks",
    "dump_cpu_task",
    "nmi_cpu_backtrace",
    "nmi_trigger_cpumask_backtrace",
    "arch_trigger_cpumask_backtrace",
    "trigger_single_cpu_backtrace",
    r"irq_exit\w*",
    r"__irq_exit\w*",
    r"handle_softirqs",
    r"__do_softirq",
];
