"""Debian source packages for the kernel matrix: names, the private apt setup, the tarball."""

import subprocess

import pytest

from harness import debsource


def test_matrix_names_resolve_by_version_or_package():
    assert debsource.package("7.3").name == "linux-source-7.3"
    assert debsource.package("linux-source-6.1").suite == "bookworm"
    with pytest.raises(debsource.SourceError) as exc:
        debsource.package("5.4")
    assert "known: 6.1 (linux-source-6.1, bookworm)" in str(exc.value)


def test_apt_is_private_to_the_cache(tmp_path):
    """Sources, lists and caches under the harness's root: the host's apt stays untouched."""
    settings = dict(o.split("=", 1) for o in debsource._apt_options(tmp_path)[1::2])
    dirs = {k: v for k, v in settings.items() if k.startswith("Dir::")}
    assert set(dirs) == {
        "Dir::Etc::sourcelist",
        "Dir::Etc::sourceparts",
        "Dir::State::Lists",
        "Dir::Cache",
    }
    assert all(v.startswith(str(tmp_path)) for v in dirs.values())


def test_tarball_comes_out_of_a_real_deb(tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "src").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: linux-source-9.9\nVersion: 9.9.1-1\nArchitecture: all\n"
        "Maintainer: harness <harness@example.org>\nDescription: test\n"
    )
    (root / "usr" / "src" / "linux-source-9.9.tar.xz").write_bytes(b"tarball bytes")
    deb = tmp_path / "linux-source-9.9_9.9.1-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(root), str(deb)], check=True, capture_output=True)
    dest = tmp_path / "out.tar.xz"
    debsource._extract(deb, "./usr/src/linux-source-9.9.tar.xz", dest)
    assert dest.read_bytes() == b"tarball bytes"
    with pytest.raises(debsource.SourceError) as exc:
        debsource._extract(deb, "./usr/src/linux-source-1.0.tar.xz", tmp_path / "none")
    assert "holds no ./usr/src/linux-source-1.0.tar.xz" in str(exc.value)
    assert not (tmp_path / "none").exists() and not (tmp_path / "none.partial").exists()
