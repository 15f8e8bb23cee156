"""What `--affected` selects for series that touch only shared headers or the driver
core: each such series must select the scenarios that exercise that code."""

from pathlib import Path

import pytest

from harness.scenario import load_scenarios, resolve

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = load_scenarios(resolve([]))


@pytest.mark.parametrize(
    "touched, family",
    [
        ("include/linux/gpio/consumer.h", "gpio-sim-"),
        ("include/linux/gpio/driver.h", "gpio-sim-"),
        ("include/linux/gpio.h", "gpio-sim-"),
        ("include/linux/nvmem-provider.h", "nvmem-"),
        ("include/linux/nvmem-consumer.h", "nvmem-"),
        ("include/linux/mtd/spi-nor.h", "mtd-"),
        ("include/linux/spi/spi-mem.h", "mtd-"),
        ("drivers/base/dd.c", ""),
        ("drivers/base/devres.c", ""),
        ("include/linux/device.h", ""),
        ("include/linux/device/driver.h", ""),
    ],
)
def test_a_series_touching_only_shared_code_selects_its_scenarios(touched, family):
    chosen = {sc.name for sc in SHIPPED if sc.touched_by([touched])}
    expected = {sc.name for sc in SHIPPED if sc.name.startswith(family)}
    assert expected and expected <= chosen
