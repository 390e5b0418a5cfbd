// SPDX-License-Identifier: GPL-2.0
/*
 * kmodlab_chardev - a character device with read, write, llseek and ioctl.
 *
 * It registers as a misc device, so the kernel gives it a minor number under
 * major 10 and devtmpfs creates /dev/kmodlab_chardev. The device holds up to
 * 4096 bytes, like a tiny file: write() stores at the file position, read()
 * returns from it, lseek() moves it. Three ioctls, defined in
 * uapi/kmodlab_chardev.h, empty the buffer, report its state and switch
 * upper-casing on or off.
 *
 * User-space programs in companions/ exercise it; see README.md.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/ctype.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/uaccess.h>

#include "uapi/kmodlab_chardev.h"

/* The device's one buffer, shared by every open file. */
static struct {
	struct mutex lock;	/* guards everything below */
	char data[KMODLAB_CHARDEV_CAPACITY];
	size_t size;		/* bytes of data[] in use */
	bool upper;		/* read() upper-cases what it returns */
	u64 reads;
	u64 writes;
} dev = {
	.lock = __MUTEX_INITIALIZER(dev.lock),
};

/* Files open on the device; changed without the lock, so atomic. */
static atomic_t opens = ATOMIC_INIT(0);

static int chardev_open(struct inode *inode, struct file *file)
{
	/*
	 * The misc core has already set file->private_data to our struct
	 * miscdevice. A driver with one state per device could find it there.
	 */
	atomic_inc(&opens);
	return 0;
}

static int chardev_release(struct inode *inode, struct file *file)
{
	atomic_dec(&opens);
	return 0;
}

static ssize_t chardev_read(struct file *file, char __user *buf, size_t count,
			    loff_t *ppos)
{
	char chunk[64];
	size_t done = 0;
	size_t n;
	ssize_t ret;

	if (*ppos < 0)
		return -EINVAL;
	mutex_lock(&dev.lock);
	if (*ppos >= dev.size) {
		ret = 0;	/* end of file */
		goto out;
	}
	n = min_t(size_t, count, dev.size - *ppos);
	/*
	 * copy_to_user() may fault and sleep, which is allowed under a mutex
	 * (never under a spinlock). It returns how many bytes it could NOT copy.
	 */
	if (!dev.upper) {
		if (copy_to_user(buf, dev.data + *ppos, n)) {
			ret = -EFAULT;
			goto out;
		}
	} else {
		/* Upper-case through a small bounce buffer; the stored data stay as written. */
		while (done < n) {
			size_t len = min_t(size_t, n - done, sizeof(chunk));
			size_t i;

			for (i = 0; i < len; i++)
				chunk[i] = toupper(dev.data[*ppos + done + i]);
			if (copy_to_user(buf + done, chunk, len)) {
				ret = -EFAULT;
				goto out;
			}
			done += len;
		}
	}
	/* Move the file position on, or the next read() returns the same bytes again. */
	*ppos += n;
	dev.reads++;
	ret = n;
out:
	mutex_unlock(&dev.lock);
	return ret;
}

static ssize_t chardev_write(struct file *file, const char __user *buf,
			     size_t count, loff_t *ppos)
{
	size_t n;
	ssize_t ret;

	if (*ppos < 0)
		return -EINVAL;
	if (*ppos >= KMODLAB_CHARDEV_CAPACITY)
		return count ? -ENOSPC : 0;
	mutex_lock(&dev.lock);
	n = min_t(size_t, count, KMODLAB_CHARDEV_CAPACITY - *ppos);
	if (copy_from_user(dev.data + *ppos, buf, n)) {
		ret = -EFAULT;
		goto out;
	}
	/* Writing past the end after an lseek() leaves a hole; make it zeros, not old data. */
	if (*ppos > dev.size)
		memset(dev.data + dev.size, 0, *ppos - dev.size);
	*ppos += n;
	dev.size = max_t(size_t, dev.size, *ppos);
	dev.writes++;
	ret = n;
out:
	mutex_unlock(&dev.lock);
	return ret;
}

static loff_t chardev_llseek(struct file *file, loff_t offset, int whence)
{
	size_t size;

	mutex_lock(&dev.lock);
	size = dev.size;
	mutex_unlock(&dev.lock);
	/* SEEK_SET/CUR/END within 0..capacity; SEEK_END counts from the bytes held. */
	return generic_file_llseek_size(file, offset, whence,
					KMODLAB_CHARDEV_CAPACITY, size);
}

static long chardev_ioctl(struct file *file, unsigned int cmd,
			  unsigned long arg)
{
	void __user *argp = (void __user *)arg;

	switch (cmd) {
	case KMODLAB_CHARDEV_IOC_CLEAR:
		mutex_lock(&dev.lock);
		dev.size = 0;
		mutex_unlock(&dev.lock);
		return 0;
	case KMODLAB_CHARDEV_IOC_INFO: {
		/* Zeroed first: padding or a field left unset must not leak kernel stack. */
		struct kmodlab_chardev_info info = {};

		mutex_lock(&dev.lock);
		info.reads = dev.reads;
		info.writes = dev.writes;
		info.size = dev.size;
		info.upper = dev.upper;
		mutex_unlock(&dev.lock);
		info.capacity = KMODLAB_CHARDEV_CAPACITY;
		info.opens = atomic_read(&opens);
		if (copy_to_user(argp, &info, sizeof(info)))
			return -EFAULT;
		return 0;
	}
	case KMODLAB_CHARDEV_IOC_SET_UPPER: {
		__u32 upper;

		if (get_user(upper, (__u32 __user *)argp))
			return -EFAULT;
		if (upper > 1)
			return -EINVAL;
		mutex_lock(&dev.lock);
		dev.upper = upper;
		mutex_unlock(&dev.lock);
		return 0;
	}
	default:
		/* "Inappropriate ioctl for device": the answer for a command we do not know. */
		return -ENOTTY;
	}
}

static const struct file_operations chardev_fops = {
	.owner = THIS_MODULE,
	.open = chardev_open,
	.release = chardev_release,
	.read = chardev_read,
	.write = chardev_write,
	.llseek = chardev_llseek,
	.unlocked_ioctl = chardev_ioctl,
	/* A 32-bit program on a 64-bit kernel: our arguments are pointers to fixed-size data. */
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice chardev_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = KMODLAB_CHARDEV_NAME,
	.fops = &chardev_fops,
	.mode = 0666,
};

static int __init chardev_init(void)
{
	int ret = misc_register(&chardev_misc);

	if (ret) {
		pr_err("misc_register failed: %d\n", ret);
		return ret;
	}
	pr_info("registered /dev/%s (major %d, minor %d)\n", chardev_misc.name,
		MISC_MAJOR, chardev_misc.minor);
	return 0;
}

static void __exit chardev_exit(void)
{
	/* After this no new open() can reach us; the module cannot unload while a file is open. */
	misc_deregister(&chardev_misc);
	pr_info("unregistered after %llu reads and %llu writes\n", dev.reads,
		dev.writes);
}

module_init(chardev_init);
module_exit(chardev_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmodlab");
MODULE_DESCRIPTION("A misc character device with read, write, llseek and ioctl");
