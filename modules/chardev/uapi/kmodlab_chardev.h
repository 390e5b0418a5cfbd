/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The user-space API of the kmodlab_chardev device: the one file both sides include.
 *
 * The module (chardev.c), the C companion (companions/chardev_test.c) and, through bindgen, the
 * Rust companion (companions/chardev_rs/build.rs) all take the ioctl numbers and the struct from
 * here, so they cannot disagree. Only <linux/...> UAPI headers and __u32/__u64 types: the same
 * text must compile in the kernel and in a user program, with the same layout everywhere.
 */
#ifndef _UAPI_KMODLAB_CHARDEV_H
#define _UAPI_KMODLAB_CHARDEV_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* The device node devtmpfs creates: /dev/kmodlab_chardev. */
#define KMODLAB_CHARDEV_NAME "kmodlab_chardev"
/* The most bytes the device holds. */
#define KMODLAB_CHARDEV_CAPACITY 4096

/* What KMODLAB_CHARDEV_IOC_INFO fills in. Fixed-size fields, widest first, no holes. */
struct kmodlab_chardev_info {
	__u64 reads;    /* read() calls that returned data */
	__u64 writes;   /* write() calls that stored data */
	__u32 size;     /* bytes held now */
	__u32 capacity; /* KMODLAB_CHARDEV_CAPACITY */
	__u32 upper;    /* 1 while reads return the data upper-cased */
	__u32 opens;    /* files open on the device now */
};

/*
 * The ioctl "type" (magic) byte: 0xB9 is not taken in the kernel's
 * Documentation/userspace-api/ioctl/ioctl-number.rst (6.12).
 */
#define KMODLAB_CHARDEV_IOC_MAGIC 0xB9

/* Empty the buffer. No argument. */
#define KMODLAB_CHARDEV_IOC_CLEAR _IO(KMODLAB_CHARDEV_IOC_MAGIC, 0)
/* Copy a struct kmodlab_chardev_info to the caller. */
#define KMODLAB_CHARDEV_IOC_INFO _IOR(KMODLAB_CHARDEV_IOC_MAGIC, 1, struct kmodlab_chardev_info)
/* Take a __u32 from the caller: 1 makes reads upper-case the data, 0 turns that off. */
#define KMODLAB_CHARDEV_IOC_SET_UPPER _IOW(KMODLAB_CHARDEV_IOC_MAGIC, 2, __u32)

#endif /* _UAPI_KMODLAB_CHARDEV_H */
