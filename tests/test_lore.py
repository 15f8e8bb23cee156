"""Mailing-list threads as series input, through b4 (tests/data/series/make_threads.py built
the threads from the nvmem series' own patches: two versions, covers, a review quoting a
hunk with a bare diff fragment, trailers; and a newest version with a patch missing)."""

import subprocess
import sys
from pathlib import Path

import pytest

from harness import lore

SERIES = Path(__file__).parent / "data" / "series"
THREAD = SERIES / "nvmem-survive-unbind.thread.mbox"
INCOMPLETE = SERIES / "nvmem-survive-unbind-incomplete.thread.mbox.gz"
PLAIN = sorted((SERIES / "nvmem-survive-unbind").glob("*.patch"))
ROOT = Path(__file__).resolve().parents[1]


def _patch_ids(*files: Path) -> list[str]:
    ids = []
    for f in files:
        out = subprocess.run(
            ["git", "patch-id", "--stable"], input=f.read_bytes(), capture_output=True, check=True
        )
        ids += [line.split()[0].decode() for line in out.stdout.splitlines()]
    return ids


def test_the_newest_version_of_a_thread_is_the_plain_series_with_its_trailers(tmp_path):
    taken = lore.take(str(THREAD), tmp_path / "t")
    assert (taken.version, taken.patches) == (2, 2)
    assert taken.subject == "[PATCH v2 0/2] nvmem: survive unbind with active consumers"
    assert taken.message_id == "cover-v2.2@lifetime-harness.test"
    # the same changes as the patches the series was written as: the same tree, the same verdict
    assert _patch_ids(taken.mbox) == _patch_ids(*PLAIN)
    text = taken.mbox.read_text()
    assert "Reviewed-by: Rita Reviewer <rita@example.org>" in text  # from the hunk-quoting review
    assert text.count("Tested-by: Tess Tester <tess@example.org>") == 2  # given to the cover
    assert "consumer references now hold the device itself" not in text  # the review's fragment


def test_an_older_version_on_request_and_gzip_as_lore_serves_it(tmp_path):
    v1 = lore.take(str(THREAD), tmp_path / "v1", version=1)
    assert (v1.version, v1.patches) == (1, 1) and _patch_ids(v1.mbox) == _patch_ids(PLAIN[0])
    v2 = lore.take(str(INCOMPLETE), tmp_path / "v2", version=2)
    assert _patch_ids(v2.mbox) == _patch_ids(*PLAIN)


def test_a_newest_version_with_a_patch_missing_is_refused_naming_it(tmp_path):
    with pytest.raises(lore.LoreError) as caught:
        lore.take(str(INCOMPLETE), tmp_path / "t")
    assert str(caught.value).endswith(
        "v3 of the series is incomplete: [3/3] not in the thread (2 of 3 patches); "
        "pass --series-version 2 for v2, or a thread that has them"
    )


def test_what_is_a_thread_and_what_is_a_message_id():
    assert lore.is_thread(THREAD) and lore.is_thread(INCOMPLETE)
    assert not lore.is_thread(PLAIN[0]) and not lore.is_thread(SERIES)
    for spec in ["<cover-v2.2@lifetime-harness.test>", "x@y.org", "https://lore.kernel.org/a/b@c/"]:
        assert lore.is_message_id(spec)
    assert not lore.is_message_id(str(THREAD)) and not lore.is_message_id("patches/")


def _series(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "series", "--base", "HEAD", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_series_refuses_an_incomplete_thread_with_exit_2(tmp_path):
    done = _series("--series", str(INCOMPLETE), "--out", str(tmp_path / "r"))
    assert done.returncode == 2, done.stderr
    assert "v3 of the series is incomplete: [3/3] not in the thread" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_message_id_offline_says_how_to_pass_the_thread_instead(tmp_path):
    done = _series("--series", "<cover-v2.2@lifetime-harness.test>", "--out", str(tmp_path / "r"))
    assert done.returncode == 2, done.stderr
    assert "fetching a thread needs network access to lore.kernel.org" in done.stderr
    assert "https://lore.kernel.org/all/cover-v2.2@lifetime-harness.test/t.mbox.gz" in done.stderr
