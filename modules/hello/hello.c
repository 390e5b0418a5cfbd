// SPDX-License-Identifier: GPL-2.0
/*
 * hello - the smallest useful kmodlab example.
 *
 * It greets whoever the `who` parameter names, `count` times, checks its
 * own parameters in a KTAP document, and says goodbye when unloaded.
 *
 *	insmod hello.ko who=kmodlab count=2
 *	rmmod hello
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/string.h>

#include <kmodlab/ktap.h>

#define HELLO_MAX_COUNT	5	/* more greetings than this is spam */
#define HELLO_MAX_WHO	32	/* longest name we agree to greet */

/*
 * Module parameters.  Mode 0444 makes them readable (not writable) under
 * /sys/module/hello/parameters/ while the module is loaded.
 */
static char *who = "world";
module_param(who, charp, 0444);
MODULE_PARM_DESC(who, "whom to greet (default: world)");

static int count = 1;
module_param(count, int, 0444);
MODULE_PARM_DESC(count, "how many greetings, 1.." __stringify(HELLO_MAX_COUNT) " (default: 1)");

static int __init hello_init(void)
{
	struct ktap t;
	int i;

	/* The greeting itself; a bad count is clamped here and reported below. */
	for (i = 0; i < clamp(count, 1, HELLO_MAX_COUNT); i++)
		pr_info("Hello, %s!\n", who);

	ktap_plan(&t, 3);
	ktap_diag("who=%s count=%d", who, count);
	ktap_check(&t, who && who[0] != '\0', "who_is_set");
	ktap_check(&t, who && strlen(who) <= HELLO_MAX_WHO, "who_is_short");
	ktap_check(&t, count >= 1 && count <= HELLO_MAX_COUNT, "count_in_range");
	ktap_finish(&t);

	/* Failed checks are reported through KTAP; the module still loads. */
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("Goodbye, %s!\n", who);
}

module_init(hello_init);
module_exit(hello_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("Greets a named visitor and checks its parameters with KTAP");
