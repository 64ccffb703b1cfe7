"""The appliance image: the launcher's choices without an engine, then the image for real.

The engine tests take the image built with the small model (MKBENCH_TEST_IMAGE, default
mkbench:test; built by the fixture only when MKBENCH_TEST_BUILD_IMAGE=1), then use it the way a lab does: `doctor`, a `run-all` of three smoke tasks on the host and the
emulator inside the container with no network, `docker kill` mid-run and the same command again
(every item ends with exactly one finished attempt), a CSV export from the data folder, and a
save/load round trip. They skip, saying why, when no Docker engine answers or it has no such image.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import tarfile
import time
from pathlib import Path

import pytest

from mkbench import image
from mkbench import settings as settings_module
from mkbench.image import ApplianceError, RunOptions, container_spec

CHECKOUT = Path(__file__).resolve().parents[1]
TEST_TAG = os.environ.get("MKBENCH_TEST_IMAGE", "mkbench:test")
SMALL_MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


# ---------------------------------------------------------------- without an engine


def test_a_container_keeps_its_data_in_the_volume_and_gets_what_the_sandbox_needs():
    spec = container_spec(RunOptions(command=("run-all", "--tasks", "smoke"), usb=False))
    assert ("mkbench-data", "/data", False) in spec.mounts
    assert spec.network == "none" and spec.read_only and dict(spec.tmpfs)["/tmp"].startswith("rw,exec")
    assert "seccomp=unconfined" in spec.security_opt and "systempaths=unconfined" in spec.security_opt
    assert spec.cap_add == ("SYS_ADMIN", "NET_ADMIN")  # bwrap mounts and brings up its loopback as root in the image
    assert not spec.privileged and spec.device_cgroup_rules == ()
    argv = spec.argv()
    assert argv[:3] == ["docker", "run", "--rm"] and "--read-only" in argv and ["--network", "none"] == argv[argv.index("--network"):argv.index("--network") + 2]
    assert argv[argv.index("mkbench:latest"):] == ["mkbench:latest", "run-all", "--tasks", "smoke"]
    from docker.api.client import APIClient

    config = spec.host_config(APIClient(base_url="unix:///nonexistent", version="1.41"))
    assert config["Binds"] == ["mkbench-data:/data:rw"] and config["NetworkMode"] == "none" and config["ReadonlyRootfs"]
    assert config["MaskedPaths"] == [] and config["ReadonlyPaths"] == []  # what the command line makes of systempaths=unconfined
    assert "systempaths=unconfined" not in config["SecurityOpt"] and "seccomp=unconfined" in config["SecurityOpt"]


def test_usb_phones_the_hosts_adb_server_and_privileged_containers(tmp_path):
    usb = container_spec(RunOptions(usb=True, data=str(tmp_path)))
    assert (str(tmp_path.resolve()), "/data", False) in usb.mounts and ("/dev/bus/usb", "/dev/bus/usb", False) in usb.mounts
    assert usb.device_cgroup_rules == ("c 189:* rmw",)
    privileged = container_spec(RunOptions(usb=True, privileged=True))
    assert privileged.privileged and privileged.security_opt == () and privileged.device_cgroup_rules == ()
    host_adb = container_spec(RunOptions(adb_server="127.0.0.1:5037", usb=False))
    assert host_adb.network == "host"
    assert dict(host_adb.env) == {"ANDROID_ADB_SERVER_HOST": "127.0.0.1", "ANDROID_ADB_SERVER_PORT": "5037"}
    with pytest.raises(ApplianceError, match="HOST:PORT"):
        container_spec(RunOptions(adb_server="somewhere"))


def test_the_build_context_holds_the_checkout_and_the_pinned_tree_and_is_the_same_twice(tmp_path):
    tree = tmp_path / "MNN-3.6.1"
    (tree / "source").mkdir(parents=True)
    (tree / "source" / "a.cpp").write_text("int a;\n")
    contexts = []
    for _ in range(2):
        out = io.BytesIO()
        image.write_context(out, CHECKOUT, tree)
        contexts.append(out.getvalue())
    assert contexts[0] == contexts[1]  # the builder's cache sees an unchanged context
    with tarfile.open(fileobj=io.BytesIO(contexts[0])) as archive:
        names = archive.getnames()
        inner = tarfile.open(fileobj=archive.extractfile("vendor/mnn.tar"))
        assert inner.getnames() == ["MNN-3.6.1", "MNN-3.6.1/source", "MNN-3.6.1/source/a.cpp"]
    for wanted in ("Dockerfile", "entrypoint.sh", "setup.py", "appliance/mkbench/cli.py", "mnn/pin.toml",
                   "tasks/paper/Unary/Abs.toml", "vendor/README.md"):
        assert wanted in names, wanted
    assert not any("__pycache__" in n or n.split("/")[0] in (".git", ".pytest_cache") or n == "vendor/mnn.tar.gz" for n in names)


def test_a_tarball_tree_goes_in_as_it_is(tmp_path):
    tarball = tmp_path / "MNN-3.6.1.tar.gz"
    tarball.write_bytes(b"not really gzip")
    out = io.BytesIO()
    image.write_context(out, CHECKOUT, tarball)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as archive:
        assert archive.extractfile("vendor/mnn.tar.gz").read() == b"not really gzip"


def _stage_copies(stage: str, destination: str) -> list[tuple[str, str]]:
    """(source in the checkout, target) of every COPY in a Dockerfile stage that lands under destination."""
    copies, current, lines = [], None, (CHECKOUT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    for line in lines:
        words = line.split()
        if words[:1] == ["FROM"]:
            current = words[-1]
        elif words[:1] == ["COPY"] and current == stage and not words[1].startswith("--from") and words[-1].startswith(destination):
            copies += [(source, words[-1]) for source in words[1:-1]]
    return copies


@pytest.mark.parametrize("stage, root, modules", [
    ("mnn", "/opt/mkbench/build-src", ["mkbench.prebuild", "mkbench.mnn.build", "mkbench.mnn.converter_build"]),
    ("model", "/opt/mkbench/model-src", ["mkbench.prebuild", "mkbench.llm.models"]),
])
def test_each_prebuild_stage_copies_every_module_its_builds_import(tmp_path, stage, root, modules):
    """The MNN and model stages hold only the code they run (so other changes keep their layers):
    what they copy must be enough for it, and the modules imported must all come from the copy."""
    import shutil
    import subprocess
    import sys

    copies = _stage_copies(stage, root)
    assert copies, f"no COPY into {root} in stage {stage}"
    for source, target in copies:
        into = tmp_path / target.removeprefix(root + "/").removeprefix(root)
        if (CHECKOUT / source).is_dir():
            shutil.copytree(CHECKOUT / source, into, dirs_exist_ok=True)
        else:
            into.mkdir(parents=True, exist_ok=True) if target.endswith("/") else into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(CHECKOUT / source, into)
    if stage == "model":  # its RUN makes an empty package file (not the chat backends)
        (tmp_path / "appliance" / "mkbench" / "llm" / "__init__.py").touch()
    probe = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
             "print('\\n'.join(getattr(m, '__file__', '') or '' for n, m in sys.modules.items() if n.startswith('mkbench')))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(tmp_path / "appliance")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(path.startswith(str(tmp_path)) for path in result.stdout.split()), result.stdout


def test_no_engine_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ApplianceError) as error:
        image.engine()
    message = str(error.value)
    assert "\n" not in message and "no Docker engine answers at unix:///nonexistent/docker.sock" in message
    assert "dockerd" in message


def test_a_missing_or_unpinned_tree_stops_the_build_before_the_engine(tmp_path, settings):
    from dataclasses import replace

    with pytest.raises(ApplianceError, match="does not exist"):
        image.build(image.BuildOptions(), replace(settings, mnn_src=tmp_path / "nowhere"))
    other = tmp_path / "other"
    (other / "source" / "backend" / "cpu").mkdir(parents=True)
    (other / "source" / "backend" / "cpu" / "CPUOPRegister.cpp").write_text("// not MNN 3.6.1\n")
    with pytest.raises(ApplianceError, match="is not MNN 3.6.1"):
        image.build(image.BuildOptions(), replace(settings, mnn_src=other))


def test_a_damaged_tarball_is_refused_before_loading(tmp_path):
    tarball = tmp_path / "mkbench.tar"
    tarball.write_bytes(b"an image, truncated")
    image.sha_path(tarball).write_text(f"{'0' * 64}  mkbench.tar\n")
    with pytest.raises(ApplianceError, match="damaged"):
        image.load(tarball)
    image.sha_path(tarball).unlink()
    with pytest.raises(ApplianceError, match="--sha256"):
        image.load(tarball)


def test_the_debian_mirror_is_this_machines():
    mirror = image.debian_mirror()
    assert mirror.startswith("http") and "debian" in mirror


# ---------------------------------------------------------------- with an engine


def _engine_or_skip():
    try:
        return image.engine()
    except ApplianceError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    """The image with the small model: MKBENCH_TEST_IMAGE (default mkbench:test) when the engine
    has it; built now only with MKBENCH_TEST_BUILD_IMAGE=1 (a cold build takes about 40 minutes on
    two cores, too much for CI beside the suite), else these tests skip saying how to build it."""
    client = _engine_or_skip()
    try:
        client.images.get(TEST_TAG)
        return TEST_TAG
    except Exception:  # docker.errors.ImageNotFound, or an engine that cannot say
        if os.environ.get("MKBENCH_TEST_BUILD_IMAGE") != "1":
            pytest.skip(f"no image {TEST_TAG}: build it with `./entrypoint.sh appliance build --tag {TEST_TAG} "
                        f"--model {SMALL_MODEL}` (cold: about 40 minutes on two cores), or set MKBENCH_TEST_BUILD_IMAGE=1")
    home = tmp_path_factory.mktemp("image-home")
    settings = settings_module.load({**os.environ, "MKBENCH_HOME": str(home)})
    try:
        image.build(image.BuildOptions(tag=TEST_TAG, model=SMALL_MODEL), settings, say=print)
    except ApplianceError as error:
        if "MKBENCH_MNN_SRC" in str(error) or "MNN tree" in str(error):
            pytest.skip(str(error))
        raise
    return TEST_TAG


class Sink(io.BytesIO):
    def text(self) -> str:
        return self.getvalue().decode("utf-8", "replace")


def _run(tag: str, data: Path, *command: str) -> tuple[int, str]:
    out = Sink()
    code = image.run(container_spec(RunOptions(command=command, image=tag, data=str(data), usb=False)), out=out)
    return code, out.text()


def _finished_attempts(db_path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM attempts WHERE status = 'finished'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
@pytest.mark.engine
def test_doctor_in_the_image(appliance, tmp_path):
    code, output = _run(appliance, tmp_path / "data", "doctor")
    for name in ("MNN tree", "MNN build (host)", "MNN build (arm64)", "MNNConvert (host, from the tree)",
                 "candidate sandbox", "adb server", "llama-cpp-python", "arm64 toolchain", "qemu-aarch64-static",
                 "model (MKBENCH_LLM)"):
        assert any(line.startswith("ok  ") and line[6:].startswith(name + " ") for line in output.splitlines()), f"{name}: {output}"


SMOKE = ("run-all", "--tasks", "Sin,Softplus_2d,CumSum", "-d", "host", "-d", "emulator",
         "-g", "one-shot", "--mode", "scaffolded", "--quiet")


@pytest.mark.slow
@pytest.mark.engine
def test_a_smoke_run_in_the_container_killed_and_run_again_then_exported(appliance, tmp_path):
    """With --network none, on the host and the emulator started inside: docker kill mid-run, the
    same command again resumes, every item ends with exactly one finished attempt, and the CSV
    comes out of the data folder."""
    data = tmp_path / "data"
    db_path = data / "mkbench.sqlite"
    container = image.start(container_spec(RunOptions(command=SMOKE, image=appliance, data=str(data), usb=False)))
    try:
        deadline = time.monotonic() + 900
        while _finished_attempts(db_path) < 1 and time.monotonic() < deadline:
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            time.sleep(1)
        assert _finished_attempts(db_path) >= 1, container.logs().decode()[-3000:]
        container.kill()
        container.wait()
    finally:
        container.remove(force=True)
    killed_at = _finished_attempts(db_path)

    code, output = _run(appliance, data, *SMOKE)
    assert code == 0, output[-3000:]
    with sqlite3.connect(db_path) as db:
        runs = db.execute("SELECT id, status FROM runs").fetchall()
        assert len(runs) == 1 and runs[0][1] == "finished"
        counts = db.execute("SELECT a.task, d.serial, count(*) FROM attempts a JOIN devices d ON d.id = a.device_id "
                            "WHERE a.status = 'finished' GROUP BY a.task, a.generator, a.mode, a.device_id").fetchall()
    assert len(counts) == 6 and all(count == 1 for _, _, count in counts), counts  # 3 tasks x 2 devices, once each
    assert killed_at < 6

    code, output = _run(appliance, data, "export", "--format", "csv")
    assert code == 0, output
    attempts_csv = data / "exports" / f"{runs[0][0]}-attempts.csv"
    rows = list(csv.DictReader(attempts_csv.open()))
    assert len([r for r in rows if r["status"] == "finished"]) == 6
    assert {r["device_emulated"] for r in rows} == {"0", "1"}
    assert {r["task"] for r in rows} == {"Sin", "Softplus_2d", "CumSum"}


@pytest.mark.slow
@pytest.mark.engine
def test_save_and_load_round_trip(appliance, tmp_path):
    client = image.engine()
    before = client.images.get(appliance).id
    saved = image.save(appliance, tmp_path / "mkbench.tar", say=print)
    assert image.sha_path(saved.path).read_text().split() == [saved.sha256, "mkbench.tar"]
    tags = image.load(saved.path, say=print)
    assert appliance in tags and client.images.get(appliance).id == before
