/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kmodlab/ktap.h - report test results from a kernel module as KTAP version 1.
 *
 * KTAP is the plain-text result format of kernel tests (KUnit, kselftest);
 * it is specified in Documentation/dev-tools/ktap.rst.  A module that wants
 * kmodlab to judge its own checks prints one document like this:
 *
 *	KTAP version 1
 *	1..3
 *	ok 1 who_is_set
 *	# count_in_range: check failed: count >= 1 (hello.c:40)
 *	not ok 2 count_in_range
 *	ok 3 big_endian # SKIP this CPU is little-endian
 *
 * Usage, from a single thread (typically the module's init function):
 *
 *	static struct ktap t;
 *
 *	ktap_plan(&t, 3);                     // "KTAP version 1" + "1..3"
 *	ktap_check(&t, who != NULL, "who_is_set");
 *	ktap_diag("who=%s", who);             // "# who=..."
 *	ktap_skip(&t, "big_endian", "this CPU is little-endian");
 *	ktap_finish(&t);                      // summary line, plan check
 *
 * Numbers are assigned automatically (1, 2, 3, ... in call order), so cases
 * can be added or removed by editing one line and the plan.
 *
 * Every line goes out through printk(KERN_INFO ...) with no "module: "
 * prefix, even if the including file defines pr_fmt(): KTAP parsers expect
 * the lines to start with "KTAP", "1..", "ok", "not ok" or "#".
 *
 * Test names must not contain '#' or a newline (KTAP reserves '#' for the
 * directive); use lower_case_with_underscores.
 *
 * A module whose checks fail should still return 0 from init: the load
 * succeeds, kmodlab reads the "not ok" lines and reports FAIL with the name
 * of the case.  Returning an error instead would be reported as a load ERROR.
 */
#ifndef KMODLAB_KTAP_H
#define KMODLAB_KTAP_H

#include <linux/printk.h>
#include <linux/string.h>
#include <linux/types.h>

/* The state of one KTAP document.  Zero-initialised storage is fine. */
struct ktap {
	unsigned int planned;	/* N of the "1..N" line */
	unsigned int done;	/* results printed; the next one gets done + 1 */
	unsigned int failed;	/* "not ok" results (SKIPs excluded) */
	unsigned int skipped;	/* results carrying the SKIP directive */
};

/* A diagnostic line: "# <text>".  Takes a printf-style format. */
#define ktap_diag(fmt, ...) \
	printk(KERN_INFO "# " fmt "\n", ##__VA_ARGS__)

/* Start a document of @planned test cases: the version line and the plan. */
static inline void ktap_plan(struct ktap *t, unsigned int planned)
{
	t->planned = planned;
	t->done = 0;
	t->failed = 0;
	t->skipped = 0;
	printk(KERN_INFO "KTAP version 1\n");
	printk(KERN_INFO "1..%u\n", planned);
}

/*
 * Print the next result line: "ok <n> <name>" or "not ok <n> <name>".
 * Returns @passed so callers can write "if (!ktap_result(...)) return;".
 * Prefer ktap_check(), which also explains a failure.
 */
static inline bool ktap_result(struct ktap *t, bool passed, const char *name)
{
	t->done++;
	if (!passed)
		t->failed++;
	printk(KERN_INFO "%s %u %s\n", passed ? "ok" : "not ok", t->done, name);
	return passed;
}

/*
 * Check a condition and print the result.  On failure a diagnostic line
 * first shows the condition as written and where it is, e.g.
 *	# count_in_range: check failed: count <= 5 (hello.c:52)
 * The value of the whole expression is the outcome (true = passed).
 */
#define ktap_check(t, cond, name)					\
({									\
	bool __ktap_passed = !!(cond);					\
									\
	if (!__ktap_passed)						\
		ktap_diag("%s: check failed: %s (%s:%d)", (name), #cond, \
			  kbasename(__FILE__), __LINE__);		\
	ktap_result((t), __ktap_passed, (name));			\
})

/*
 * Record a case that was not run, with the reason:
 *	"ok <n> <name> # SKIP <reason>"
 * A skipped case does not fail the document.
 */
static inline void ktap_skip(struct ktap *t, const char *name,
			     const char *reason)
{
	t->done++;
	t->skipped++;
	printk(KERN_INFO "ok %u %s # SKIP %s\n", t->done, name, reason);
}

/*
 * End the document.  Prints a summary diagnostic (in the style of KUnit's
 * "# Totals:" line) and complains if the number of results does not match
 * the plan, which would leave the document incomplete for any KTAP reader.
 * Returns the number of failed cases (0 when everything passed or skipped).
 */
static inline unsigned int ktap_finish(struct ktap *t)
{
	if (t->done != t->planned)
		ktap_diag("plan mismatch: planned %u cases, reported %u",
			  t->planned, t->done);
	ktap_diag("totals: pass:%u fail:%u skip:%u total:%u",
		  t->done - t->failed - t->skipped, t->failed, t->skipped,
		  t->done);
	return t->failed;
}

#endif /* KMODLAB_KTAP_H */
