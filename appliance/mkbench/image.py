"""The appliance image, through a Docker engine (the `docker` Python SDK): build, run, save, load, shell.

    built = build(BuildOptions(model=...), settings, say=print)   # the base too, when missing and no registry answers
    code = run(container_spec(RunOptions(command=("run-all",))), say=print)
    saved = save("mkbench:latest", Path("mkbench.tar"), say=print)   # and mkbench.tar.sha256 beside it
    tags = load(Path("mkbench.tar"), say=print)                      # verifies the sha256 first

The build context is made here, not taken from the folder: the checkout's files (less what
.dockerignore leaves out), the pinned MNN tree as vendor/mnn.tar(.gz) (checked against the pin
before anything is sent), an optional NDK as vendor/android-ndk/, and the CA certificates pip
trusts on this machine as vendor/pip-ca.pem. The classic builder builds it (the SDK's builder:
no BuildKit, so no frontend image to pull) with the host's network, so RUN steps reach PyPI and
Debian. Where the named base image is missing and no registry answers, the base is made with
debootstrap (Debian bookworm, minbase) and imported.

A container gets what the judge needs and nothing more: the data volume on /data, the root file
system read-only (everything mkbench makes lives in /data, or in a tmpfs /tmp), no network unless
asked (the emulator and its adb server use the container's own loopback), USB phones through
/dev/bus/usb with their character devices allowed (major 189, so phones plugged in later appear
too), and the options the candidate sandbox needs (sandbox.CONTAINER_OPTIONS) unless --privileged.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from . import settings as settings_module
from .mnn import tree as tree_module
from .sandbox import CONTAINER_OPTIONS

DEFAULT_TAG = "mkbench:latest"
DEFAULT_BASE = "debian:bookworm-slim"
DEBOOTSTRAP_BASE = "mkbench-base:bookworm"  # the base made here when no registry answers
DEFAULT_DATA = "mkbench-data"  # the named volume runs keep their data in
CHECKOUT_IN_CONTAINER = "/opt/mkbench/checkout"
USB_DEVICES = "/dev/bus/usb"
USB_CGROUP_RULE = "c 189:* rmw"  # USB character devices, whenever they are plugged in
# Measured: a cold build of the image (small model) peaks at about 14 GB in the engine's folder;
# a tarball of the image needs its size again.
BUILD_FREE_BYTES = 20 << 30
CHUNK = 4 << 20

Say = Callable[[str], None]


class ApplianceError(RuntimeError):
    """The appliance cannot be built, run, saved or loaded; the message (one line) says what to do."""


# ---------------------------------------------------------------- the engine


def engine():
    """A client of the Docker engine (DOCKER_HOST, else the local socket), or ApplianceError."""
    try:
        import docker
    except ImportError:
        raise ApplianceError("the docker Python SDK is missing: pip install docker") from None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except Exception as error:  # the SDK raises DockerException, requests' errors or OSError
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise ApplianceError(f"no Docker engine answers at {where} ({type(error).__name__}): start one "
                             "(`systemctl start docker`; or as root `apt-get install docker.io` and "
                             "`dockerd --iptables=false --bridge=none &`)") from None


def _engine_free_bytes(client) -> int | None:
    """Free space where the engine keeps images, when that folder is on this machine."""
    root = client.info().get("DockerRootDir") or ""
    try:
        return shutil.disk_usage(root).free if root else None
    except OSError:  # a remote engine
        return None


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


# ---------------------------------------------------------------- build


@dataclass(frozen=True)
class BuildOptions:
    """What `mkbench appliance build` makes."""

    tag: str = DEFAULT_TAG
    base: str = DEFAULT_BASE
    model: str | None = None  # a manifest model (default: the manifest's default)
    target: str | None = None  # a Dockerfile stage (default: the last, the appliance)
    ndk: Path | None = None  # an unzipped Android NDK to build and judge arm64 with
    ca_bundle: Path | None = None  # CA certificates pip trusts while building
    mirror: str | None = None  # the Debian mirror debootstrap uses (default: this machine's)


@dataclass(frozen=True)
class Step:
    """One Dockerfile step as the build ran it."""

    number: int
    stage: str
    instruction: str
    seconds: float
    cached: bool


@dataclass(frozen=True)
class Built:
    tag: str
    image_id: str
    base: str
    size: int
    seconds: float
    steps: tuple[Step, ...]

    def stage_seconds(self) -> dict[str, float]:
        """Wall seconds per Dockerfile stage, in build order."""
        totals: dict[str, float] = {}
        for step in self.steps:
            totals[step.stage] = totals.get(step.stage, 0.0) + step.seconds
        return totals


def checkout_root(settings: settings_module.Settings) -> Path:
    """The source checkout holding the Dockerfile (an installed mkbench has none)."""
    root = settings_module.SHIPPED
    if not (root / "Dockerfile").is_file():
        raise ApplianceError(f"no Dockerfile at {root}: build the appliance from a source checkout of mkbench")
    return root


def build(options: BuildOptions, settings: settings_module.Settings, say: Say = print) -> Built:
    """Build the appliance image (and its base, if need be); raises ApplianceError."""
    root = checkout_root(settings)
    tree = _pinned_tree(settings)
    client = engine()
    free = _engine_free_bytes(client)
    if free is not None and free < BUILD_FREE_BYTES:
        raise ApplianceError(f"the Docker engine's folder has {_gib(free)} free; building the appliance needs about "
                             f"{_gib(BUILD_FREE_BYTES)}: free some space (docker system prune)")
    base = ensure_base(client, options.base, options.mirror, say)
    from .llm.models import load_manifest

    model = load_manifest().get(options.model or load_manifest().default).name
    args = {"BASE": base, "MODEL": model}
    say(f"building {options.tag} from {root} (base {base}, model {model}, MNN tree {tree.path})")
    started = time.monotonic()
    with tempfile.TemporaryFile(prefix="mkbench-context-") as context:
        write_context(context, root, settings.mnn_src or tree.path, options.ndk, options.ca_bundle)
        context.seek(0)
        stream = client.api.build(fileobj=context, custom_context=True, tag=options.tag, buildargs=args,
                                  target=options.target, network_mode="host", rm=True, forcerm=True, decode=True)
        image_id, steps = _follow_build(stream, say)
    image = client.images.get(options.tag)
    built = Built(options.tag, image_id or image.id, base, image.attrs.get("Size", 0), time.monotonic() - started, tuple(steps))
    say(f"built {built.tag} ({_gib(built.size)}) in {built.seconds:.0f} s: " +
        ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in built.stage_seconds().items()))
    return built


def _pinned_tree(settings: settings_module.Settings) -> tree_module.Tree:
    try:
        return tree_module.open_tree(settings)
    except tree_module.TreeError as error:
        raise ApplianceError(str(error)) from None


def _follow_build(stream: Iterator[dict], say: Say) -> tuple[str | None, list[Step]]:
    """Print the build's steps as they start (and RUN output lines beginning with 'prebuild:');
    return the image id and the steps with their times."""
    steps: list[Step] = []
    current: dict | None = None
    stage, image_id, last_lines = "", None, []

    def close() -> None:
        if current is not None:
            steps.append(Step(current["number"], current["stage"], current["instruction"],
                              time.monotonic() - current["started"], current["cached"]))

    for chunk in stream:
        if "error" in chunk:
            tail = "; ".join(line for line in last_lines[-3:] if line)
            raise ApplianceError(f"the image build failed: {chunk['error'].strip()}" + (f" (last output: {tail})" if tail else ""))
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        text = chunk.get("stream", "")
        for line in text.splitlines():
            line = line.rstrip()
            if line.startswith("Step ") and " : " in line:
                close()
                number, instruction = line[5:].split(" : ", 1)
                if instruction.upper().startswith("FROM ") and " AS " in instruction.upper():
                    stage = instruction.split()[-1]
                current = {"number": int(number.split("/")[0]), "stage": stage or "base", "instruction": instruction,
                           "started": time.monotonic(), "cached": False}
                say(f"{time.strftime('%H:%M:%S')} [{number}] {instruction[:100]}")
            elif current is not None and "Using cache" in line:
                current["cached"] = True
            elif line.startswith("prebuild:"):
                say(f"{time.strftime('%H:%M:%S')}   {line}")
            elif line.strip():
                last_lines = (last_lines + [line.strip()[:200]])[-5:]
    close()
    return image_id, steps


# ---------------------------------------------------------------- the build context


def write_context(out, root: Path, mnn_source: Path, ndk: Path | None = None, ca_bundle: Path | None = None) -> None:
    """The build context as a tar stream into `out`: the checkout's files (less .dockerignore's
    patterns and vendor/), then vendor/README.md, vendor/mnn.tar[.gz], vendor/android-ndk/ and
    vendor/pip-ca.pem. Owners and times are normalised, so an unchanged file keeps its cache."""
    ignored = _dockerignore(root)
    with tarfile.open(fileobj=out, mode="w|") as archive:
        for path in sorted(_context_files(root, ignored)):
            archive.add(path, arcname=path.relative_to(root).as_posix(), recursive=False, filter=_normalised)
        archive.add(root / "vendor" / "README.md", arcname="vendor/README.md", filter=_normalised)
        _add_mnn(archive, mnn_source)
        if ndk is not None:
            if not (ndk / "build" / "cmake" / "android.toolchain.cmake").is_file():
                raise ApplianceError(f"{ndk} is not an unzipped Android NDK (no build/cmake/android.toolchain.cmake): see ndk/README.md")
            archive.add(ndk, arcname="vendor/android-ndk", filter=_normalised)
        if ca_bundle is not None:
            if not ca_bundle.is_file():
                raise ApplianceError(f"the CA bundle {ca_bundle} does not exist")
            archive.add(ca_bundle, arcname="vendor/pip-ca.pem", filter=_normalised)


def _dockerignore(root: Path) -> list[str]:
    lines = (root / ".dockerignore").read_text().splitlines() if (root / ".dockerignore").is_file() else []
    patterns = [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]
    return patterns + ["vendor"]  # vendor/ is supplied by write_context


def _ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
               or fnmatch.fnmatch(parts[i], pattern.removeprefix("**/"))
               for pattern in patterns for i, prefix in enumerate(prefixes))


def _context_files(root: Path, patterns: list[str]) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not _ignored((here / d).relative_to(root).as_posix(), patterns)]
        for name in files:
            if not _ignored((here / name).relative_to(root).as_posix(), patterns):
                yield here / name


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def _add_mnn(archive: tarfile.TarFile, source: Path) -> None:
    """The tree as the Dockerfile expects it: the user's tarball as it is, or a folder tarred up."""
    if source.is_file():
        name = "vendor/mnn.tar.gz" if source.name.endswith((".tar.gz", ".tgz")) else "vendor/mnn.tar"
        archive.add(source, arcname=name, filter=_normalised)
        return
    with tempfile.TemporaryFile(prefix="mkbench-mnn-") as inner:
        with tarfile.open(fileobj=inner, mode="w|") as tree_archive:  # sorted and normalised: the same tree, the same bytes
            for path in sorted([source, *source.rglob("*")]):
                tree_archive.add(path, arcname=(Path(source.name) / path.relative_to(source)).as_posix(),
                                 recursive=False, filter=_normalised)
        size = inner.tell()
        inner.seek(0)
        info = _normalised(tarfile.TarInfo("vendor/mnn.tar"))
        info.size = size
        archive.addfile(info, inner)


# ---------------------------------------------------------------- the base image


def ensure_base(client, base: str, mirror: str | None, say: Say) -> str:
    """The base image to build on: `base` if the engine has it or a registry gives it; else a Debian
    bookworm made here with debootstrap (kept as mkbench-base:bookworm)."""
    import docker

    for name in (base, DEBOOTSTRAP_BASE):
        try:
            client.images.get(name)
            return name
        except docker.errors.ImageNotFound:
            pass
        if name == base:
            try:
                say(f"pulling {base}")
                client.images.pull(base)
                return base
            except docker.errors.APIError as error:
                say(f"no registry gives {base} ({str(error.explanation or error)[:120]}): using {DEBOOTSTRAP_BASE}")
    say(f"{DEBOOTSTRAP_BASE} is not there yet: making it with debootstrap")
    return debootstrap_base(client, mirror or debian_mirror(), say)


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the first `deb` source for Debian), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["deb"] and len(words) > 2 and words[2] in ("bookworm", "stable"):
                return next(w for w in words[1:] if w.startswith("http"))
            if words[:1] == ["URIs:"] and "debian-security" not in line and "debian" in line:
                return words[1]
    return "http://deb.debian.org/debian"


DEBIAN_SOURCES = """deb {mirror} bookworm main
deb {mirror} bookworm-updates main
deb {security} bookworm-security main
"""


def debootstrap_base(client, mirror: str, say: Say) -> str:
    """Debian bookworm (minbase) made with debootstrap and imported as mkbench-base:bookworm (about a minute)."""
    if shutil.which("debootstrap") is None:
        raise ApplianceError("no registry answers and debootstrap is missing: apt-get install debootstrap "
                             "(or load a Debian bookworm image and pass --base)")
    if os.geteuid() != 0:
        raise ApplianceError("no registry answers, and making the base image with debootstrap needs root: run as root, "
                             "or load a Debian bookworm image and pass --base")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mkbench-base-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        say(f"debootstrap --variant=minbase bookworm from {mirror}")
        result = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
                                capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["failed"])[-1]
            raise ApplianceError(f"debootstrap failed ({last}): check the Debian mirror {mirror} (--mirror)")
        security = mirror.rstrip("/").removesuffix("/debian") + "/debian-security"
        (rootfs / "etc/apt/sources.list").write_text(DEBIAN_SOURCES.format(mirror=mirror, security=security))
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        archive = Path(scratch) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        repository, tag = DEBOOTSTRAP_BASE.split(":")
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag)
    say(f"made {DEBOOTSTRAP_BASE} in {time.monotonic() - started:.0f} s")
    return DEBOOTSTRAP_BASE


# ---------------------------------------------------------------- run


@dataclass(frozen=True)
class RunOptions:
    """How `mkbench appliance run` starts a container."""

    command: tuple[str, ...] = ("run-all",)
    image: str = DEFAULT_TAG
    data: str = DEFAULT_DATA  # a named volume, or a host folder (a path)
    network: str = "none"  # none | host (the host's adb server, an LLM server on the network)
    adb_server: str | None = None  # HOST:PORT of the host's adb server (only one server can own a phone)
    privileged: bool = False
    env: tuple[tuple[str, str], ...] = ()
    name: str | None = None
    checkout: Path | None = None  # mounted read-only on /opt/mkbench/checkout (for `test`)
    usb: bool | None = None  # None: when this machine has /dev/bus/usb
    read_only: bool = True  # the root file system (False for the tests, which may build into the image's builds)
    cap_add: tuple[str, ...] = ()  # capabilities on top (the tests' network namespaces need SYS_ADMIN)


@dataclass(frozen=True)
class ContainerSpec:
    """One container's options, rendered for the SDK (run) or as a docker command line (shell)."""

    image: str
    command: tuple[str, ...]
    mounts: tuple[tuple[str, str, bool], ...]  # (source, target, read-only)
    env: tuple[tuple[str, str], ...]
    network: str
    privileged: bool
    security_opt: tuple[str, ...]
    device_cgroup_rules: tuple[str, ...]
    cap_add: tuple[str, ...] = ()
    tmpfs: tuple[tuple[str, str], ...] = (("/tmp", "rw,exec,nosuid,nodev"),)
    read_only: bool = True
    name: str | None = None
    labels: dict = field(default_factory=lambda: {"mkbench": "appliance"})

    def host_config(self, api) -> dict:
        """The engine's HostConfig. `systempaths=unconfined` is no option of the engine's: the docker
        command line turns it into empty masked and read-only /proc paths, and so does this."""
        engine_options = [o for o in self.security_opt if o != "systempaths=unconfined"]
        config = api.create_host_config(
            binds=[f"{source}:{target}:{'ro' if ro else 'rw'}" for source, target, ro in self.mounts],
            network_mode=self.network, privileged=self.privileged, security_opt=engine_options or None,
            device_cgroup_rules=list(self.device_cgroup_rules) or None, cap_add=list(self.cap_add) or None,
            tmpfs=dict(self.tmpfs), read_only=self.read_only)
        if "systempaths=unconfined" in self.security_opt:
            config["MaskedPaths"], config["ReadonlyPaths"] = [], []
        return config

    def argv(self, interactive: bool = False) -> list[str]:
        """The same container as a `docker run` command line."""
        argv = ["docker", "run", "--rm"] + (["-it"] if interactive else [])
        argv += ["--name", self.name] if self.name else []
        for source, target, ro in self.mounts:
            argv += ["-v", f"{source}:{target}" + (":ro" if ro else "")]
        for key, value in self.env:
            argv += ["-e", f"{key}={value}"]
        argv += ["--network", self.network] + (["--privileged"] if self.privileged else [])
        for option in self.security_opt:
            argv += ["--security-opt", option]
        for rule in self.device_cgroup_rules:
            argv += ["--device-cgroup-rule", rule]
        for capability in self.cap_add:
            argv += ["--cap-add", capability]
        if self.read_only:
            argv += ["--read-only"]
        for target, flags in self.tmpfs:
            argv += ["--tmpfs", f"{target}:{flags}"]
        return argv + [self.image, *self.command]


def container_spec(options: RunOptions) -> ContainerSpec:
    """The container for these options: data on /data, USB, network, what the candidate sandbox needs."""
    o = options
    data = o.data if "/" not in o.data else str(Path(o.data).expanduser().resolve())
    mounts = [(data, "/data", False)]
    usb = Path(USB_DEVICES).is_dir() if o.usb is None else o.usb
    if usb:
        mounts.append((USB_DEVICES, USB_DEVICES, False))
    if o.checkout is not None:
        mounts.append((str(o.checkout.resolve()), CHECKOUT_IN_CONTAINER, True))
    env = list(o.env)
    network = o.network
    if o.adb_server:
        host, _, port = o.adb_server.rpartition(":")
        if not port.isdigit():
            raise ApplianceError(f"--adb-server takes HOST:PORT, got {o.adb_server!r}")
        env += [("ANDROID_ADB_SERVER_HOST", host or "127.0.0.1"), ("ANDROID_ADB_SERVER_PORT", port)]
        network = "host"  # the host's server listens on the host's loopback
    jail = [] if o.privileged else [option.split(" ", 1) for option in CONTAINER_OPTIONS]
    security = tuple(value for flag, value in jail if flag == "--security-opt")
    capabilities = tuple(dict.fromkeys([*(value for flag, value in jail if flag == "--cap-add"), *o.cap_add]))
    return ContainerSpec(image=o.image, command=tuple(o.command), mounts=tuple(mounts), env=tuple(env), network=network,
                         privileged=o.privileged, security_opt=security,
                         device_cgroup_rules=(USB_CGROUP_RULE,) if usb and not o.privileged else (), cap_add=capabilities,
                         read_only=o.read_only, name=o.name)


def start(spec: ContainerSpec):
    """Create and start the container (detached); returns the SDK's Container."""
    import docker

    client = engine()
    try:
        created = client.api.create_container(spec.image, list(spec.command), name=spec.name, labels=dict(spec.labels),
                                              environment=dict(spec.env), tty=sys.stdout.isatty(),
                                              host_config=spec.host_config(client.api))
        container = client.containers.get(created["Id"])
    except docker.errors.ImageNotFound:
        raise ApplianceError(f"no image {spec.image}: build it (mkbench appliance build) or load it (mkbench appliance load)") from None
    except docker.errors.APIError as error:
        raise ApplianceError(f"the engine refused the container: {error.explanation or error}") from None
    container.start()
    return container


def run(spec: ContainerSpec, out=None) -> int:
    """Run the container attached: its output streams here; Ctrl-C is passed on as SIGINT (a run
    lets its items in progress finish), a second one kills it. Returns its exit code."""
    out = out or sys.stdout.buffer
    container = start(spec)
    interrupts = 0
    try:
        while True:
            try:
                for chunk in container.logs(stream=True, follow=True):
                    out.write(chunk)
                    out.flush()
                break
            except KeyboardInterrupt:
                interrupts += 1
                container.kill(signal="SIGINT" if interrupts == 1 else "SIGKILL")
        return int(container.wait().get("StatusCode", 1))
    finally:
        try:
            container.remove(force=True)
        except Exception:  # already gone
            pass


def shell(spec: ContainerSpec) -> None:
    """Replace this process with `docker run -it ...` (a terminal is what the SDK cannot give)."""
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise ApplianceError("a shell needs the docker command line client on PATH: " + " ".join(spec.argv(True)))
    os.execv(docker_cli, spec.argv(interactive=True))


# ---------------------------------------------------------------- save and load


@dataclass(frozen=True)
class Saved:
    path: Path
    sha256: str
    size: int
    seconds: float


def save(image: str, path: Path, say: Say = print) -> Saved:
    """Write the image to a tarball (docker save) and its sha256 beside it (PATH.sha256), for an
    offline machine; the tarball appears only when complete."""
    import docker

    client = engine()
    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise ApplianceError(f"no image {image} to save: build it first (mkbench appliance build)") from None
    size = found.attrs.get("Size", 0)
    path = path.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if free < size * 1.05:
        raise ApplianceError(f"{path.parent} has {_gib(free)} free; the tarball of {image} needs about {_gib(size)}")
    partial = path.with_name(path.name + ".partial")
    digest, written, started, shown = hashlib.sha256(), 0, time.monotonic(), 0.0
    with open(partial, "wb") as out:
        for chunk in found.save(chunk_size=CHUNK, named=True):
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            if time.monotonic() - shown > 5:
                shown = time.monotonic()
                say(f"saving {image}: {_gib(written)} of about {_gib(size)}")
    partial.replace(path)
    sha256 = digest.hexdigest()
    sha_path(path).write_text(f"{sha256}  {path.name}\n")
    saved = Saved(path, sha256, written, time.monotonic() - started)
    say(f"saved {image} to {path} ({_gib(written)}, sha256 {sha256}) in {saved.seconds:.0f} s")
    return saved


def sha_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def load(path: Path, expected: str | None = None, say: Say = print) -> list[str]:
    """Check the tarball's sha256 (given, or from PATH.sha256), then load it into the engine;
    returns the image's tags."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ApplianceError(f"no image tarball at {path}")
    if expected is None:
        if not sha_path(path).is_file():
            raise ApplianceError(f"no {sha_path(path).name} beside {path.name}: copy it too, or give the sha256 with --sha256")
        expected = sha_path(path).read_text().split()[0]
    started = time.monotonic()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    if digest.hexdigest() != expected.lower():
        raise ApplianceError(f"{path.name} has sha256 {digest.hexdigest()}, expected {expected}: "
                             "the copy is damaged or not that image; copy it again")
    say(f"{path.name}: sha256 verified ({time.monotonic() - started:.0f} s); loading")
    client = engine()
    with open(path, "rb") as handle:
        images = client.images.load(handle)
    tags = [tag for image in images for tag in image.tags]
    say(f"loaded {', '.join(tags) or 'an untagged image'} in {time.monotonic() - started:.0f} s")
    return tags
