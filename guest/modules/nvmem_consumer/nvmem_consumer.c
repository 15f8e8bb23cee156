// SPDX-License-Identifier: GPL-2.0
/*
 * nvmem_consumer: an in-kernel nvmem consumer for the harness, the failure
 * mode of the nvmem SRCU series. It takes a reference on an nvmem device the
 * way a driver does (nvmem_device_find, by device name) and keeps it while
 * the provider is unbound or unplugged; reads then go through the consumer
 * API (nvmem_device_read) with that reference.
 *
 *   echo "0-00500 4096" > /sys/kernel/debug/nvmem_consumer/attach
 *   dd if=/sys/kernel/debug/nvmem_consumer/read bs=4096 skip=3 count=1
 *   echo > /sys/kernel/debug/nvmem_consumer/detach
 *
 * A read of "read" at offset N returns the device's bytes at N (EOF at the
 * size given at attach: the size of the provider's sysfs nvmem file, since
 * nvmem_dev_size() exists only on newer trees and the module builds on every
 * tree the harness supports), or the errno nvmem_device_read gave: a kernel
 * with the fix answers -ENODEV once the provider is gone; one without it
 * calls into the freed provider, which KASAN reports.
 */
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/nvmem-consumer.h>
#include <linux/rwsem.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#define CHUNK 4096

static struct dentry *consumer_dir;
static DECLARE_RWSEM(consumer_lock);	/* readers: reads; writer: attach/detach */
static struct nvmem_device *consumer_nvmem;
static size_t consumer_size;

static void consumer_detach_locked(void)
{
	if (consumer_nvmem)
		nvmem_device_put(consumer_nvmem);
	consumer_nvmem = NULL;
	consumer_size = 0;
}

static ssize_t attach_write(struct file *file, const char __user *ubuf,
			    size_t count, loff_t *ppos)
{
	struct nvmem_device *nvmem;
	char text[96] = {};
	char name[64] = {};
	size_t size;

	if (count >= sizeof(text) || copy_from_user(text, ubuf, count))
		return -EINVAL;
	if (sscanf(text, "%63s %zu", name, &size) != 2 || !size)
		return -EINVAL;
	nvmem = nvmem_device_find(name, device_match_name);
	if (IS_ERR(nvmem))
		return PTR_ERR(nvmem) == -EPROBE_DEFER ? -ENODEV : PTR_ERR(nvmem);
	down_write(&consumer_lock);
	consumer_detach_locked();
	consumer_nvmem = nvmem;
	consumer_size = size;
	up_write(&consumer_lock);
	return count;
}

static ssize_t detach_write(struct file *file, const char __user *ubuf,
			    size_t count, loff_t *ppos)
{
	down_write(&consumer_lock);
	consumer_detach_locked();
	up_write(&consumer_lock);
	return count;
}

static ssize_t read_read(struct file *file, char __user *ubuf, size_t count,
			 loff_t *ppos)
{
	ssize_t ret;
	size_t len;
	void *buf;

	buf = kmalloc(CHUNK, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	down_read(&consumer_lock);
	if (!consumer_nvmem) {
		ret = -ENXIO;
		goto out;
	}
	if (*ppos >= consumer_size) {
		ret = 0;
		goto out;
	}
	len = min3(count, (size_t)CHUNK, consumer_size - (size_t)*ppos);
	ret = nvmem_device_read(consumer_nvmem, *ppos, len, buf);
	if (ret < 0)
		goto out;
	if (copy_to_user(ubuf, buf, ret)) {
		ret = -EFAULT;
		goto out;
	}
	*ppos += ret;
out:
	up_read(&consumer_lock);
	kfree(buf);
	return ret;
}

static const struct file_operations attach_fops = {
	.write = attach_write,
};

static const struct file_operations detach_fops = {
	.write = detach_write,
};

static const struct file_operations read_fops = {
	.read = read_read,
	.llseek = default_llseek,
};

static int __init nvmem_consumer_init(void)
{
	consumer_dir = debugfs_create_dir("nvmem_consumer", NULL);
	debugfs_create_file("attach", 0200, consumer_dir, NULL, &attach_fops);
	debugfs_create_file("detach", 0200, consumer_dir, NULL, &detach_fops);
	debugfs_create_file("read", 0400, consumer_dir, NULL, &read_fops);
	return 0;
}

static void __exit nvmem_consumer_exit(void)
{
	debugfs_remove_recursive(consumer_dir);
	down_write(&consumer_lock);
	consumer_detach_locked();
	up_write(&consumer_lock);
}

module_init(nvmem_consumer_init);
module_exit(nvmem_consumer_exit);
MODULE_DESCRIPTION("In-kernel nvmem consumer that outlives its provider, for the harness");
MODULE_LICENSE("GPL");
