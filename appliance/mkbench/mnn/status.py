"""How the MNN side of this machine stands, for `mkbench doctor`: the tree, the NDK, the builds."""

from __future__ import annotations

from .. import settings as settings_module
from ..checks import Check
from . import build, toolchain
from .converter_build import converter_status
from .tree import TreeError, how_to_supply, load_pin, open_tree


def doctor_checks(settings: settings_module.Settings) -> list[Check]:
    """Tree present and matching the pin; the NDK's version; native and converter builds present (never raises)."""
    try:
        tree = open_tree(settings, require_pin=False)
    except TreeError as error:
        return [Check("MNN tree", False, str(error))]
    pin = load_pin()
    detail = f"{tree.path} (MNN {pin.tag})" if tree.matches_pin else (
        f"{tree.path} does not match the pin (fingerprint {tree.fingerprint[:12]}): {how_to_supply(pin)}"
    )
    checks = [Check("MNN tree", tree.matches_pin, detail)]
    ndk = toolchain.ndk_check(settings)
    if ndk is not None:
        checks.append(Check(*ndk))
    for status in build.status(settings):
        checks.append(Check(f"MNN build ({status.target})", status.built, status.detail))
    checks.append(Check("MNNConvert (host, from the tree)", *converter_status(settings)))
    return checks
