"""ONNX → .mnn conversion, and what the converted graph asks of a kernel.

The converter runs in a child process: it prints freely, can crash, and must never pull in
the MNN wheel's `MNN.tools` package (it pip-installs a logging SDK and uploads usage logs
when imported). The wheel's native entry point `_tools.mnnconvert` is what its console
script calls first; a converter built from the pinned tree can be used instead
(`converter=` a path to an MNNConvert binary).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


def _run_converter(args: list[str], converter: Path | None, timeout: float) -> subprocess.CompletedProcess:
    argv = [str(converter), *args] if converter else [sys.executable, "-c", _WHEEL_CONVERTER, "mnnconvert", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def convert(onnx_path: Path, mnn_path: Path, converter: Path | None = None, timeout: float = 300) -> str:
    """Convert an ONNX file to .mnn; returns the converter's log, raises ConversionError."""
    result = _run_converter(["-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(mnn_path),
                             "--bizCode", "mkbench"], converter, timeout)
    log = result.stdout + result.stderr
    if result.returncode != 0 or not mnn_path.exists() or "Converted Success" not in log:
        lines = [line for line in log.splitlines() if line.strip() and "device supports" not in line]
        raise ConversionError(lines[-1] if lines else f"converter exited with {result.returncode}")
    return log


def converted_ops(mnn_path: Path, converter: Path | None = None) -> list[ConvertedOp]:
    """The ops of a .mnn graph in order, with the sub-type of shared op types."""
    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / "model.json"
        result = _run_converter(["-f", "MNN", "--modelFile", str(mnn_path), "--JsonFile", str(json_path)],
                                converter, 120)
        if not json_path.exists():
            raise ConversionError(f"cannot dump {mnn_path} to JSON: {(result.stdout + result.stderr)[-200:]}")
        graph = json.loads(json_path.read_text())
    ops = []
    for op in graph.get("oplists", []):
        op_type = op.get("type", "?")
        field = SUB_TYPE_FIELDS.get(op_type)
        sub = (op.get("main") or {}).get(field) if field else None
        ops.append(ConvertedOp(op.get("name", ""), op_type, sub if isinstance(sub, str) else None))
    return ops


def compute_ops(ops: list[ConvertedOp]) -> list[ConvertedOp]:
    """The ops that compute (not inputs, constants or layout conversions)."""
    return [op for op in ops if op.type not in LAYOUT_OPS]
