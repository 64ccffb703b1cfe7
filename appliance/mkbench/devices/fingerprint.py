"""What a device is (model, SoC, Android, cores, features) and how it is doing (clocks, heat).

One shell script collects everything in one round trip; it runs under the phone's mksh, the
emulator's /bin/sh and the host's /bin/sh alike, and one parser reads its output.
"""

from __future__ import annotations

import hashlib
import json
import re
import time

# Both scripts print sections marked by lines starting with "@@"; missing files print nothing.
_STATIC_PROBE = r"""
echo '@@getprop'; getprop 2>/dev/null
echo '@@cpuinfo'; cat /proc/cpuinfo 2>/dev/null
echo '@@uname'; uname -m 2>/dev/null
"""
# Clocks and temperatures: all that `read_state` needs before and after a measurement.
STATE_SCRIPT = r"""
echo '@@cpus'
for c in /sys/devices/system/cpu/cpu[0-9]*; do
  [ -d "$c" ] || continue
  echo "${c##*/} $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null || echo -) $(cat $c/cpufreq/scaling_cur_freq 2>/dev/null || echo -) $(cat $c/cpufreq/scaling_governor 2>/dev/null || echo -)"
done
echo '@@thermal'
for z in /sys/class/thermal/thermal_zone*; do
  [ -d "$z" ] || continue
  echo "${z##*/} $(cat $z/temp 2>/dev/null || echo -) $(cat $z/type 2>/dev/null || echo -)"
done
echo '@@end'
"""
PROBE_SCRIPT = _STATIC_PROBE + STATE_SCRIPT

# Clock locking on a rooted phone (androidx benchmark's lockClocks.sh, in short): each big core's
# minimum and maximum frequency set to one value, the highest the core offers at or below LOCK_SHARE
# of its maximum (a little below the top, so it can be held without throttling). "@@unrooted" when
# neither the shell nor `su` is root; otherwise one "cpuN MIN MAX" line per core as read back.
LOCK_SHARE = 0.8


def lock_script(cpus: list[int]) -> str:
    return r"""
if [ "$(id -u)" = 0 ]; then as_root() { sh -c "$1"; }
elif su 0 true >/dev/null 2>&1; then as_root() { su 0 sh -c "$1"; }
elif su -c true >/dev/null 2>&1; then as_root() { su -c "$1"; }
else echo '@@unrooted'; exit 0; fi
echo '@@locked'
for c in """ + " ".join(str(c) for c in cpus) + r"""; do
  f=/sys/devices/system/cpu/cpu$c/cpufreq
  max=$(cat $f/cpuinfo_max_freq 2>/dev/null) || continue
  target=0
  for v in $(cat $f/scaling_available_frequencies 2>/dev/null); do
    if [ $((v * 10)) -le $((max * """ + str(int(LOCK_SHARE * 10)) + r""")) ] && [ $v -gt $target ]; then target=$v; fi
  done
  [ $target -gt 0 ] || target=$max
  as_root "echo $target > $f/scaling_max_freq; echo $target > $f/scaling_min_freq; echo $target > $f/scaling_max_freq" 2>/dev/null
  echo "cpu$c $(cat $f/scaling_min_freq 2>/dev/null) $(cat $f/scaling_max_freq 2>/dev/null)"
done
"""


def parse_lock(text: str) -> dict:
    """What lock_script did: {"locked": {cpu: kHz}} for the cores now held at one frequency, and
    "how" (root | not rooted | refused)."""
    sections = parse_probe(text)
    if "unrooted" in sections:
        return {"locked": {}, "how": "not rooted: clocks not locked"}
    locked = {}
    for line in sections.get("locked", []):
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("cpu") and parts[1] == parts[2] and parts[1].isdigit():
            locked[parts[0][3:]] = int(parts[1])
    return {"locked": locked, "how": "root: big cores locked" if locked else "root, but the kernel refused the lock"}


HOT_CELSIUS = 50.0  # above this (any thermal zone) a run is taken while hot


def throttled(state: dict, clocks: dict | None) -> str:
    """Why a run's recorded state says it ran throttled ("" when it did not): a locked core found
    below its locked frequency, or a zone at HOT_CELSIUS or more."""
    after = (state or {}).get("after") or {}
    for cpu, khz in ((clocks or {}).get("locked") or {}).items():
        now = (after.get("cur_khz") or {}).get(str(cpu))
        if isinstance(now, int) and now < 0.97 * khz:
            return f"cpu{cpu} at {now} kHz, locked at {khz}"
    temperatures = [t for t in (after.get("temperatures_c") or {}).values() if isinstance(t, (int, float))]
    if temperatures and max(temperatures) >= HOT_CELSIUS:
        return f"{max(temperatures):.0f} °C"
    return ""

# ARM "CPU part" numbers of the cores found in phones.
ARM_PARTS = {
    0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD07: "Cortex-A57",
    0xD08: "Cortex-A72", 0xD09: "Cortex-A73", 0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76",
    0xD0D: "Cortex-A77", 0xD41: "Cortex-A78", 0xD44: "Cortex-X1", 0xD46: "Cortex-A510",
    0xD47: "Cortex-A710", 0xD48: "Cortex-X2", 0xD4D: "Cortex-A715", 0xD4E: "Cortex-X3",
    0xD80: "Cortex-A520", 0xD81: "Cortex-A720", 0xD82: "Cortex-X4", 0xD85: "Cortex-X925",
    0xD87: "Cortex-A725",
}
# Kernel hwcap names behind the features a kernel writer cares about.
ARM_FEATURES = {
    "asimd": ("asimd",),
    "fp16": ("fphp", "asimdhp"),
    "dotprod": ("asimddp",),
    "i8mm": ("i8mm",),
    "bf16": ("bf16",),
    "sve": ("sve",),
    "sve2": ("sve2",),
    "sme": ("sme",),
}
X86_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")

# Keys of a fingerprint that change from minute to minute; the device id ignores them.
VOLATILE_KEYS = ("state",)


def parse_probe(text: str) -> dict[str, list[str]]:
    """The probe output split into its sections (lines)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
    return sections


def parse_getprop(lines: list[str]) -> dict[str, str]:
    props = {}
    for line in lines:
        m = re.match(r"^\[(.*?)\]: \[(.*)\]$", line.strip())
        if m:
            props[m.group(1)] = m.group(2)
    return props


def parse_cpuinfo(lines: list[str]) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Per-processor blocks and the global fields (Hardware, ...) of /proc/cpuinfo."""
    processors: list[dict[str, str]] = []
    general: dict[str, str] = {}
    block: dict[str, str] = {}
    for line in lines + [""]:
        if not line.strip():
            if "processor" in block:
                processors.append(block)
            elif block:
                general.update(block)
            block = {}
            continue
        if ":" in line:
            key, value = line.split(":", 1)
            block[key.strip()] = value.strip()
    return processors, general


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def parse_cpus(lines: list[str]) -> list[dict]:
    cpus = []
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or not parts[0].startswith("cpu"):
            continue
        index = _int_or_none(parts[0][3:])
        if index is None:
            continue
        cpus.append({"cpu": index, "max_khz": _int_or_none(parts[1]), "cur_khz": _int_or_none(parts[2]),
                     "governor": None if parts[3] == "-" else parts[3]})
    return sorted(cpus, key=lambda c: c["cpu"])


def parse_thermal(lines: list[str]) -> dict[str, float]:
    """Zone temperatures in °C (kernels report millidegrees; a few report degrees)."""
    temps: dict[str, float] = {}
    for line in lines:
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        raw = _int_or_none(parts[1])
        if raw is None:
            continue
        celsius = raw / 1000 if abs(raw) >= 1000 else float(raw)
        if -40 <= celsius <= 150:
            temps[f"{parts[0]}:{parts[2].strip()}"] = round(celsius, 1)
    return temps


def clusters_of(cores: list[dict]) -> list[dict]:
    """Cores grouped by max frequency, slowest first, named little / mid / big / prime."""
    by_freq: dict[int, list[int]] = {}
    for core in cores:
        by_freq.setdefault(core["max_khz"] or 0, []).append(core["cpu"])
    freqs = sorted(by_freq)
    names = {1: ["all"], 2: ["little", "big"], 3: ["little", "mid", "big"], 4: ["little", "mid", "big", "prime"]}
    labels = names.get(len(freqs), [f"cluster{i}" for i in range(len(freqs))])
    return [{"name": labels[i], "cpus": sorted(by_freq[f]), "max_khz": f or None} for i, f in enumerate(freqs)]


def big_cores(clusters: list[dict]) -> list[int]:
    """The cores a measurement is pinned to: all but the slowest cluster (all, if one cluster)."""
    if len(clusters) <= 1:
        return sorted(c for cluster in clusters for c in cluster["cpus"])
    return sorted(c for cluster in clusters[1:] for c in cluster["cpus"])


def cpu_mask(cpus: list[int]) -> str:
    """A hex affinity mask, as taskset takes it."""
    return format(sum(1 << c for c in cpus), "x") if cpus else "ff"


def build(text: str, *, serial: str, abi: str, emulated: bool) -> dict:
    """A fingerprint from the probe output. JSON-able; `state` holds the changing part."""
    sections = parse_probe(text)
    props = parse_getprop(sections.get("getprop", []))
    processors, general = parse_cpuinfo(sections.get("cpuinfo", []))
    cpus = parse_cpus(sections.get("cpus", []))
    if not cpus:  # no cpufreq (a VM, a container): count processors instead
        cpus = [{"cpu": i, "max_khz": None, "cur_khz": None, "governor": None} for i in range(len(processors))]
    parts = {}
    for block in processors:
        index = _int_or_none(block.get("processor", ""))
        part = block.get("CPU part")
        if index is not None and part:
            parts[index] = ARM_PARTS.get(int(part, 16), part) if part.startswith("0x") else part
    flags = set()
    for block in processors[:1] or [general]:
        flags |= set((block.get("Features") or block.get("flags") or "").split())
    if abi.startswith("arm"):
        features = {name: any(h in flags for h in hwcaps) for name, hwcaps in ARM_FEATURES.items()}
    else:
        features = {name: name in flags for name in X86_FEATURES}
    cores = [{"cpu": c["cpu"], "max_khz": c["max_khz"], "governor": c["governor"], "core": parts.get(c["cpu"])}
             for c in cpus]
    clusters = clusters_of(cores)
    big = big_cores(clusters)
    host_model = processors[0].get("model name") if processors else None
    emulated = emulated or props.get("ro.kernel.qemu") == "1" or props.get("mkbench.emulated") == "1"
    return {
        "serial": serial,
        "abi": abi,
        "emulated": emulated,
        "model": props.get("ro.product.model") or host_model or general.get("Hardware"),
        "manufacturer": props.get("ro.product.manufacturer"),
        "device": props.get("ro.product.device"),
        "soc": props.get("ro.soc.model") or props.get("ro.board.platform") or general.get("Hardware") or host_model,
        "hardware": props.get("ro.hardware") or general.get("Hardware"),
        "android_version": props.get("ro.build.version.release"),
        "sdk": props.get("ro.build.version.sdk"),
        "build": props.get("ro.build.fingerprint"),
        "machine": (sections.get("uname") or [""])[0].strip() or None,
        "cores": cores,
        "clusters": clusters,
        "big_cores": big,
        "big_core_mask": cpu_mask(big),
        "governors": sorted({c["governor"] for c in cores if c["governor"]}),
        "features": features,
        "thermal_zones": sorted(parse_thermal(sections.get("thermal", []))),
        "state": state_from(text),
    }


def state_from(text: str) -> dict:
    """Clocks and temperatures now, from the probe (or state script) output."""
    sections = parse_probe(text)
    cpus = parse_cpus(sections.get("cpus", []))
    return {
        "taken_at": time.time(),
        "cur_khz": {str(c["cpu"]): c["cur_khz"] for c in cpus},
        "governors": {str(c["cpu"]): c["governor"] for c in cpus},
        "temperatures_c": parse_thermal(sections.get("thermal", [])),
    }


def device_id(fingerprint: dict) -> str:
    """The id of a fingerprint: sha256 of its JSON without the changing parts."""
    stable = {k: v for k, v in fingerprint.items() if k not in VOLATILE_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()


def summary(fp: dict) -> str:
    """One line about a fingerprint: cores by cluster, features, hottest zone."""
    clusters = " + ".join(
        f"{len(c['cpus'])}x{c['max_khz'] / 1e6:.2f}GHz" if c.get("max_khz") else f"{len(c['cpus'])} cores"
        for c in fp.get("clusters", []))
    features = ",".join(name for name, present in fp.get("features", {}).items() if present) or "-"
    temps = fp.get("state", {}).get("temperatures_c", {})
    heat = f", {max(temps.values()):.0f}°C" if temps else ""
    return f"{clusters} [{features}]{heat}"
