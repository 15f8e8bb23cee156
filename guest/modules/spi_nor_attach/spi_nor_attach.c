// SPDX-License-Identifier: GPL-2.0
/*
 * spi_nor_attach: SPI has no sysfs new_device, so this is how the harness puts
 * a SPI-NOR flash on an emulated adapter's SPI controller.
 *
 *   echo dln2-spi.1.auto > /sys/kernel/debug/spi_nor_attach/new_device
 *
 * looks the platform device up by name, checks that dln2-spi is bound to it,
 * and registers a "spi-nor" device on chip select 0 of its controller; spi-nor
 * then probes the flash by JEDEC ID. The new device belongs to the controller:
 * it goes away when the controller does (unbind, unplug), and nothing here
 * keeps a pointer to it.
 */
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/spi/spi.h>
#include <linux/string.h>

static struct dentry *attach_dir;
static unsigned int max_speed_hz = 1000000;
module_param(max_speed_hz, uint, 0644);
MODULE_PARM_DESC(max_speed_hz, "SPI clock for the new flash device");

static int attach_flash(const char *name)
{
	struct spi_board_info info = {
		.modalias = "spi-nor",
		.chip_select = 0,
		.mode = SPI_MODE_0,
	};
	struct spi_controller *ctlr = NULL;
	struct spi_device *spi;
	struct device *dev;
	int ret = 0;

	dev = bus_find_device_by_name(&platform_bus_type, NULL, name);
	if (!dev)
		return -ENODEV;
	device_lock(dev);
	if (!dev->driver || strcmp(dev->driver->name, "dln2-spi"))
		ret = -ENXIO;
	else
		ctlr = spi_controller_get(dev_get_drvdata(dev));
	device_unlock(dev);
	put_device(dev);
	if (ret)
		return ret;
	if (!ctlr)
		return -ENODEV;
	info.max_speed_hz = max_speed_hz;
	info.bus_num = ctlr->bus_num;
	spi = spi_new_device(ctlr, &info);
	spi_controller_put(ctlr);
	return spi ? 0 : -EIO;
}

static ssize_t new_device_write(struct file *file, const char __user *ubuf,
				size_t count, loff_t *ppos)
{
	char name[64] = {};
	int ret;

	if (count >= sizeof(name) || copy_from_user(name, ubuf, count))
		return -EINVAL;
	ret = attach_flash(strim(name));
	return ret ? ret : count;
}

static const struct file_operations new_device_fops = {
	.write = new_device_write,
};

static int __init spi_nor_attach_init(void)
{
	attach_dir = debugfs_create_dir("spi_nor_attach", NULL);
	debugfs_create_file("new_device", 0200, attach_dir, NULL, &new_device_fops);
	return 0;
}

static void __exit spi_nor_attach_exit(void)
{
	debugfs_remove_recursive(attach_dir);
}

module_init(spi_nor_attach_init);
module_exit(spi_nor_attach_exit);
MODULE_DESCRIPTION("Register a spi-nor device on an emulated DLN-2 SPI controller");
MODULE_LICENSE("GPL");
