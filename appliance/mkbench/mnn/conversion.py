"""ONNX → .mnn conversion, and what the converted graph asks of a kernel.

When an MNN tree is configured, every conversion uses MNNConvert built from that tree
(converter.tree_converter(), built on first use): the judged .mnn then comes from the same code
as the kernels it exercises, and a composite candidate's converter differs from it only by the
candidate. Only without a tree does mkbench fall back to the PyPI wheel's native entry point
`_tools.mnnconvert` (what its console script calls first), never its `MNN.tools` package, which
pip-installs a logging SDK and uploads usage logs when imported. Either way the converter runs
in a child process: it prints freely and can crash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import settings as settings_module
from . import converter_build as converter_module
from . import tree as tree_module
from .toolchain import toolchain

# Op types with a CPU execution creator in MNN 3.6.1 (REGISTER_CPU_OP_CREATOR in
# source/backend/cpu); a kernel of kind cpu-execution replaces one of these.
CPU_OP_TYPES = frozenset("""
ArgMax ArgMin Attention BinaryOp Cast Const ConvInt8 Convolution ConvolutionDepthwise CropAndResize
Deconvolution DeconvolutionDepthwise DepthwiseConvInt8 Dequantize Det DetectionOutput DetectionPostProcess
DynamicQuant Eltwise EltwiseInt8 FloatToInt8 GridSample Histogram ImageProcess InstanceNorm Int8ToFloat Interp
Interp3D LayerNorm LinSpace LinearAttention MatMul MatrixBandPart Moments NonMaxSuppressionV2 OneHot PReLU Plugin
Pooling Proposal QuantizedAdd QuantizedAvgPool QuantizedDepthwiseConv2D QuantizedLogistic QuantizedMaxPool
QuantizedSoftmax RNNSequenceGRU ROIAlign ROIPooling RandomNormal RandomUniform Range Raster RasterAndInterpolate
RasterDiff ReLU ReLU6 Reduction RoPE Scale Segment Select SetDiff1D Softmax Stft Svd Texture TfQuantizedConv2D
TopKV2 TrainableParam UnaryOp Unique UnravelIndex Where While
""".split())

# Ops that move or describe data rather than compute on it; not a kernel's target.
LAYOUT_OPS = frozenset({"Input", "Const", "ConvertTensor", "TrainableParam"})

# The sub-type field of the op types that serve many operators.
SUB_TYPE_FIELDS = {"UnaryOp": "opType", "BinaryOp": "opType", "Reduction": "operation", "Eltwise": "type"}


class ConversionError(RuntimeError):
    """The converter refused the model; the message is its last meaningful line."""


@dataclass(frozen=True)
class ConvertedOp:
    name: str
    type: str
    sub_type: str | None

    @property
    def label(self) -> str:
        return f"{self.type}:{self.sub_type}" if self.sub_type else self.type


_WHEEL_CONVERTER = (
    "import sys, _tools\n"
    "sys.exit(0 if _tools.mnnconvert(sys.argv[1:]) else 1)\n"
)


# `converter=WHEEL` asks for the wheel's converter even when a tree is configured (tests, comparisons).
WHEEL = "wheel"


def resolve_converter(converter: Path | str | None, settings: settings_module.Settings) -> Path | None:
    """The MNNConvert binary a conversion runs (None: the wheel's entry point): the given one,
    else the tree's (built on first use), else the wheel when no tree is configured."""
    if converter == WHEEL:
        return None
    if converter is not None:
        return Path(converter)
    return converter_module.tree_converter(settings)


def converter_identity(converter: Path | str | None, settings: settings_module.Settings) -> str:
    """Which converter `resolve_converter` picks, as a short stable name for cache keys, without
    building anything: "wheel-<version>", "tree-<converter build key>" or "bin-<sha256 of the binary>"."""
    if converter is None:
        s = settings
        try:
            tree = tree_module.open_tree(s)
        except tree_module.TreeError:
            converter = WHEEL
        else:
            return f"tree-{converter_module.converter_key(toolchain('host', s), tree.fingerprint)}"
    if converter == WHEEL:
        return f"wheel-{importlib.metadata.version('MNN')}"
    return f"bin-{hashlib.sha256(Path(converter).read_bytes()).hexdigest()[:16]}"


def _run_converter(args: list[str], converter: Path | str | None, settings: settings_module.Settings, timeout: float,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    binary = resolve_converter(converter, settings)
    argv = [str(binary), *args] if binary else [sys.executable, "-c", _WHEEL_CONVERTER, "mnnconvert", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def convert(onnx_path: Path, mnn_path: Path, settings: settings_module.Settings, converter: Path | str | None = None,
            timeout: float = 300, env: dict[str, str] | None = None) -> str:
    """Convert an ONNX file to .mnn (converter: see resolve_converter; env: extra variables for the
    converter, e.g. MKBENCH_SERVED_LOG); returns the converter's log, raises ConversionError."""
    result = _run_converter(["-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(mnn_path),
                             "--bizCode", "mkbench"], converter, settings, timeout, env)
    log = result.stdout + result.stderr
    if result.returncode != 0 or not mnn_path.exists() or "Converted Success" not in log:
        lines = [line for line in log.splitlines() if line.strip() and "device supports" not in line]
        raise ConversionError(lines[-1] if lines else f"converter exited with {result.returncode}")
    return log


def model_json(mnn_path: Path, settings: settings_module.Settings, converter: Path | str | None = None) -> dict:
    """A .mnn graph as the converter dumps it to JSON (oplists, tensors, parameters)."""
    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / "model.json"
        result = _run_converter(["-f", "MNN", "--modelFile", str(mnn_path), "--JsonFile", str(json_path)],
                                converter, settings, 120)
        if not json_path.exists():
            raise ConversionError(f"cannot dump {mnn_path} to JSON: {(result.stdout + result.stderr)[-200:]}")
        return json.loads(json_path.read_text())


def converted_ops(mnn_path: Path, settings: settings_module.Settings, converter: Path | str | None = None) -> list[ConvertedOp]:
    """The ops of a .mnn graph in order, with the sub-type of shared op types (dumped to JSON by
    the same converter choice as convert())."""
    ops = []
    for op in model_json(mnn_path, settings, converter).get("oplists", []):
        op_type = op.get("type", "?")
        field = SUB_TYPE_FIELDS.get(op_type)
        sub = (op.get("main") or {}).get(field) if field else None
        ops.append(ConvertedOp(op.get("name", ""), op_type, sub if isinstance(sub, str) else None))
    return ops


def compute_ops(ops: list[ConvertedOp]) -> list[ConvertedOp]:
    """The ops that compute (not inputs, constants or layout conversions)."""
    return [op for op in ops if op.type not in LAYOUT_OPS]
