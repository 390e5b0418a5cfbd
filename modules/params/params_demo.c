// SPDX-License-Identifier: GPL-2.0
/*
 * params_demo - module parameters on Linux 6.12: the standard types, a
 * string copied into a buffer, an array with its count, sysfs permissions,
 * and a parameter with its own kernel_param_ops that refuses bad values.
 *
 *	insmod params_demo.ko level=7 offset=-40 limit=4000000000 verbose \
 *		name=kmodlab label=lab16 ports=80,443,8080 secret=42
 *
 * init checks, in a KTAP document, that each value arrived, that
 * /sys/module/params_demo/parameters/ shows what it should with the right
 * permissions, and that bad values for `level` are refused with -EINVAL,
 * both when its set function is called directly and when they are written
 * to its sysfs file.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/err.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/namei.h>
#include <linux/stat.h>
#include <linux/string.h>

#include <kmodlab/ktap.h>

#define LEVEL_MIN	0
#define LEVEL_MAX	10
#define LABEL_LEN	16	/* the label buffer, terminator included */
#define MAX_PORTS	4

/*
 * What the spec passes (kmodlab.toml, test good_values).  The checks below
 * compare against these, so a value lost or mangled on its way in fails.
 */
#define SPEC_LEVEL	7
#define SPEC_OFFSET	-40
#define SPEC_LIMIT	4000000000U	/* above INT_MAX: only a uint holds it */
#define SPEC_NAME	"kmodlab"
#define SPEC_LABEL	"lab16"
#define SPEC_SECRET	42
static const unsigned short spec_ports[] = { 80, 443, 8080 };

/* ------------------------------------------------ a validated parameter */

/*
 * level: an int that must stay within LEVEL_MIN..LEVEL_MAX.  The standard
 * int type would accept any int, so it gets its own set function.  The
 * kernel calls .set with the text after "level=" at load time, and again
 * for every write to /sys/module/params_demo/parameters/level (0644).  A
 * negative errno refuses the value: at load time the whole load fails,
 * in sysfs the write() fails, and the variable keeps its old value.
 */
static int level = 3;

static int level_set(const char *val, const struct kernel_param *kp)
{
	int v, err;

	err = kstrtoint(val, 0, &v);	/* also accepts a trailing newline */
	if (err)
		return err;		/* not a number (-EINVAL), or too big (-ERANGE) */
	if (v < LEVEL_MIN || v > LEVEL_MAX) {
		pr_err("level %d is outside %d..%d\n", v, LEVEL_MIN, LEVEL_MAX);
		return -EINVAL;
	}
	*(int *)kp->arg = v;
	return 0;
}

static const struct kernel_param_ops level_ops = {
	.set = level_set,
	.get = param_get_int,	/* reading back is the standard int format */
};

module_param_cb(level, &level_ops, &level, 0644);
MODULE_PARM_DESC(level, "verbosity level, " __stringify(LEVEL_MIN) ".." __stringify(LEVEL_MAX) " (default 3)");

/* ------------------------------------------------ the standard types */

static int offset;
module_param(offset, int, 0444);
MODULE_PARM_DESC(offset, "a signed int (default 0)");

static unsigned int limit = 100;
module_param(limit, uint, 0444);
MODULE_PARM_DESC(limit, "an unsigned int (default 100)");

/* bool: 1/0, y/n, Y/N, on/off; "verbose" alone means true. Writable by root. */
static bool verbose;
module_param(verbose, bool, 0644);
MODULE_PARM_DESC(verbose, "a bool (default N)");

/* charp: the kernel points name at a copy of the text it allocated. */
static char *name = "nobody";
module_param(name, charp, 0444);
MODULE_PARM_DESC(name, "a string the kernel allocates (default nobody)");

/* A string copied into our own buffer; a longer one is refused (-ENOSPC). */
static char label[LABEL_LEN] = "none";
module_param_string(label, label, sizeof(label), 0444);
MODULE_PARM_DESC(label, "a string copied into a " __stringify(LABEL_LEN) "-byte buffer");

/* An array: "ports=80,443"; nr_ports is set to how many were given. */
static unsigned short ports[MAX_PORTS];
static unsigned int nr_ports;
module_param_array(ports, ushort, &nr_ports, 0444);
MODULE_PARM_DESC(ports, "up to " __stringify(MAX_PORTS) " port numbers");

/* Permission 0: settable at load time, but no file in sysfs at all. */
static int secret;
module_param(secret, int, 0);
MODULE_PARM_DESC(secret, "an int with no sysfs file");

/* ------------------------------------------------ looking at sysfs */

#define PARAM_DIR "/sys/module/" KBUILD_MODNAME "/parameters/"

/* The permission bits of a parameter's sysfs file, or a negative errno. */
static int sysfs_mode(const char *param)
{
	char path[96];
	struct path p;
	int mode, err;

	snprintf(path, sizeof(path), PARAM_DIR "%s", param);
	err = kern_path(path, LOOKUP_FOLLOW, &p);
	if (err)
		return err;
	mode = d_inode(p.dentry)->i_mode & 0777;
	path_put(&p);
	return mode;
}

/* Reads a parameter's sysfs file into buf (NUL-terminated); a negative errno on failure. */
static ssize_t sysfs_read(const char *param, char *buf, size_t size)
{
	char path[96];
	struct file *f;
	loff_t pos = 0;
	ssize_t n;

	snprintf(path, sizeof(path), PARAM_DIR "%s", param);
	f = filp_open(path, O_RDONLY, 0);
	if (IS_ERR(f))
		return PTR_ERR(f);
	n = kernel_read(f, buf, size - 1, &pos);
	filp_close(f, NULL);
	buf[n < 0 ? 0 : n] = '\0';
	return n;
}

/* Writes text to a parameter's sysfs file, as `echo text > file` would: bytes written or -errno. */
static ssize_t sysfs_write(const char *param, const char *text)
{
	char path[96];
	struct file *f;
	loff_t pos = 0;
	ssize_t n;

	snprintf(path, sizeof(path), PARAM_DIR "%s", param);
	f = filp_open(path, O_WRONLY, 0);
	if (IS_ERR(f))
		return PTR_ERR(f);
	n = kernel_write(f, text, strlen(text), &pos);
	filp_close(f, NULL);
	return n;
}

/* Our own entry in the module's parameter table (THIS_MODULE->kp). */
static const struct kernel_param *find_param(const char *param)
{
	unsigned int i;

	for (i = 0; i < THIS_MODULE->num_kp; i++)
		if (!strcmp(THIS_MODULE->kp[i].name, param))
			return &THIS_MODULE->kp[i];
	return NULL;
}

/* ------------------------------------------------------------- init */

static int __init params_demo_init(void)
{
	const struct kernel_param *kp = find_param("level");
	bool ports_ok, modes_ok, reads_ok, direct_ok, sysfs_ok;
	int before, e_big, e_neg, e_word, e_edge;
	ssize_t w_bad, w_good, w_ro;
	char buf[64];
	unsigned int i;
	struct ktap t;

	ktap_plan(&t, 13);
	ktap_diag("level=%d offset=%d limit=%u verbose=%d name=%s label=%s nr_ports=%u secret=%d",
		  level, offset, limit, verbose, name, label, nr_ports, secret);

	/* 1-8: every value arrived as the spec passed it. */
	ktap_check(&t, level == SPEC_LEVEL, "level_arrived");
	ktap_check(&t, offset == SPEC_OFFSET, "int_offset_arrived");
	ktap_check(&t, limit == SPEC_LIMIT, "uint_limit_arrived");
	ktap_check(&t, verbose, "bool_verbose_without_value_is_true");
	ktap_check(&t, name && !strcmp(name, SPEC_NAME), "charp_name_arrived");
	ktap_check(&t, !strcmp(label, SPEC_LABEL), "string_label_copied");
	ports_ok = nr_ports == ARRAY_SIZE(spec_ports);
	for (i = 0; ports_ok && i < nr_ports; i++)
		ports_ok = ports[i] == spec_ports[i];
	ktap_check(&t, ports_ok, "array_ports_and_count_arrived");
	ktap_check(&t, secret == SPEC_SECRET, "secret_arrived_without_sysfs_file");

	/* 9-10: sysfs shows each parameter with its mode, and its value. */
	if (sysfs_mode("") < 0) {
		ktap_skip(&t, "sysfs_modes", "no " PARAM_DIR " (is sysfs mounted?)");
		ktap_skip(&t, "sysfs_reads_back", "no sysfs");
	} else {
		ktap_diag("modes: level %o verbose %o offset %o name %o label %o ports %o secret %d",
			  sysfs_mode("level"), sysfs_mode("verbose"), sysfs_mode("offset"),
			  sysfs_mode("name"), sysfs_mode("label"), sysfs_mode("ports"),
			  sysfs_mode("secret"));
		modes_ok = sysfs_mode("level") == 0644 && sysfs_mode("verbose") == 0644 &&
			   sysfs_mode("offset") == 0444 && sysfs_mode("limit") == 0444 &&
			   sysfs_mode("name") == 0444 && sysfs_mode("label") == 0444 &&
			   sysfs_mode("ports") == 0444 && sysfs_mode("secret") == -ENOENT;
		ktap_check(&t, modes_ok, "sysfs_modes");

		reads_ok = sysfs_read("ports", buf, sizeof(buf)) > 0 &&
			   !strcmp(buf, "80,443,8080\n");
		reads_ok &= sysfs_read("limit", buf, sizeof(buf)) > 0 &&
			    !strcmp(buf, "4000000000\n");
		reads_ok &= sysfs_read("verbose", buf, sizeof(buf)) > 0 &&
			    !strcmp(buf, "Y\n");
		ktap_check(&t, reads_ok, "sysfs_reads_back");
	}

	/*
	 * 11: level's own set function refuses what is out of range, and
	 * nothing changes.  level is writable in sysfs, so hold the module's
	 * parameter lock, as the sysfs code does around each .set call.
	 */
	kernel_param_lock(THIS_MODULE);
	before = level;
	e_big = kp ? kp->ops->set("11", kp) : -ENOENT;
	e_neg = kp ? kp->ops->set("-1", kp) : -ENOENT;
	e_word = kp ? kp->ops->set("seven", kp) : -ENOENT;
	direct_ok = e_big == -EINVAL && e_neg == -EINVAL && e_word == -EINVAL &&
		    level == before;
	e_edge = kp ? kp->ops->set("10", kp) : -ENOENT;
	direct_ok &= e_edge == 0 && level == LEVEL_MAX;
	level = before;
	kernel_param_unlock(THIS_MODULE);
	ktap_diag("level_ops.set: \"11\" -> %d, \"-1\" -> %d, \"seven\" -> %d, \"10\" -> %d",
		  e_big, e_neg, e_word, e_edge);
	ktap_check(&t, direct_ok, "level_set_rejects_out_of_range");

	/* 12-13: the same through sysfs, as a user writing to the files would. */
	if (sysfs_mode("") < 0) {
		ktap_skip(&t, "sysfs_write_rejects_out_of_range", "no sysfs");
		ktap_skip(&t, "sysfs_read_only_refuses_write", "no sysfs");
	} else {
		w_bad = sysfs_write("level", "42\n");
		sysfs_ok = w_bad == -EINVAL && level == before;
		w_good = sysfs_write("level", "5\n");
		sysfs_ok &= w_good == 2 && level == 5;
		level = before;
		/* root may not open a 0444 parameter for writing: sysfs says -EACCES. */
		w_ro = sysfs_write("name", "intruder\n");
		ktap_diag("write level \"42\" -> %zd, \"5\" -> %zd; write name -> %zd",
			  w_bad, w_good, w_ro);
		ktap_check(&t, sysfs_ok, "sysfs_write_rejects_out_of_range");
		ktap_check(&t, w_ro == -EACCES && !strcmp(name, SPEC_NAME),
			   "sysfs_read_only_refuses_write");
	}

	ktap_finish(&t);
	return 0;
}

static void __exit params_demo_exit(void)
{
	pr_info("unloading: level=%d name=%s label=%s\n", level, name, label);
}

module_init(params_demo_init);
module_exit(params_demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("Module parameters: standard types, a copied string, an array, sysfs modes, a validating kernel_param_ops");
