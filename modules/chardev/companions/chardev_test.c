// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * chardev_test - exercises /dev/kmodlab_chardev from user space, in C.
 *
 * kmodlab builds it on the host as a static program, puts it in the test
 * VM and runs it after the module has loaded; the spec (kmodlab.toml)
 * checks its exit status and the lines it prints. It also runs on any
 * machine with the module loaded:  ./chardev_test /dev/kmodlab_chardev
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../uapi/kmodlab_chardev.h"

static int failures;

/* Prints a failed check and counts it; the program then goes on with the next one. */
#define CHECK(cond, ...)                                        \
	do {                                                    \
		if (!(cond)) {                                  \
			printf("FAILED: " __VA_ARGS__);         \
			printf(" (line %d)\n", __LINE__);          \
			failures++;                             \
		}                                               \
	} while (0)

static int get_info(int fd, struct kmodlab_chardev_info *info)
{
	memset(info, 0xff, sizeof(*info)); /* so fields the driver did not fill stand out */
	if (ioctl(fd, KMODLAB_CHARDEV_IOC_INFO, info) != 0) {
		CHECK(0, "ioctl INFO: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/" KMODLAB_CHARDEV_NAME;
	struct kmodlab_chardev_info info;
	char buf[64], chunk[16];
	size_t got;
	__u32 upper;
	ssize_t n;
	int fd;

	/* Our output goes to a pipe: line buffering keeps it in order with perror's. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ioctl numbers: CLEAR=%#lx INFO=%#lx SET_UPPER=%#lx\n",
	       (unsigned long)KMODLAB_CHARDEV_IOC_CLEAR,
	       (unsigned long)KMODLAB_CHARDEV_IOC_INFO,
	       (unsigned long)KMODLAB_CHARDEV_IOC_SET_UPPER);

	fd = open(path, O_RDWR);
	if (fd < 0) {
		printf("FAILED: open %s: %s\n", path, strerror(errno));
		return 1;
	}

	CHECK(ioctl(fd, KMODLAB_CHARDEV_IOC_CLEAR) == 0, "ioctl CLEAR: %s", strerror(errno));

	n = write(fd, "hello", 5);
	CHECK(n == 5, "write: %zd (%s)", n, n < 0 ? strerror(errno) : "short");
	printf("wrote %zd bytes\n", n);

	/* Back to the start, then read until end of file (a read that returns 0), as cat does. */
	CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek: %s", strerror(errno));
	got = 0;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		size_t keep = (size_t)n < sizeof(buf) - 1 - got ? (size_t)n : sizeof(buf) - 1 - got;

		memcpy(buf + got, chunk, keep);
		got += keep;
	}
	CHECK(n == 0, "read: %s", strerror(errno));
	buf[got] = '\0';
	printf("read back: %s\n", buf);
	CHECK(strcmp(buf, "hello") == 0, "read back `%s`, wrote `hello`", buf);

	if (get_info(fd, &info) == 0) {
		printf("info: size=%u capacity=%u upper=%u opens=%u\n", info.size,
		       info.capacity, info.upper, info.opens);
		CHECK(info.size == 5 && info.capacity == KMODLAB_CHARDEV_CAPACITY &&
		      info.upper == 0 && info.opens >= 1,
		      "info does not match what was done");
	}

	upper = 1;
	CHECK(ioctl(fd, KMODLAB_CHARDEV_IOC_SET_UPPER, &upper) == 0, "ioctl SET_UPPER 1: %s",
	      strerror(errno));
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	printf("upper-cased: %s\n", buf);
	CHECK(strcmp(buf, "HELLO") == 0, "upper-cased read gave `%s`", buf);
	upper = 0;
	CHECK(ioctl(fd, KMODLAB_CHARDEV_IOC_SET_UPPER, &upper) == 0, "ioctl SET_UPPER 0: %s",
	      strerror(errno));

	upper = 2;
	errno = 0;
	CHECK(ioctl(fd, KMODLAB_CHARDEV_IOC_SET_UPPER, &upper) == -1 && errno == EINVAL,
	      "ioctl SET_UPPER 2 should fail with EINVAL: %s", strerror(errno));
	printf("SET_UPPER 2: %s\n", errno == EINVAL ? "EINVAL" : strerror(errno));

	errno = 0;
	CHECK(ioctl(fd, _IO(KMODLAB_CHARDEV_IOC_MAGIC, 0x7f)) == -1 && errno == ENOTTY,
	      "an unknown ioctl should fail with ENOTTY: %s", strerror(errno));
	printf("unknown ioctl: %s\n", errno == ENOTTY ? "ENOTTY" : strerror(errno));

	CHECK(ioctl(fd, KMODLAB_CHARDEV_IOC_CLEAR) == 0, "ioctl CLEAR: %s", strerror(errno));
	if (get_info(fd, &info) == 0) {
		printf("after CLEAR: size=%u\n", info.size);
		CHECK(info.size == 0, "CLEAR left %u bytes", info.size);
	}
	close(fd);

	if (failures) {
		printf("%d checks failed\n", failures);
		return 1;
	}
	printf("all checks passed\n");
	return 0;
}
