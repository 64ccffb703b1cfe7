"""The pinned MNN tree: pin file, fingerprint, locating (folder or tarball), fetch, doctor checks."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from mkbench import settings as settings_module
from mkbench.mnn import tree


def settings_with(tmp_path: Path, mnn_src: Path | None) -> settings_module.Settings:
    return replace(settings_module.load({}), home=tmp_path / "home", builds_dir=tmp_path / "builds", mnn_src=mnn_src)


def fake_tree(root: Path, register_text: str = "void registerCPUOps() {}\n") -> Path:
    """The smallest folder tree.locate() accepts as an MNN tree."""
    (root / "source" / "backend" / "cpu").mkdir(parents=True)
    (root / "source" / "backend" / "cpu" / "CPUOPRegister.cpp").write_text(register_text)
    (root / "CMakeLists.txt").write_text("project(MNN)\n")
    return root


def test_pin_matches_settings():
    pin = tree.load_pin()
    assert pin.tag == settings_module.MNN_TAG and pin.commit == settings_module.MNN_COMMIT
    assert len(pin.fingerprint) == 64 and pin.repository.startswith("https://")


def test_fingerprint_depends_on_content_and_path_only(tmp_path):
    a = fake_tree(tmp_path / "a")
    b = fake_tree(tmp_path / "b")
    assert tree.tree_fingerprint(a) == tree.tree_fingerprint(b)
    (b / "docs").mkdir()
    (b / "docs" / "notes.md").write_text("not build-relevant")
    (b / "source" / "backend" / "cpu" / ".hidden").write_text("editor junk")
    assert tree.tree_fingerprint(a) == tree.tree_fingerprint(b)
    (b / "source" / "backend" / "cpu" / "CPUOPRegister.cpp").write_text("changed\n")
    assert tree.tree_fingerprint(a) != tree.tree_fingerprint(b)


def test_locate_folder_and_single_subfolder(tmp_path):
    root = fake_tree(tmp_path / "outer" / "MNN-3.6.1")
    assert tree.locate(settings_with(tmp_path, root)) == root
    assert tree.locate(settings_with(tmp_path, tmp_path / "outer")) == root


def test_tarball_is_extracted_once(tmp_path):
    root = fake_tree(tmp_path / "src" / "MNN-3.6.1")
    tarball = tmp_path / "mnn.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(root, arcname="MNN-3.6.1")
    s = settings_with(tmp_path, tarball)
    first = tree.locate(s)
    assert first.is_relative_to(s.builds_dir) and (first / "CMakeLists.txt").is_file()  # shared by every home
    (first / "marker").write_text("still here")
    assert tree.locate(s) == first and (first / "marker").is_file()


def test_a_tree_that_is_not_the_pin_is_refused_with_a_one_line_reason(tmp_path):
    s = settings_with(tmp_path, fake_tree(tmp_path / "mnn"))
    found = tree.open_tree(s, require_pin=False)
    assert not found.matches_pin
    with pytest.raises(tree.TreeError) as error:
        tree.open_tree(s)
    message = str(error.value)
    assert "not MNN 3.6.1" in message and "MKBENCH_MNN_SRC" in message and "\n" not in message


def test_missing_source_says_how_to_supply_it(tmp_path):
    with pytest.raises(tree.TreeError, match="MKBENCH_MNN_SRC"):
        tree.locate(settings_with(tmp_path, tmp_path / "nowhere"))


def _pin_for(monkeypatch, repository: str, commit: str) -> None:
    pin = tree.Pin(tag="3.6.1", commit=commit, repository=repository, fingerprint="0" * 64)
    monkeypatch.setattr(tree, "load_pin", lambda path=tree.PIN_FILE: pin)


def test_fetch_offline_raises_one_line(tmp_path, monkeypatch):
    _pin_for(monkeypatch, str(tmp_path / "no-such-repository"), "0" * 40)
    with pytest.raises(tree.TreeError) as error:
        tree.fetch(settings_with(tmp_path, None))
    assert "MKBENCH_MNN_SRC" in str(error.value) and "\n" not in str(error.value)


def test_fetch_clones_the_pinned_tag(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    upstream = fake_tree(tmp_path / "upstream")
    git = ["git", "-C", str(upstream), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(upstream)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "tree"], check=True)
    subprocess.run([*git, "tag", "3.6.1"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    _pin_for(monkeypatch, str(upstream), commit)
    s = settings_with(tmp_path, None)
    fetched = tree.fetch(s)
    assert (fetched / "source" / "backend" / "cpu" / "CPUOPRegister.cpp").is_file()
    assert tree.fetch(s) == fetched  # second call: already there

    _pin_for(monkeypatch, str(upstream), "f" * 40)
    shutil.rmtree(fetched)
    with pytest.raises(tree.TreeError, match="not the pinned"):
        tree.fetch(s)
