"""The pure decisions of scripts/setup_env.py: when a private C runtime is needed, from where."""

import pytest

from scripts import setup_env


@pytest.mark.parametrize("version, needed", [("2.36", True), ("2.38", True), ("2.39", False),
                                             ("2.41", False)])
def test_private_runtime_only_below_glibc_2_39(version, needed):
    assert setup_env.needs_private_runtime("glibc", version) is needed


def test_non_glibc_host_is_refused_with_the_way_out():
    with pytest.raises(setup_env.SetupError, match="container image"):
        setup_env.needs_private_runtime("", "")


def test_debian_archive_uris_from_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment: with a colon\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://other.example/debian bookworm main\n"
        "deb http://other.example/debian-security bookworm-security main\n"
        "deb http://ppa.example/ubuntu jammy main\n")
    assert setup_env.debian_archive_uris(tmp_path) == [
        "http://mirror.example/debian", "http://other.example/debian"]


def test_private_apt_options_keep_every_path_inside_the_workdir(tmp_path):
    options = setup_env.private_apt_options(tmp_path)
    paths = [value.split("=", 1)[1] for value in options[1::2] if "::Dir" in value
             or value.startswith("Dir::")]
    assert paths and all(p == "/dev/null" or p.startswith(str(tmp_path)) for p in paths)
