// SPDX-License-Identifier: GPL-2.0
/*
 * Provokes the lockdep, might_sleep and debugobjects reports that LKDTM has
 * no trigger for, so the harness's splat parser is tested on real kernel output.
 * Write one of: abba, recursive, unlock, atomic-sleep, odebug, hung-io  to
 * /sys/kernel/debug/splat_selftest/trigger
 */
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/timer.h>

static DEFINE_MUTEX(selftest_lock_a);
static DEFINE_MUTEX(selftest_lock_b);
static DEFINE_SPINLOCK(selftest_spin);
static struct dentry *selftest_dir;

static noinline void selftest_take_ab(void)
{
	mutex_lock(&selftest_lock_a);
	mutex_lock(&selftest_lock_b);
	mutex_unlock(&selftest_lock_b);
	mutex_unlock(&selftest_lock_a);
}

static noinline void selftest_take_ba(void)
{
	mutex_lock(&selftest_lock_b);
	mutex_lock(&selftest_lock_a);
	mutex_unlock(&selftest_lock_a);
	mutex_unlock(&selftest_lock_b);
}

static noinline void selftest_recursive(void)
{
	spin_lock(&selftest_spin);
	spin_lock(&selftest_spin);
}

static noinline void selftest_bad_unlock(void)
{
	mutex_unlock(&selftest_lock_a);
}

static noinline void selftest_atomic_sleep(void)
{
	spin_lock(&selftest_spin);
	msleep(1);
	spin_unlock(&selftest_spin);
}

struct selftest_timed {
	struct timer_list timer;
};

static void selftest_timer_fn(struct timer_list *timer)
{
}

/* Frees an object whose timer is pending: ODEBUG reports it (and deactivates the timer). */
static noinline void selftest_free_active_timer(void)
{
	struct selftest_timed *obj = kzalloc(sizeof(*obj), GFP_KERNEL);

	if (!obj)
		return;
	timer_setup(&obj->timer, selftest_timer_fn, 0);
	mod_timer(&obj->timer, jiffies + 3600 * HZ);
	kfree(obj);
}

/* Sleeps uninterruptibly in I/O wait for good: the hung-task report says "in I/O wait". */
static noinline void selftest_hang_in_io(void)
{
	set_current_state(TASK_UNINTERRUPTIBLE);
	io_schedule();
}

static ssize_t trigger_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	char buf[32] = {};

	if (count >= sizeof(buf) || copy_from_user(buf, ubuf, count))
		return -EINVAL;
	strim(buf);
	if (!strcmp(buf, "abba")) {
		selftest_take_ab();
		selftest_take_ba();
	} else if (!strcmp(buf, "recursive")) {
		selftest_recursive();
	} else if (!strcmp(buf, "unlock")) {
		selftest_bad_unlock();
	} else if (!strcmp(buf, "atomic-sleep")) {
		selftest_atomic_sleep();
	} else if (!strcmp(buf, "odebug")) {
		selftest_free_active_timer();
	} else if (!strcmp(buf, "hung-io")) {
		selftest_hang_in_io();
	} else {
		return -EINVAL;
	}
	return count;
}

static const struct file_operations trigger_fops = {
	.write = trigger_write,
};

static int __init selftest_init(void)
{
	selftest_dir = debugfs_create_dir("splat_selftest", NULL);
	debugfs_create_file("trigger", 0200, selftest_dir, NULL, &trigger_fops);
	return 0;
}

static void __exit selftest_exit(void)
{
	debugfs_remove_recursive(selftest_dir);
}

module_init(selftest_init);
module_exit(selftest_exit);
MODULE_DESCRIPTION("lockdep/might_sleep report generator for the harness's parser corpus");
MODULE_LICENSE("GPL");
