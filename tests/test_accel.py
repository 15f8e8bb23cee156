"""Accelerator choice without booting: what is forced stays forced, what is chosen may fall back."""

from pathlib import Path

import pytest

from harness import accel


def test_forced_choices_skip_the_probe_and_never_fall_back():
    for name in ("kvm", "tcg"):
        chosen = accel.choose(name, Path("/nonexistent/bzImage"))
        assert chosen.name == name and not chosen.may_fall_back


def test_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="use one of auto, kvm, tcg"):
        accel.choose("hvf", Path("/nonexistent/bzImage"))


def test_auto_kvm_falls_back_once_and_says_why():
    chosen = accel.Accel("kvm", "KVM probe passed: ...")
    assert chosen.may_fall_back
    fallen = chosen.fallen_back("boot 1: the KVM boot printed no kernel output within 30 s")
    assert fallen.name == "tcg" and not fallen.may_fall_back
    assert fallen.reason.startswith("boot 1: the KVM boot printed no kernel output")


def test_bounds_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HARNESS_KVM_PROBE_TIMEOUT", "0.01")
    monkeypatch.setenv("HARNESS_KVM_SILENCE_TIMEOUT", "bogus")
    assert accel.probe_timeout() == 0.01
    assert accel.silence_timeout() == accel.SILENCE_TIMEOUT
    monkeypatch.setenv("HARNESS_ACCEL", "tcg")
    assert accel.requested_from_env(None) == "tcg"
    assert accel.requested_from_env("kvm") == "kvm"


@pytest.mark.parametrize(
    "line",
    [
        b"qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69",
        b"KVM internal error. Suberror: 1",
        b"qemu-system-x86_64: failed to initialize kvm: Permission denied",
    ],
)
def test_qemu_kvm_failures_are_recognised(line):
    assert accel.KVM_FAILED.search(line)


def test_the_probe_needs_the_kernel_to_get_past_early_boot():
    # the harness kernel's own lines (6.12.117 under TCG, the probe's command line)
    booted = (
        b"[    0.000000] Linux version 6.12.117 (root@vm) #1 SMP\n"
        b'[    6.432447] Kernel panic - not syncing: VFS: Unable to mount root fs on "" or '
        b"unknown-block(0,0)\n"
    )
    assert accel.BANNER.search(booted) and accel.REACHED_ROOT.search(booted)
    assert not accel.BANNER.search(b"SeaBIOS (version 1.16.2)\nBooting from ROM...\n")


def test_the_host_tsc_is_measured_alike_twice_and_kept_per_host_boot(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    first, second = accel._measure_tsc_khz(), accel._measure_tsc_khz()
    assert first and second and first > 100_000  # a TSC of at least 100 MHz
    assert abs(first - second) / first < 0.001
    accel.host_tsc_khz.cache_clear()
    kept = accel.host_tsc_khz()
    assert abs(kept - first) / first < 0.001
    assert [p.name for p in (tmp_path / "accel").iterdir()][0].startswith("tsc-khz-")
    assert accel.guest_cmdline("tcg") == (f"tsc_early_khz={kept}",)
    assert accel.guest_cmdline("kvm") == ()
    accel.host_tsc_khz.cache_clear()
