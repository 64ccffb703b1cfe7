"""The pinned MNN source tree: where it is, whether it is the pinned one, how to get it.

mkbench never ships MNN. The user supplies the tree (MKBENCH_MNN_SRC: a folder, or a .tar /
.tar.gz of the pinned commit, extracted once into the cache), or `fetch()` clones the pinned tag.
A tree is accepted when its content fingerprint matches `mnn/pin.toml`: sha256 over the sorted
(path, sha256 of content) pairs of the files a CPU build reads (see `FINGERPRINT_PARTS`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .. import settings as settings_module
from ..filelock import locked

PIN_FILE = settings_module.SHIPPED / "mnn" / "pin.toml"

# Where a machine set up for mkbench keeps the tree when MKBENCH_MNN_SRC is unset.
DEFAULT_TREE = Path("/var/cache/mkbench/mnn-3.6.1")

# What a CPU build of MNN reads (checked against the Ninja dependency log of a host build: every
# source, header and CMake file it used is covered). Other GPU/NPU backends, docs, demos, apps and
# tools are left out, so a git clone, a GitHub tarball and a trimmed extract of the same commit match.
FINGERPRINT_PARTS = (
    "CMakeLists.txt",
    "cmake",
    "include",
    "express",
    "schema/current",
    "3rd_party/flatbuffers/include",
    "3rd_party/half",
    "3rd_party/rapidjson",
    "source/core",
    "source/cv",
    "source/geometry",
    "source/math",
    "source/shape",
    "source/utils",
    "source/backend/cpu",
    "source/backend/arm82",
    "tools/converter/CMakeLists.txt",
    "tools/audio/CMakeLists.txt",
)

HOW_TO_SUPPLY = (
    "set MKBENCH_MNN_SRC to a folder or .tar.gz of MNN {tag} (commit {commit}), "
    "e.g. from `git clone --depth 1 --branch {tag} {repository}`"
)


class TreeError(RuntimeError):
    """The MNN tree is missing, unreadable or not the pinned one (message: one line, what to do)."""


@dataclass(frozen=True)
class Pin:
    """The MNN release the judge is pinned to (mnn/pin.toml)."""

    tag: str
    commit: str
    repository: str
    fingerprint: str  # see tree_fingerprint()


@dataclass(frozen=True)
class Tree:
    """A located MNN tree and whether it matches the pin."""

    path: Path
    fingerprint: str
    matches_pin: bool


def load_pin(path: Path = PIN_FILE) -> Pin:
    """Read mnn/pin.toml."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)["mnn"]
    return Pin(tag=data["tag"], commit=data["commit"], repository=data["repository"], fingerprint=data["fingerprint"])


def how_to_supply(pin: Pin | None = None) -> str:
    pin = pin or load_pin()
    return HOW_TO_SUPPLY.format(tag=pin.tag, commit=pin.commit, repository=pin.repository)


def fingerprint_files(root: Path) -> list[Path]:
    """The files the fingerprint covers, as sorted paths relative to the tree root."""
    found: list[Path] = []
    for part in FINGERPRINT_PARTS:
        path = root / part
        if path.is_file():
            found.append(Path(part))
        elif path.is_dir():
            for file in path.rglob("*"):
                relative = file.relative_to(root)
                if file.is_file() and not any(p.startswith(".") for p in relative.parts):
                    found.append(relative)
    return sorted(set(found), key=lambda p: p.as_posix())


def tree_fingerprint(root: Path) -> str:
    """sha256 over the sorted lines '<sha256 of content>  <posix path>' of fingerprint_files()."""
    outer = hashlib.sha256()
    for relative in fingerprint_files(root):
        digest = hashlib.sha256((root / relative).read_bytes()).hexdigest()
        outer.update(f"{digest}  {relative.as_posix()}\n".encode())
    return outer.hexdigest()


def _tree_root(candidate: Path) -> Path | None:
    """The MNN root inside a folder: the folder itself, or its single sub-folder (tarball layout)."""
    if (candidate / "source" / "backend" / "cpu" / "CPUOPRegister.cpp").is_file():
        return candidate
    children = [c for c in candidate.iterdir() if c.is_dir()] if candidate.is_dir() else []
    if len(children) == 1:
        return _tree_root(children[0])
    return None


def _extract(tarball: Path, builds_dir: Path) -> Path:
    """Extract a tarball once beside the builds (keyed by its name and size), atomically. The builds
    folder, not the per-home cache: every MKBENCH_HOME (each test has its own) shares one extract."""
    stat = tarball.stat()
    destination = builds_dir / "mnn-src" / f"{tarball.name}-{stat.st_size}"
    if destination.is_dir():
        return destination
    with locked(destination.with_name(destination.name + ".lock")):  # two processes, one extract
        return destination if destination.is_dir() else _extract_locked(tarball, destination)


def _extract_locked(tarball: Path, destination: Path) -> Path:
    staging = destination.with_name(destination.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise TreeError(f"cannot extract {tarball}: {error}") from error
    staging.rename(destination)
    return destination


def locate(settings: settings_module.Settings) -> Path:
    """The MNN tree's root folder (extracting a tarball if needed); raises TreeError if absent."""
    s = settings
    if s.mnn_src is not None:
        source = s.mnn_src
        if not source.exists():
            raise TreeError(f"MKBENCH_MNN_SRC={source} does not exist: {how_to_supply()}")
        if source.is_file():
            source = _extract(source, s.builds_dir)
        root = _tree_root(source)
        if root is None:
            raise TreeError(f"MKBENCH_MNN_SRC={s.mnn_src} holds no MNN tree: {how_to_supply()}")
        return root
    for candidate in (DEFAULT_TREE, s.cache_dir / "mnn-src" / "git"):
        root = _tree_root(candidate) if candidate.is_dir() else None
        if root is not None:
            return root
    raise TreeError(f"MNN tree not found: {how_to_supply()}")


_fingerprint_cache: dict[tuple[Path, float], str] = {}


def open_tree(settings: settings_module.Settings, *, require_pin: bool = True) -> Tree:
    """Locate the tree and fingerprint it; with require_pin, a tree that differs from the pin raises."""
    root = locate(settings).resolve()
    key = (root, (root / "source" / "backend" / "cpu").stat().st_mtime)
    if key not in _fingerprint_cache:
        _fingerprint_cache[key] = tree_fingerprint(root)
    fingerprint = _fingerprint_cache[key]
    pin = load_pin()
    tree = Tree(path=root, fingerprint=fingerprint, matches_pin=fingerprint == pin.fingerprint)
    if require_pin and not tree.matches_pin:
        raise TreeError(
            f"MNN tree at {root} is not MNN {pin.tag} (fingerprint {fingerprint[:12]} != {pin.fingerprint[:12]}): "
            + how_to_supply(pin)
        )
    return tree


def fetch(settings: settings_module.Settings) -> Path:
    """Clone the pinned tag into the cache with git (needs a network); returns the tree's root."""
    s = settings
    pin = load_pin()
    destination = s.cache_dir / "mnn-src" / "git"
    if _tree_root(destination) if destination.is_dir() else None:
        return destination
    if shutil.which("git") is None:
        raise TreeError(f"git is not installed, cannot fetch MNN: {how_to_supply(pin)}")
    staging = destination.with_name("git.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    clone = subprocess.run(
        ["git", "clone", "--depth", "1", "--branch", pin.tag, pin.repository, str(staging)],
        capture_output=True, text=True, timeout=1800,
    )
    if clone.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        last = (clone.stderr.strip().splitlines() or ["git clone failed"])[-1]
        raise TreeError(f"cannot clone MNN {pin.tag} ({last}): {how_to_supply(pin)}")
    head = subprocess.run(["git", "-C", str(staging), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if head != pin.commit:
        shutil.rmtree(staging, ignore_errors=True)
        raise TreeError(f"tag {pin.tag} of {pin.repository} is commit {head}, not the pinned {pin.commit}")
    staging.rename(destination)
    return destination
