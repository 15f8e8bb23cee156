// SPDX-License-Identifier: GPL-2.0
/*
 * gpio_consumer: an in-kernel GPIO consumer for the harness. It takes a line
 * the way a driver does, gpiod_get() through a lookup table naming the
 * chip's label and the line, and keeps the descriptor while the chip is
 * removed under it; it also registers "wp" lookups for other devices (the
 * nvmem write-protect GPIO of an at24 client, before the client exists).
 *
 *   echo "harness-bank0 3" > /sys/kernel/debug/gpio_consumer/attach
 *   cat /sys/kernel/debug/gpio_consumer/toggle      (sets the line, reads it back: 0 or 1)
 *   echo > /sys/kernel/debug/gpio_consumer/detach
 *   echo "1-0050 harness-wp 0" > /sys/kernel/debug/gpio_consumer/wp
 *
 * A read of "toggle" drives the line to the other level with
 * gpiod_set_value_cansleep() and returns what gpiod_get_value_cansleep()
 * reads back, or the errno either gave: once the chip is gone gpiolib must
 * answer -ENODEV instead of reaching the freed chip. Every other read first
 * reads the line, as the consumer of an input would, so that the getter too
 * is the first call to meet a chip that went away. Where the tree's setter
 * returns void (GPIOD_SET_RETURNS_VOID, from harness/kapi.py), the read-back
 * carries the errno alone.
 */
#include <linux/atomic.h>
#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/gpio/consumer.h>
#include <linux/gpio/machine.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/rwsem.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#define NAME "harness-gpio-consumer"
#define MAX_WP 4

static struct dentry *consumer_dir;
static struct platform_device *consumer_pdev;
static DECLARE_RWSEM(consumer_lock);	/* readers: toggles; writer: attach/detach */
static struct gpio_desc *consumer_desc;
static atomic_t consumer_reads;
static struct gpiod_lookup_table *consumer_lookup;
static int consumer_level;

static DEFINE_MUTEX(wp_lock);
static struct gpiod_lookup_table *wp_lookups[MAX_WP];

/* A table with one entry (and the terminator) for dev_id's con_id on chip LABEL, LINE. */
static struct gpiod_lookup_table *lookup_new(const char *dev_id, const char *label,
					     unsigned int line, const char *con_id)
{
	struct gpiod_lookup_table *t;

	t = kzalloc(struct_size(t, table, 2), GFP_KERNEL);
	if (!t)
		return NULL;
	t->dev_id = kstrdup(dev_id, GFP_KERNEL);
	t->table[0] = (struct gpiod_lookup)GPIO_LOOKUP(kstrdup(label, GFP_KERNEL), line, con_id,
						       GPIO_ACTIVE_HIGH);
	if (!t->dev_id || !t->table[0].key) {
		kfree(t->dev_id);
		kfree(t->table[0].key);
		kfree(t);
		return NULL;
	}
	gpiod_add_lookup_table(t);
	return t;
}

static void lookup_free(struct gpiod_lookup_table *t)
{
	if (!t)
		return;
	gpiod_remove_lookup_table(t);
	kfree(t->table[0].key);
	kfree(t->dev_id);
	kfree(t);
}

static void consumer_detach_locked(void)
{
	if (consumer_desc)
		gpiod_put(consumer_desc);
	consumer_desc = NULL;
	lookup_free(consumer_lookup);
	consumer_lookup = NULL;
}

/* "LABEL LINE": takes the line as an output, low. */
static ssize_t attach_write(struct file *file, const char __user *ubuf, size_t count,
			    loff_t *ppos)
{
	struct gpiod_lookup_table *lookup;
	struct gpio_desc *desc;
	char label[64] = {};
	unsigned int line;
	char *text;
	int ret;

	text = memdup_user_nul(ubuf, count);
	if (IS_ERR(text))
		return PTR_ERR(text);
	ret = sscanf(text, "%63s %u", label, &line) == 2 ? 0 : -EINVAL;
	kfree(text);
	if (ret)
		return ret;
	down_write(&consumer_lock);
	consumer_detach_locked();
	lookup = lookup_new(NAME, label, line, "harness");
	if (!lookup) {
		ret = -ENOMEM;
		goto out;
	}
	desc = gpiod_get(&consumer_pdev->dev, "harness", GPIOD_OUT_LOW);
	if (IS_ERR(desc)) {
		lookup_free(lookup);
		ret = PTR_ERR(desc) == -EPROBE_DEFER ? -ENODEV : PTR_ERR(desc);
		goto out;
	}
	consumer_lookup = lookup;
	consumer_desc = desc;
	consumer_level = 0;
out:
	up_write(&consumer_lock);
	return ret ?: count;
}

static ssize_t detach_write(struct file *file, const char __user *ubuf, size_t count,
			    loff_t *ppos)
{
	down_write(&consumer_lock);
	consumer_detach_locked();
	up_write(&consumer_lock);
	return count;
}

static ssize_t toggle_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	char answer[4];
	int ret, level;

	if (*ppos)
		return 0;
	down_read(&consumer_lock);
	if (!consumer_desc) {
		ret = -ENXIO;
		goto out;
	}
	if (atomic_inc_return(&consumer_reads) & 1) {
		ret = gpiod_get_value_cansleep(consumer_desc);
		if (ret < 0)
			goto out;
	}
	level = !READ_ONCE(consumer_level);
#ifdef GPIOD_SET_RETURNS_VOID
	gpiod_set_value_cansleep(consumer_desc, level);
#else
	ret = gpiod_set_value_cansleep(consumer_desc, level);
	if (ret)
		goto out;
#endif
	ret = gpiod_get_value_cansleep(consumer_desc);
	if (ret < 0)
		goto out;
	WRITE_ONCE(consumer_level, level);
	ret = simple_read_from_buffer(ubuf, count, ppos, answer,
				      scnprintf(answer, sizeof(answer), "%d\n", ret));
out:
	up_read(&consumer_lock);
	return ret;
}

/* "DEVNAME LABEL LINE": a "wp" GPIO for DEVNAME; "DEVNAME" alone removes it. */
static ssize_t wp_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char dev_id[32] = {}, label[64] = {};
	unsigned int line;
	int fields, i, ret = 0;
	char *text;

	text = memdup_user_nul(ubuf, count);
	if (IS_ERR(text))
		return PTR_ERR(text);
	fields = sscanf(text, "%31s %63s %u", dev_id, label, &line);
	kfree(text);
	if (fields != 1 && fields != 3)
		return -EINVAL;
	mutex_lock(&wp_lock);
	for (i = 0; i < MAX_WP; i++) {
		if (wp_lookups[i] && !strcmp(wp_lookups[i]->dev_id, dev_id)) {
			lookup_free(wp_lookups[i]);
			wp_lookups[i] = NULL;
		}
	}
	if (fields == 3) {
		for (i = 0; i < MAX_WP && wp_lookups[i]; i++)
			;
		if (i == MAX_WP)
			ret = -ENOSPC;
		else if (!(wp_lookups[i] = lookup_new(dev_id, label, line, "wp")))
			ret = -ENOMEM;
	}
	mutex_unlock(&wp_lock);
	return ret ?: count;
}

static const struct file_operations attach_fops = { .write = attach_write };
static const struct file_operations detach_fops = { .write = detach_write };
static const struct file_operations toggle_fops = { .read = toggle_read };
static const struct file_operations wp_fops = { .write = wp_write };

static int __init gpio_consumer_init(void)
{
	consumer_pdev = platform_device_register_simple(NAME, PLATFORM_DEVID_NONE, NULL, 0);
	if (IS_ERR(consumer_pdev))
		return PTR_ERR(consumer_pdev);
	consumer_dir = debugfs_create_dir("gpio_consumer", NULL);
	debugfs_create_file("attach", 0200, consumer_dir, NULL, &attach_fops);
	debugfs_create_file("detach", 0200, consumer_dir, NULL, &detach_fops);
	debugfs_create_file("toggle", 0400, consumer_dir, NULL, &toggle_fops);
	debugfs_create_file("wp", 0200, consumer_dir, NULL, &wp_fops);
	return 0;
}

static void __exit gpio_consumer_exit(void)
{
	int i;

	debugfs_remove_recursive(consumer_dir);
	down_write(&consumer_lock);
	consumer_detach_locked();
	up_write(&consumer_lock);
	for (i = 0; i < MAX_WP; i++)
		lookup_free(wp_lookups[i]);
	platform_device_unregister(consumer_pdev);
}

module_init(gpio_consumer_init);
module_exit(gpio_consumer_exit);
MODULE_DESCRIPTION("In-kernel GPIO consumer that outlives its chip, for the harness");
MODULE_LICENSE("GPL");
