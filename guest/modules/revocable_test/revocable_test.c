// SPDX-License-Identifier: GPL-2.0
/*
 * revocable_test: a provider and consumers of the tree's revocable API, for
 * the harness's revocable scenarios. Modelled on the kselftest module that
 * came with the API: the provider's resource is a string; every open of
 * "consumer" is a consumer, and its reads return the string, or "(null)"
 * once the provider revoked it.
 *
 *   echo hello > /sys/kernel/debug/revocable_harness/provider   (new provider + consumer file)
 *   cat /sys/kernel/debug/revocable_harness/consumer              (hello)
 *   echo resource_gone > /sys/kernel/debug/revocable_harness/provider   (revoke)
 *
 * A write of new data after a revoke makes a new provider and a new consumer
 * file; opens of the old file keep the old, revoked provider.
 *
 * Each access uses the resource for access_us microseconds before copying it
 * out, as a consumer talking to its device would (2 ms: a few dozen bytes
 * over I2C at 100 kHz); the kselftest's accesses were a few instructions
 * long, too short for readers to overlap often. The length sets how often a
 * revoke's SRCU flip falls inside one shared-handle access while another
 * starts: on 6.12 + revocable-api, 1 revoke in 6.4 hung with 200 us (8 of 10
 * runs of 12 revokes caught the hang), 1 in 1.8 with 2 ms (30 of 30 runs).
 *
 * Two forms of the API are handled. The merged one gives each consumer a
 * handle (revocable_alloc() at open()) that holds the SRCU index of its
 * access: threads sharing one open file share that index. The later one
 * (built with -DREVOCABLE_PER_ACCESS) keeps a provider reference per open
 * file and a struct revocable per access, on the reader's stack.
 */
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/revocable.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#define GONE "(null)"

static unsigned int access_us = 2000;
module_param(access_us, uint, 0644);
MODULE_PARM_DESC(access_us, "microseconds each access uses the resource (0: none)");

static struct dentry *test_dir;
static DEFINE_MUTEX(provider_lock);	/* provider writes; not held by readers */
static struct revocable_provider *provider;
static char *resource;

/* The "consumer" file of one provider; it keeps the provider structure alive for its opens. */
struct consumer_file {
	struct dentry *dentry;
	struct revocable_provider *rp;
#ifndef REVOCABLE_PER_ACCESS
	struct revocable *keep;	/* the merged API's only way to hold a reference */
#endif
};

static struct consumer_file *current_file;

struct consumer {
#ifdef REVOCABLE_PER_ACCESS
	struct revocable_provider *rp;
#else
	struct revocable *rev;
#endif
};

static int consumer_open(struct inode *inode, struct file *file)
{
	struct consumer_file *cf = inode->i_private;
	struct consumer *c;

	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c)
		return -ENOMEM;
#ifdef REVOCABLE_PER_ACCESS
	c->rp = revocable_provider_get(cf->rp);
#else
	c->rev = revocable_alloc(cf->rp);
	if (!c->rev) {
		kfree(c);
		return -ENOMEM;
	}
#endif
	file->private_data = c;
	return 0;
}

static int consumer_release(struct inode *inode, struct file *file)
{
	struct consumer *c = file->private_data;

#ifdef REVOCABLE_PER_ACCESS
	revocable_provider_put(c->rp);
#else
	revocable_free(c->rev);
#endif
	kfree(c);
	return 0;
}

static ssize_t answer(char __user *ubuf, size_t count, loff_t *ppos, const char *data)
{
	if (data && access_us)
		usleep_range(access_us, access_us + access_us / 4);
	data = data ?: GONE;
	return simple_read_from_buffer(ubuf, count, ppos, data, strlen(data));
}

static ssize_t consumer_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	struct consumer *c = file->private_data;
	ssize_t ret;
#ifdef REVOCABLE_PER_ACCESS
	struct revocable rev;

	revocable_init(c->rp, &rev);
	ret = answer(ubuf, count, ppos, revocable_try_access(&rev));
	revocable_withdraw_access(&rev);
	revocable_deinit(&rev);
#else
	ret = answer(ubuf, count, ppos, revocable_try_access(c->rev));
	revocable_withdraw_access(c->rev);
#endif
	return ret;
}

static const struct file_operations consumer_fops = {
	.owner = THIS_MODULE,
	.open = consumer_open,
	.release = consumer_release,
	.read = consumer_read,
	.llseek = default_llseek,
};

/* debugfs_remove() waits for the opens in progress and fails later ones: then drop the ref. */
static void consumer_file_remove(struct consumer_file *cf)
{
	if (!cf)
		return;
	debugfs_remove(cf->dentry);
#ifdef REVOCABLE_PER_ACCESS
	revocable_provider_put(cf->rp);
#else
	revocable_free(cf->keep);
#endif
	kfree(cf);
}

static struct consumer_file *consumer_file_create(struct revocable_provider *rp)
{
	struct consumer_file *cf;

	cf = kzalloc(sizeof(*cf), GFP_KERNEL);
	if (!cf)
		return NULL;
	cf->rp = rp;
#ifdef REVOCABLE_PER_ACCESS
	revocable_provider_get(rp);
#else
	cf->keep = revocable_alloc(rp);
	if (!cf->keep) {
		kfree(cf);
		return NULL;
	}
#endif
	cf->dentry = debugfs_create_file("consumer", 0400, test_dir, cf, &consumer_fops);
	return cf;
}

/* Revoke, then free the resource: no consumer may see it after the revoke returned. */
static void provider_revoke_locked(void)
{
	revocable_provider_revoke(provider);
	provider = NULL;
	kfree(resource);
	resource = NULL;
}

static int provider_create_locked(const char *data)
{
	struct revocable_provider *rp;
	struct consumer_file *cf;
	char *res;

	if (provider)
		return -EBUSY;
	res = kstrdup(data, GFP_KERNEL);
	if (!res)
		return -ENOMEM;
	rp = revocable_provider_alloc(res);
	if (!rp)
		goto nomem;
	/* files still open on the old consumer file keep their (revoked) provider */
	consumer_file_remove(current_file);
	current_file = NULL;
	cf = consumer_file_create(rp);
	if (!cf) {
		revocable_provider_revoke(rp);
		goto nomem;
	}
	current_file = cf;
	provider = rp;
	resource = res;
	return 0;
nomem:
	kfree(res);
	return -ENOMEM;
}

static ssize_t provider_write(struct file *file, const char __user *ubuf, size_t count,
			      loff_t *ppos)
{
	char *data;
	int ret;

	data = memdup_user_nul(ubuf, count);
	if (IS_ERR(data))
		return PTR_ERR(data);
	strim(data);
	mutex_lock(&provider_lock);
	if (!strcmp(data, "resource_gone")) {
		ret = provider ? 0 : -ENODEV;
		if (provider)
			provider_revoke_locked();
	} else {
		ret = provider_create_locked(data);
	}
	mutex_unlock(&provider_lock);
	kfree(data);
	return ret ?: count;
}

static const struct file_operations provider_fops = {
	.owner = THIS_MODULE,
	.write = provider_write,
};

static int __init revocable_test_init(void)
{
	test_dir = debugfs_create_dir("revocable_harness", NULL);
	debugfs_create_file("provider", 0200, test_dir, NULL, &provider_fops);
	return 0;
}

static void __exit revocable_test_exit(void)
{
	mutex_lock(&provider_lock);
	consumer_file_remove(current_file);
	current_file = NULL;
	if (provider)
		provider_revoke_locked();
	mutex_unlock(&provider_lock);
	debugfs_remove_recursive(test_dir);
}

module_init(revocable_test_init);
module_exit(revocable_test_exit);
MODULE_DESCRIPTION("Provider and consumers of the revocable API, for the harness");
MODULE_LICENSE("GPL");
