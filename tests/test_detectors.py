"""Detectors stay on for every item: what the harness's kernel command line does to KASAN,
shown on two real boots of the 6.12 harness kernel that provoke two use-after-frees in a
row (LKDTM READ_AFTER_FREE, then WRITE_AFTER_FREE; tests/data/detectors/README)."""

from pathlib import Path

from harness import boot, splats

DATA = Path(__file__).resolve().parent / "data" / "detectors"


def _cmdline(log: str) -> list[str]:
    line = next(x for x in log.splitlines() if "Kernel command line:" in x)
    return line.split("Kernel command line:", 1)[1].split()


def test_without_kasan_multi_shot_the_second_bug_of_a_boot_is_never_reported():
    log = (DATA / "lkdtm-kasan-twice-one-shot.log").read_text()
    assert "kasan_multi_shot" not in _cmdline(log)
    assert [s.title for s in splats.parse(log)] == [
        "KASAN: slab-use-after-free Read in lkdtm_READ_AFTER_FREE"
    ]


def test_every_hung_task_is_reported_not_only_the_first_ten_of_a_boot():
    """The boot this log is of carried BASE_CMDLINE; a hang in the eleventh item must still
    say which task is stuck (the guest also checks hung_task_warnings before each item)."""
    assert "sysctl.kernel.hung_task_warnings=-1" in boot.BASE_CMDLINE
    log = (DATA / "lkdtm-kasan-twice-one-shot.log").read_text()
    assert "sysctl.kernel.hung_task_warnings=-1" in _cmdline(log)


def test_kasan_multi_shot_reports_the_second_bug_too_but_the_harness_stays_one_shot():
    """What multi-shot would add; the harness reboots after a KASAN report instead (its
    cascades interleave and retitle one bug: see the test below)."""
    log = (DATA / "lkdtm-kasan-twice-multi-shot.log").read_text()
    assert "kasan_multi_shot" in _cmdline(log) and "kasan_multi_shot" not in boot.BASE_CMDLINE
    assert [s.title for s in splats.parse(log)] == [
        "KASAN: slab-use-after-free Read in lkdtm_READ_AFTER_FREE",
        "KASAN: slab-use-after-free Write in lkdtm_WRITE_AFTER_FREE",
    ]


def _item_splats(name: str) -> list[splats.Splat]:
    return splats.parse((DATA / name).read_text(errors="replace"))


def test_a_multi_shot_cascade_compares_as_its_first_report():
    """kasan_multi_shot reports each later touch of a freed object (and of what took its
    memory); series and bisect must still see one bug, the one a one-shot kernel showed."""
    from harness.compare import without_echoes

    unplug = _item_splats("7.3-multi-shot-mtd-unplug-during-read.log")
    assert len(unplug) == 3
    assert [s.title for s in without_echoes(unplug)] == [
        "KASAN: slab-use-after-free Read in __put_mtd_device"
    ]
    unbind = _item_splats("7.3-multi-shot-mtd-unbind-during-read.log")
    kept = without_echoes(unbind)
    assert len(unbind) >= 10 and kept[0].title == "KASAN: slab-use-after-free Read in spi_nor_read"
    assert not any(s.kind == "oops" for s in kept)
    one_shot = splats.parse(
        (DATA.parent / "logs" / "harness-mtd-unbind-spi-device.log").read_text()
    )
    assert splats.same_bug(kept[0], one_shot[0]), "the same bug as the 6.12 one-shot report"
