// SPDX-License-Identifier: GPL-2.0
/*
 * Provokes the lockdep, might_sleep, debugobjects, RCU-stall, page-state, sysfs,
 * kmemleak and driver use-after-free reports that LKDTM has no trigger for, so
 * the harness's splat parser is tested on real kernel output.
 * Write one of: abba, recursive, unlock, atomic-sleep, odebug, hung-io,
 * mutex-atomic-a, mutex-atomic-b, mutex-atomic-contended, rcu-exp-stall,
 * rcu-tasks-stall, bad-page, leak, devm-priv, devm-buf, sysfs-dup
 * to /sys/kernel/debug/splat_selftest/trigger
 */
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/platform_device.h>
#include <linux/rcupdate.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/timer.h>
#include <linux/workqueue.h>

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

/* Two drivers' bugs of one kind: each takes a mutex where it must not sleep. */
static DEFINE_MUTEX(selftest_sleeping_lock);
static int selftest_counter;

static noinline void selftest_mutex_in_atomic_a(void)
{
	spin_lock(&selftest_spin);
	mutex_lock(&selftest_sleeping_lock);
	selftest_counter++;
	mutex_unlock(&selftest_sleeping_lock);
	spin_unlock(&selftest_spin);
}

static noinline void selftest_mutex_in_atomic_b(void)
{
	preempt_disable();
	mutex_lock(&selftest_sleeping_lock);
	selftest_counter--;
	mutex_unlock(&selftest_sleeping_lock);
	preempt_enable();
}

/* The mutex is held elsewhere, so the atomic caller really sleeps: "scheduling while atomic". */
static atomic_t selftest_holding = ATOMIC_INIT(0);

static int selftest_mutex_holder(void *unused)
{
	mutex_lock(&selftest_sleeping_lock);
	atomic_set(&selftest_holding, 1);
	msleep(500);
	mutex_unlock(&selftest_sleeping_lock);
	return 0;
}

static noinline void selftest_mutex_contended_in_atomic(void)
{
	if (IS_ERR(kthread_run(selftest_mutex_holder, NULL, "selftest_hold")))
		return;
	while (!atomic_read(&selftest_holding))
		msleep(10);
	spin_lock(&selftest_spin);
	mutex_lock(&selftest_sleeping_lock);
	selftest_counter += 2;
	mutex_unlock(&selftest_sleeping_lock);
	spin_unlock(&selftest_spin);
}

/*
 * A reader that spins 8 s on another CPU: inside rcu_read_lock() it stalls an
 * expedited grace period; without it, under a preemptible kernel, it is a
 * holdout of an RCU Tasks grace period (it never switches voluntarily).
 * The grace period starts once the spinner runs (under TCG a kthread's first
 * run can take longer than any fixed sleep).
 */
static atomic_t selftest_spinning = ATOMIC_INIT(0);

static int selftest_spinner(void *in_reader)
{
	unsigned long end;

	if (in_reader)
		rcu_read_lock();
	atomic_set(&selftest_spinning, 1);
	end = jiffies + 8 * HZ;
	while (time_before(jiffies, end))
		cpu_relax();
	if (in_reader)
		rcu_read_unlock();
	return 0;
}

static noinline void selftest_stall_grace_period(bool expedited)
{
	struct task_struct *spinner;
	int cpu = (raw_smp_processor_id() + 1) % num_online_cpus();

	spinner = kthread_create(selftest_spinner, expedited ? (void *)1 : NULL,
				 "selftest_spin");
	if (IS_ERR(spinner))
		return;
	kthread_bind(spinner, cpu);
	wake_up_process(spinner);
	while (!atomic_read(&selftest_spinning))
		msleep(20);
	if (expedited)
		synchronize_rcu_expedited();
	else
		synchronize_rcu_tasks();
}

/* Frees a page the kernel believes mapped: "BUG: Bad page state" (init_on_free=1). */
static noinline void selftest_free_mapped_page(void)
{
	struct page *page = alloc_page(GFP_KERNEL);

	if (!page)
		return;
	atomic_set(&page->_mapcount, 0);
	__free_page(page);
	pr_info("splat_selftest: freed a mapped page\n");	/* no tail call: this frame stays */
}

static void *selftest_leaked;

/* Allocates and forgets: kmemleak's report names this function. */
static noinline void selftest_leak(void)
{
	selftest_leaked = kmalloc(96, GFP_KERNEL);
	WRITE_ONCE(selftest_leaked, NULL);
}

/*
 * A driver that keeps two devm objects past unbind, each used afterwards on its
 * own path: priv by the file write that follows the unbind, buf by the driver's
 * deferred work. Two bugs (two fixes) that share a probe and a free site.
 */
struct selftest_priv {
	struct mutex lock;
	int value;
	char pad[192];
};

static struct selftest_priv *selftest_stale_priv;
static u8 *selftest_stale_buf;

static int selftest_devm_probe(struct platform_device *pdev)
{
	struct selftest_priv *priv = devm_kzalloc(&pdev->dev, sizeof(*priv), GFP_KERNEL);
	u8 *buf = devm_kzalloc(&pdev->dev, 24, GFP_KERNEL);

	if (!priv || !buf)
		return -ENOMEM;
	mutex_init(&priv->lock);
	selftest_stale_priv = priv;
	selftest_stale_buf = buf;
	return 0;
}

static struct platform_driver selftest_devm_driver = {
	.probe = selftest_devm_probe,
	.driver = { .name = "splat_selftest_devm" },
};

/* Binds the driver and unbinds it: devres frees both objects. */
static noinline void selftest_devm_bind_unbind(void)
{
	struct platform_device *pdev;

	if (platform_driver_register(&selftest_devm_driver))
		return;
	pdev = platform_device_register_simple("splat_selftest_devm", -1, NULL, 0);
	if (!IS_ERR(pdev))
		platform_device_unregister(pdev);
	platform_driver_unregister(&selftest_devm_driver);
}

/*
 * A device a removal left behind, registered again under its name: the driver core
 * refuses the second (sysfs_warn_dup). The first is unregistered after, so nothing stays.
 */
static noinline void selftest_register_twice(void)
{
	struct platform_device *first, *again;

	first = platform_device_register_simple("splat_selftest_dup", 0, NULL, 0);
	if (IS_ERR(first))
		return;
	again = platform_device_register_simple("splat_selftest_dup", 0, NULL, 0);
	if (!IS_ERR(again))
		platform_device_unregister(again);
	platform_device_unregister(first);
}

static noinline int selftest_devm_priv_read(struct selftest_priv *priv)
{
	int value;

	mutex_lock(&priv->lock);
	value = priv->value;
	mutex_unlock(&priv->lock);
	return value;
}

static noinline int selftest_devm_buf_read(u8 *buf)
{
	return READ_ONCE(buf[4]);
}

static void selftest_devm_buf_work(struct work_struct *work)
{
	pr_info("splat_selftest: buf %d\n", selftest_devm_buf_read(selftest_stale_buf));
}

static DECLARE_WORK(selftest_buf_work, selftest_devm_buf_work);

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
	} else if (!strcmp(buf, "mutex-atomic-a")) {
		selftest_mutex_in_atomic_a();
	} else if (!strcmp(buf, "mutex-atomic-b")) {
		selftest_mutex_in_atomic_b();
	} else if (!strcmp(buf, "mutex-atomic-contended")) {
		selftest_mutex_contended_in_atomic();
	} else if (!strcmp(buf, "rcu-exp-stall")) {
		selftest_stall_grace_period(true);
	} else if (!strcmp(buf, "rcu-tasks-stall")) {
		selftest_stall_grace_period(false);
	} else if (!strcmp(buf, "bad-page")) {
		selftest_free_mapped_page();
	} else if (!strcmp(buf, "leak")) {
		selftest_leak();
	} else if (!strcmp(buf, "devm-priv")) {
		selftest_devm_bind_unbind();
		pr_info("splat_selftest: priv %d\n", selftest_devm_priv_read(selftest_stale_priv));
	} else if (!strcmp(buf, "sysfs-dup")) {
		selftest_register_twice();
	} else if (!strcmp(buf, "devm-buf")) {
		selftest_devm_bind_unbind();
		schedule_work(&selftest_buf_work);
		flush_work(&selftest_buf_work);
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
MODULE_DESCRIPTION("kernel report generator for the harness's parser corpus");
MODULE_LICENSE("GPL");
