"""Write the [torch] section of every paper task: the PyTorch module the paper shows the LLM.

Each task of the paper is a KernelBench-format Python file: `class Model(nn.Module)` built
from the task's init args, `get_inputs()` drawing the task's inputs and `get_init_inputs()`
returning the init args. This script holds one template per task (most tasks share an
operator's template) and writes the module into `[torch] module = '''...'''` with
spec.write_section, so the suite's modules are reproducible from here:

    python tasks/tools/write_torch_modules.py            # every task under tasks/paper
    python tasks/tools/write_torch_modules.py Abs Conv   # only these

Conventions (from the paper's table, /work/shared/PAPER-TASKS.md):
- init args are named as in the table's "module init args" column, in that order, and
  get_init_inputs() returns their values; parameters the table leaves at their defaults
  are keyword parameters with that default (e.g. keepdim=True where the export keeps dims);
- get_inputs() draws the inputs the spec draws, written with torch's RNG
  (`2.0 * rand - 1.0` -> `2.0 * torch.rand(16, 8, 256, 256) - 1.0`); a task whose table row
  says "(seed N)" (the spec's seed is then N) calls torch.manual_seed(N) first;
- weights live in the module (nn.Conv2d, nn.Linear, ...) where the exported graph has them
  as initialisers, and are forward inputs where the graph takes them as inputs.
The module text must not contain a triple quote and no line of it may start with `[`
(write_section splits top-level tables on such lines); `check_module` enforces both.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "appliance"))

from mkbench.tasks.spec import Task, load_suite, write_section

PAPER = ROOT / "tasks" / "paper"


@dataclass(frozen=True)
class Template:
    """One task's module: __init__ parameters and body, forward arguments and body."""

    forward: str  # body of forward(), may span lines
    args: tuple[str, ...] = ("x",)  # forward's arguments, in the spec's input order
    params: str = ""  # __init__'s parameters after self, as written
    init: str = ""  # body of __init__ after super().__init__()
    values: tuple = ()  # get_init_inputs()
    helpers: str = ""  # extra methods of Model
    imports: tuple[str, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------ templates
def unary(expression: str) -> Template:
    return Template(f"return {expression}")


def binary(expression: str) -> Template:
    return Template(f"return {expression}", args=("a", "b"))


def stored(params: str, values: tuple, forward: str, args=("x",), extra_init: str = "", **kw) -> Template:
    """A module that keeps its init args as attributes and uses them in forward."""
    names = [a.arg for a in ast.parse(f"def f({params}): pass").body[0].args.args]
    init = "\n".join(f"self.{n} = {n}" for n in names)
    if extra_init:
        init += "\n" + extra_init
    return Template(forward, args=args, params=params, init=init, values=values, **kw)


def layer(params: str, values: tuple, construct: str, forward: str = "return self.layer(x)", args=("x",), **kw) -> Template:
    """A module holding one torch layer built from its init args."""
    return Template(forward, args=args, params=params, init=f"self.layer = {construct}", values=values, **kw)


F = ("import torch.nn.functional as F",)

TEMPLATES: dict[str, Template] = {}


def add(names: str | list[str], template: Template) -> None:
    for name in [names] if isinstance(names, str) else names:
        assert name not in TEMPLATES, name
        TEMPLATES[name] = template


# Unary
for _name, _fn in [("Abs", "abs"), ("Ceil", "ceil"), ("Erf", "erf"), ("Exp", "exp"), ("Floor", "floor"),
                   ("Log", "log"), ("Neg", "neg"), ("Reciprocal", "reciprocal"), ("Round", "round"),
                   ("Sign", "sign"), ("Sqrt", "sqrt")]:
    add(_name, unary(f"torch.{_fn}(x)"))

# Trigonometry
for _name, _fn in [("ATan", "atan"), ("Acos", "acos"), ("Acosh", "acosh"), ("Asin", "asin"), ("Asinh", "asinh"),
                   ("Atanh", "atanh"), ("Cos", "cos"), ("Cosh", "cosh"), ("Sin", "sin"), ("Sinh", "sinh"),
                   ("Tan", "tan"), ("Tanh", "tanh")]:
    add(_name, unary(f"torch.{_fn}(x)"))

# Binary
add("Add", binary("torch.add(a, b)"))
add("Div", binary("torch.div(a, b)"))
add("Min", binary("torch.min(a, b)"))
add("Mul", binary("torch.mul(a, b)"))
add("Mul_bcast", binary("torch.mul(a, b)"))
add("Pow", binary("torch.pow(a, b)"))
add("Sub", binary("torch.sub(a, b)"))
add("Mod", stored("fmod=0", (0,), "# fmod=0: the sign follows the divisor (Python's %), as ONNX Mod(fmod=0)\n"
                                    "return torch.fmod(a, b) if self.fmod else torch.remainder(a, b)", args=("a", "b")))

# Activation
add("Celu", layer("alpha=1.0", (1.0,), "nn.CELU(alpha=alpha)"))
add("ELU", layer("alpha=1.0", (0.1,), "nn.ELU(alpha=alpha)"))
add("HardSigmoid", layer("", (), "nn.Hardsigmoid()"))
add("LogSoftmax", layer("", (), "nn.LogSoftmax(dim=1)"))
add(["LogSoftmax_axis_0", "LogSoftmax_axis_1", "LogSoftmax_axis_2"], stored("axis", (), "return torch.log_softmax(x, dim=self.axis)"))
add("PRelu", layer("num_slopes", (1024,), "nn.PReLU(num_parameters=num_slopes)"))
add("Relu", unary("torch.relu(x)"))
add("Softmax", unary("torch.softmax(x, dim=1)"))
add(["Softplus_2d", "Softplus_3d"], layer("", (), "nn.Softplus()"))

# Normalization
add("BatchNormalization", layer("num_features", (32,), "nn.BatchNorm2d(num_features)"))
add("BatchNormalization_epsilon", layer("num_features, eps=1e-05", (32, 0.001), "nn.BatchNorm2d(num_features, eps=eps)"))
add("BatchNormalization_momentum", layer("num_features, momentum=0.1", (32, 0.2), "nn.BatchNorm2d(num_features, momentum=momentum)"))
add("InstanceNormalization", layer("num_features", (32,), "nn.InstanceNorm2d(num_features)"))
add("InstanceNormalization_1d", layer("num_features, eps=1e-05, affine=False", (32, 1e-05, False),
                                      "nn.InstanceNorm1d(num_features, eps=eps, affine=affine)"))
add("InstanceNormalization_3d", layer("num_features, eps=1e-05, affine=False", (1, 1e-05, False),
                                      "nn.InstanceNorm3d(num_features, eps=eps, affine=affine)"))
add("LayerNorm", layer("normalized_shape", (64,), "nn.LayerNorm(normalized_shape)"))
_LN = "normalized_shape, eps=1e-05, elementwise_affine=True"
_LN_MAKE = "nn.LayerNorm(normalized_shape, eps=eps, elementwise_affine=elementwise_affine)"
add("LayerNorm_1d", layer(_LN, (512, 1e-05, True), _LN_MAKE))
add("LayerNorm_3d", layer(_LN, ((32, 32), 1e-05, True), _LN_MAKE))
add("LayerNorm_eps", layer(_LN, (256, 0.001, True), _LN_MAKE))
add("LayerNorm_no_affine", layer("normalized_shape", (512,), "nn.LayerNorm(normalized_shape, elementwise_affine=False)"))
add("LayerNorm_vision", layer(_LN, (768, 1e-05, True), _LN_MAKE))

# Pooling
add("AveragePool", layer("kernel_size", (11,), "nn.AvgPool2d(kernel_size)"))
add("AveragePool_2d_ceil", layer("kernel_size", (11,), "nn.AvgPool2d(kernel_size, ceil_mode=True)"))
add("AveragePool_2d_strides", stored("kernel_size, stride", (11, 3),
                                     "# as published: the forward pools 5x5 with stride 3; the init args are unused\n"
                                     "return F.avg_pool2d(x, kernel_size=5, stride=3)", imports=F))
add(["GlobalAveragePool", "GlobalAveragePool_2d", "GlobalAveragePool_2d_single_channel"],
    layer("", (), "nn.AdaptiveAvgPool2d((1, 1))"))
add("GlobalAveragePool_3d", layer("", (), "nn.AdaptiveAvgPool3d((1, 1, 1))"))
add(["GlobalMaxPool", "GlobalMaxPool_2d_single_channel"], layer("", (), "nn.AdaptiveMaxPool2d((1, 1))"))
add("GlobalMaxPool_3d", layer("", (), "nn.AdaptiveMaxPool3d((1, 1, 1))"))
add("MaxPool", layer("kernel_size", (11,), "nn.MaxPool2d(kernel_size)"))
_PADS = "padding = 0 if self.pads is None else tuple(self.pads[: len(self.pads) // 2])\n"
add("MaxPool_2d_ceil", stored("kernel_shape, strides, pads=None, ceil_mode=0", ((3, 3), (2, 2), None, 1),
                              _PADS + "return F.max_pool2d(x, self.kernel_shape, self.strides, padding, ceil_mode=bool(self.ceil_mode))",
                              imports=F))
add("MaxPool_2d_dilations", stored("kernel_shape, strides, pads=None, dilations=(1, 1)", ((2, 2), (1, 1), None, (2, 2)),
                                   _PADS + "return F.max_pool2d(x, self.kernel_shape, self.strides, padding, dilation=self.dilations)",
                                   imports=F))
add("MaxPool_2d_same_lower", stored(
    "kernel_shape, strides, pads=None, auto_pad='NOTSET'", ((2, 2), (1, 1), None, "SAME_LOWER"),
    "if self.auto_pad.startswith('SAME'):\n"
    "    # SAME padding, split evenly: pad_total // 2 on each side (0 for a 2x2 kernel, stride 1)\n"
    "    padding = []\n"
    "    for size, k, s in zip(x.shape[2:], self.kernel_shape, self.strides):\n"
    "        out = (size + s - 1) // s\n"
    "        padding.append(max((out - 1) * s + k - size, 0) // 2)\n"
    "    padding = tuple(padding)\n"
    "else:\n"
    "    padding = 0 if self.pads is None else tuple(self.pads[: len(self.pads) // 2])\n"
    "return F.max_pool2d(x, self.kernel_shape, self.strides, padding)", imports=F))
add("MaxPool_2d_strides", stored("kernel_shape, strides, pads=None", ((5, 5), (3, 3), None),
                                 _PADS + "return F.max_pool2d(x, self.kernel_shape, self.strides, padding)", imports=F))

# Convolution
add("Conv", stored(
    "group=1, pads=(0, 0, 0, 0), kernel_shape=(), strides=(1, 1), auto_pad='NOTSET', dilations=(1, 1)",
    (1, (1, 1, 1, 1), (), (1, 1), "NOTSET", (1, 1)),
    "# ONNX pads are (begin..., end...); here begin == end\n"
    "padding = tuple(self.pads[: len(self.pads) // 2])\n"
    "return F.conv2d(x, weight, bias, stride=self.strides, padding=padding, dilation=self.dilations, groups=self.group)",
    args=("x", "weight", "bias"), imports=F))
add("Conv3D", layer("in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True",
                    (32, 64, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, True),
                    "nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, "
                    "groups=groups, bias=bias)"))
add("ConvTranspose_2D__asymmetric_input__asymmetric_kernel", layer(
    "in_channels, out_channels, kernel_size", (16, 32, (3, 5)),
    "nn.ConvTranspose2d(in_channels, out_channels, kernel_size, bias=False)"))
add("ConvTranspose_dilations", stored(
    "strides=(1, 1), pads=None, dilations=(1, 1), group=1, output_padding=(0, 0)", ((1, 1), None, (2, 2), 1, (0, 0)),
    _PADS + "return F.conv_transpose2d(x, weight, stride=self.strides, padding=padding, output_padding=self.output_padding,\n"
            "                          groups=self.group, dilation=self.dilations)",
    args=("x", "weight"), imports=F))
_CONV_W = ("# the kernel_shape init arg is unused: the kernel is the weight input's\n"
           "padding = tuple(self.pads[: len(self.pads) // 2])\n"
           "return F.conv2d(x, weight, stride=self.strides, padding=padding, dilation=self.dilations, groups=self.group)")
add("Conv_with_strides_no_padding", stored("strides, pads, dilations=(1, 1), group=1, kernel_shape=(3, 3)",
                                           ((2, 2), (0, 0, 0, 0), (1, 1), 1, (3, 3)), _CONV_W, args=("x", "weight"), imports=F))
add("Conv_with_strides_padding", stored("strides, pads, dilations=(1, 1), group=1, kernel_shape=(3, 3)",
                                        ((2, 2), (1, 1, 1, 1), (1, 1), 1, (3, 3)), _CONV_W, args=("x", "weight"), imports=F))
add("ConvolutionDepthwise", Template(
    "return self.pointwise(self.depthwise(x))",
    params="in_channels, out_channels, kernel_size, stride=1, padding=0", values=(16, 32, 3, 1, 1),
    init="self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=padding,\n"
         "                           groups=in_channels, bias=False)\n"
         "self.pointwise = nn.Conv2d(in_channels, out_channels, kernel_size=1)"))
add("DeconvolutionDepthwise_2D_kernel", layer(
    "in_ch, out_ch, k, stride=1, padding=0, output_padding=0, dilation=1", (32, 32, 5, 1, 2, 0, 1),
    "nn.ConvTranspose2d(in_ch, out_ch, k, stride=stride, padding=padding, output_padding=output_padding,\n"
    "                                groups=in_ch, dilation=dilation)"))
add("DeconvolutionDepthwise_2D_stride", layer(
    "in_ch, out_ch, k, stride=1, padding=0, output_padding=0", (64, 64, 3, 2, 1, 1),
    "nn.ConvTranspose2d(in_ch, out_ch, k, stride=stride, padding=padding, output_padding=output_padding,\n"
    "                                groups=in_ch, bias=False)"))
add("Deconvolution_1D", layer("in_channels, out_channels, kernel_size", (64, 64, 3),
                              "nn.ConvTranspose1d(in_channels, out_channels, kernel_size, bias=False)"))
add("Deconvolution_2D__asymmetric_input__asymmetric_kernel", layer(
    "in_channels, out_channels, kernel_size", (16, 64, (3, 5)),
    "nn.ConvTranspose2d(in_channels, out_channels, kernel_size, bias=False)"))
add("Deconvolution_2D_asymmetric_input_square_kernel___dilated____padded____strided__", layer(
    "in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1", (16, 32, 3, 5, 1, 2),
    "nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,\n"
    "                                dilation=dilation, bias=False)"))
add("Dense_Convolution_1D", layer("in_channels, out_channels, kernel_size", (64, 128, 3),
                                  "nn.Conv1d(in_channels, out_channels, kernel_size, bias=False)"))
add("Dense_Convolution_2D", layer("in_channels, out_channels, kernel_size, stride=1, padding=0", (16, 64, 3, 1, 1),
                                  "nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)"))
add("Dense_Convolution_2D__asymmetric_input__square_kernel", layer(
    "in_channels, out_channels, kernel_size", (32, 64, 3), "nn.Conv2d(in_channels, out_channels, kernel_size, bias=False)"))
add("Dense_Convolution_2D_kernel", layer("in_ch, out_ch", (3, 32), "nn.Conv2d(in_ch, out_ch, kernel_size=7, padding=3)"))
add("Group_Convolution_2D", layer(
    "in_channels, out_channels, kernel_size, groups=1, stride=1, padding=0", (16, 32, 3, 4, 1, 1),
    "nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups)"))
add("Group_Convolution_2D_kernel", layer(
    "in_ch, out_ch, kernel_size, groups=1, stride=1, padding=0", (24, 24, 5, 12, 1, 2),
    "nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, groups=groups, bias=False)"))
add("Strassen_Convolution_2D", layer("in_ch, out_ch", (64, 128), "nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=2)"))
add("Winograd_Convolution_2D", Template(
    "return self.layer(x)", params="in_channels, out_channels, use_winograd_hint=False", values=(16, 32, True),
    init="# use_winograd_hint is a hint for the kernel writer; the computation is a plain 3x3 convolution\n"
         "self.use_winograd_hint = use_winograd_hint\n"
         "self.layer = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)"))
add("Winograd_Convolution_2D_padding", layer("in_ch, out_ch", (16, 16),
                                             "nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=2, dilation=2)"))

# Matrix
add(["Det", "Det_2d", "Det_3d"], unary("torch.linalg.det(x)"))
add(["Einsum", "Einsum_elementwise"], stored("equation", (), "return torch.einsum(self.equation, a, b)", args=("a", "b")))
add(["Einsum_diagonal", "Einsum_sum_all", "Einsum_transpose"], stored("equation", (), "return torch.einsum(self.equation, x)"))
_LINEAR = ("in_features, out_features, alpha=1.0, beta=1.0, with_bias=True",
           ("self.alpha = alpha\nself.beta = beta  # the bias enters once (beta=1), through nn.Linear\n"
            "self.linear = nn.Linear(in_features, out_features, bias=with_bias)"))
add("Gemm", Template("return self.alpha * self.linear(x)", params=_LINEAR[0], init=_LINEAR[1], values=(512, 256, 1.0, 1.0, True)))
add("Gemm_scalar_bias", Template("return self.alpha * self.linear(x)", params=_LINEAR[0], init=_LINEAR[1],
                                 values=(256, 512, 1.0, 1.0, True)))
add("Gemm_transposed", Template("return self.alpha * self.linear(x.t())", params="in_features, out_features, alpha=1.0",
                                init="self.alpha = alpha\nself.linear = nn.Linear(in_features, out_features)",
                                values=(128, 256, 1.5)))
_TRANS = "if self.transA:\n    a = a.t()\nif self.transB:\n    b = b.t()\n"
add("Gemm_alpha", stored("alpha=1.0, beta=1.0, transA=0, transB=0", (0.5, 1.0, 0, 0),
                         _TRANS + "return self.alpha * torch.mm(a, b) + self.beta * c", args=("a", "b", "c")))
add("Gemm_beta", stored("alpha=1.0, beta=1.0, transA=0, transB=0", (1.0, 0.5, 0, 0),
                        _TRANS + "return torch.addmm(self.beta * c, a, b, alpha=self.alpha)", args=("a", "b", "c")))
add("Gemm_no_bias", stored("alpha=1.0, transA=0, transB=0", (1.0, 0, 0),
                           _TRANS + "return self.alpha * torch.mm(a, b)", args=("a", "b")))
add(["MatMul", "MatMul_1d_3d", "MatMul_3d", "MatMul_bcast", "MatMul_square"], binary("torch.matmul(a, b)"))

# Reduction
for _op, _fn in [("ArgMax", "argmax"), ("ArgMin", "argmin")]:
    add(_op, stored("dim", (1,), f"return torch.{_fn}(x, dim=self.dim)"))
    add(f"{_op}_default_axis_example", unary(f"torch.{_fn}(x)"))
    add(f"{_op}_keepdims_example", unary(f"torch.{_fn}(x, dim=0, keepdim=True)"))
    add(f"{_op}_negative_axis_keepdims_example", unary(f"torch.{_fn}(x, dim=-1, keepdim=True)"))
add("ReduceL1", stored("noop_with_empty_axes=0, keepdims=1", (0, 1),
                       "# no axes: the L1 norm of every element, kept as [1, 1, 1] by a reshape\n"
                       "norm = torch.linalg.vector_norm(x, ord=1)\n"
                       "return norm.reshape([1] * x.dim()) if self.keepdims else norm"))
_L1 = "return torch.linalg.vector_norm(x, ord=1, dim=self.axes, keepdim=bool(self.keepdims))"
add("ReduceL1_2d_input", stored("axes, keepdims=1", (1, 0), _L1))
add("ReduceL1_multiple_axes", stored("axes, keepdims=1", ((0, 2), 0), _L1))
add("ReduceL1_negative_axes_keepdims", stored("axes, keepdims=1", (-1, 1), _L1))
add("ReduceL2", stored("dim, keepdim=False", ((1,), True), "return torch.linalg.vector_norm(x, ord=2, dim=self.dim, keepdim=self.keepdim)"))
_L2 = "return torch.linalg.vector_norm(x, ord=2, dim=self.axes, keepdim=bool(self.keepdims))"
add("ReduceL2_2d_input", stored("axes, keepdims=1", (1, 0), _L2))
add("ReduceL2_keepdims", stored("axes, keepdims=1", (1,), _L2))
add("ReduceL2_multiple_axes", stored("axes, keepdims=1", ((0, 2), 0), _L2))
_LSE = "return torch.logsumexp(x, dim=self.axes, keepdim=bool(self.keepdims))"
add("ReduceLogSumExp", stored("axes, keepdims=1", ((0, 2), 1), _LSE))
add("ReduceLogSumExp_2d_input", stored("axes, keepdims=1", (1, 0), _LSE))
add("ReduceLogSumExp_keepdims", stored("axes, keepdims=1", (1,), _LSE))
add("ReduceLogSumExp_multiple_axes", stored("axes, keepdims=1", ((0, 2), 0), _LSE))
for _op, _fn, _all in [("ReduceMax", "amax", "max"), ("ReduceMin", "amin", "min")]:
    add(_op, stored("dim, keepdim=False", (1, False), f"return torch.{_fn}(x, dim=self.dim, keepdim=self.keepdim)"))
    add(f"{_op}_with_negative_values", stored("dim, keepdim=False", (1, False),
                                              f"return torch.{_fn}(x, dim=self.dim, keepdim=self.keepdim)"))
    add(f"{_op}_empty_axes", unary(f"torch.{_all}(x).unsqueeze(0)"))
add("ReduceMean", stored("dim, keepdim=False", (1, False), "return torch.mean(x, dim=self.dim, keepdim=self.keepdim)"))
add("ReduceMean_keepdims", stored("dim, keepdim=True", (1,), "return torch.mean(x, dim=self.dim, keepdim=self.keepdim)"))
add("ReduceMean_multiple_axes", stored("dims, keepdim=False", ((2, 3), False), "return torch.mean(x, dim=self.dims, keepdim=self.keepdim)"))
add("ReduceProd", stored("dim, keepdim=False", (1, False), "return torch.prod(x, dim=self.dim, keepdim=self.keepdim)"))
add("ReduceProd_1d", stored("dim, keepdim=False", (0, False),
                            "return torch.prod(x, dim=self.dim, keepdim=self.keepdim).unsqueeze(0)"))
add("ReduceProd_keepdims", stored("dim, keepdim=True", (1,), "return torch.prod(x, dim=self.dim, keepdim=self.keepdim)"))
add("ReduceSum", stored("dim, keepdim=False", (1, False), "return torch.sum(x, dim=self.dim, keepdim=self.keepdim)"))
add("ReduceSum_empty_axes", unary("torch.sum(torch.sum(x, dim=(2, 3)), dim=1)"))
add("ReduceSum_multiple_axes", stored("dims, keepdim=False", ((2, 3), False), "return torch.sum(x, dim=self.dims, keepdim=self.keepdim)"))

# Tensor
add("Cast", stored("to_dtype", ("float16",), "return x.to(getattr(torch, self.to_dtype))"))
add("Clip", stored("min_val, max_val", (-0.5, 0.5), "return torch.clamp(x, min=self.min_val, max=self.max_val)"))
add("Concat", stored("axis", (0,), "return torch.cat([a, b, c], dim=self.axis)", args=("a", "b", "c")))
add("CumSum", unary("torch.cumsum(x, dim=-1)"))
add("DepthToSpace", stored("block_size", (4,), "return F.pixel_shuffle(x, self.block_size)", imports=F))
add("Gather", stored("axis", (1,), "return torch.index_select(x, self.axis, indices)", args=("x", "indices")))
add("GatherElements", stored("axis", (1,), "return torch.gather(x, self.axis, indices)", args=("x", "indices")))
add("GridSample", stored("mode='bilinear', padding_mode='zeros', align_corners=False", ("bilinear", "zeros", False),
                         "return F.grid_sample(x, grid, mode=self.mode, padding_mode=self.padding_mode,\n"
                         "                     align_corners=self.align_corners)", args=("x", "grid"), imports=F))
add("OneHot", stored("depth", (10,), "return F.one_hot(x, num_classes=self.depth)", imports=F))
add("Range", Template("return torch.arange(start, limit, delta)", args=("start", "limit", "delta")))
add("Reshape", stored("target_shape", ((16, -1),), "return x.reshape(self.target_shape)"))
add("ScatterElements", stored("axis", (1,), "return x.scatter(self.axis, indices, updates)", args=("x", "indices", "updates")))
add(["Slice", "StridedSlice"], stored("axis, start, end", (1, 3, 6),
                                     "# x[:, start:end] along axis (the export's Slice has steps=[1], as published)\n"
                                     "return x[(slice(None),) * self.axis + (slice(self.start, self.end),)]"))
add("Tile", stored("multiples", ((1, 2, 3),), "return x.repeat(self.multiples)"))
add("TopK", stored("k", (10,), "return torch.topk(x, self.k).values"))
add(["TopK_3d", "TopK_dim0"], stored("k, dim=-1", (), "return torch.topk(x, self.k, dim=self.dim).values"))
add("TopK_indices", stored("k, dim=-1", (10, -1), "return torch.topk(x, self.k, dim=self.dim).indices"))
add("TopK_sorted", stored("k, dim=-1, sorted=True", (10, -1, True),
                          "return torch.topk(x, self.k, dim=self.dim, sorted=self.sorted).values"))
add(["Trilu_lower", "Trilu_uppper"], stored("upper", (), "return torch.triu(x) if self.upper else torch.tril(x)"))
add("Unique", stored("axis, sorted=1", (0, 1),
                     "return torch.unique(x, sorted=bool(self.sorted), return_inverse=True, dim=self.axis)"))
add(["Unique_sorted_with_axis", "Unique_sorted_with_axis_3d"], stored(
    "dim, sorted=True", (), "return torch.unique(x, sorted=self.sorted, return_inverse=True, return_counts=True, dim=self.dim)"))
add(["Where", "Where_broadcast", "Where_scalar"], Template("return torch.where(condition, a, b)", args=("condition", "a", "b")))

# Logic
add("And", binary("torch.logical_and(a.bool(), b.bool())"))  # the published export casts each input twice
add("BitWiseOr", binary("torch.bitwise_or(a, b)"))
add("BitWiseXor", binary("torch.bitwise_xor(a, b)"))
add("BitwiseAnd", binary("torch.bitwise_and(a, b)"))
add("Equal", binary("torch.eq(a, b)"))
add("Greater", binary("torch.gt(a, b)"))
add("GreaterEqual", binary("torch.ge(a, b)"))
add("Less", binary("torch.lt(a, b)"))
add("LessEqual", binary("torch.le(a, b)"))
add(["LogicalXor", "LogicalXor3d", "LogicalXor_2d"], binary("torch.logical_xor(a, b)"))
add("Not", unary("torch.logical_not(x)"))

# Others
add("LSTM", Template("output, (h, c) = self.lstm(x)\nreturn output, h, c",
                     init="self.lstm = nn.LSTM(input_size=16, hidden_size=32)"))
add("RNN", Template("output, _ = self.rnn(x, h0)\nreturn output", args=("x", "h0"),
                    init="self.rnn = nn.RNN(input_size=10, hidden_size=20)"))
add("ROIAlign", stored(
    "output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False", ((7, 7), 1, 2, True),
    "# torchvision.ops.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned) in plain torch,\n"
    "# for the one box (batch index 0; x1, y1, x2, y2) the task pools\n"
    "rois = torch.tensor([0.0, 2.5, 2.5, 12.5, 12.5], dtype=x.dtype).reshape(1, 5)\n"
    "pooled_h, pooled_w = self.output_size\n"
    "offset = 0.5 if self.aligned else 0.0\n"
    "outputs = []\n"
    "for roi in rois:\n"
    "    x1, y1, x2, y2 = (roi[1:] * self.spatial_scale - offset).tolist()\n"
    "    width, height = x2 - x1, y2 - y1\n"
    "    if not self.aligned:\n"
    "        width, height = max(width, 1.0), max(height, 1.0)\n"
    "    bin_h, bin_w = height / pooled_h, width / pooled_w\n"
    "    grid_h = self.sampling_ratio if self.sampling_ratio > 0 else math.ceil(height / pooled_h)\n"
    "    grid_w = self.sampling_ratio if self.sampling_ratio > 0 else math.ceil(width / pooled_w)\n"
    "    ys = y1 + (torch.arange(pooled_h * grid_h, dtype=x.dtype) + 0.5) * (bin_h / grid_h)\n"
    "    xs = x1 + (torch.arange(pooled_w * grid_w, dtype=x.dtype) + 0.5) * (bin_w / grid_w)\n"
    "    y_low, y_high, ly, y_ok = self._corners(ys, x.shape[2])\n"
    "    x_low, x_high, lx, x_ok = self._corners(xs, x.shape[3])\n"
    "    feature = x[int(roi[0])]\n"
    "    hy, hx = (1 - ly)[:, None], (1 - lx)[None, :]\n"
    "    ly, lx = ly[:, None], lx[None, :]\n"
    "    value = (hy * hx * feature[:, y_low][:, :, x_low] + hy * lx * feature[:, y_low][:, :, x_high]\n"
    "             + ly * hx * feature[:, y_high][:, :, x_low] + ly * lx * feature[:, y_high][:, :, x_high])\n"
    "    value = value * (y_ok[:, None] & x_ok[None, :])\n"
    "    value = value.reshape(x.shape[1], pooled_h, grid_h, pooled_w, grid_w).mean(dim=(2, 4))\n"
    "    outputs.append(value)\n"
    "return torch.stack(outputs)",
    helpers="@staticmethod\n"
            "def _corners(coords, size):\n"
            "    # bilinear sampling positions as torchvision computes them (clamped at the border)\n"
            "    inside = (coords >= -1.0) & (coords <= size)\n"
            "    coords = coords.clamp(min=0)\n"
            "    low = coords.floor().long().clamp(max=size - 1)\n"
            "    high = (low + 1).clamp(max=size - 1)\n"
            "    coords = torch.where(low >= size - 1, low.to(coords.dtype), coords)\n"
            "    return low, high, coords - low, inside",
    imports=("import math",)))
add("Stft", stored("n_fft, hop_length=None, win_length=None", (256, 64, 200),
                   "window = torch.hann_window(self.win_length, device=x.device)\n"
                   "return torch.stft(x, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,\n"
                   "                  window=window, center=True, pad_mode='reflect', onesided=True, return_complex=False)"))

# init values that depend on the task's init args rather than the shared template
INIT_VALUES = {
    "LogSoftmax_axis_0": (0,), "LogSoftmax_axis_1": (1,), "LogSoftmax_axis_2": (2,),
    "Einsum": ("ij,jk->ik",), "Einsum_elementwise": ("ij,ij->ij",), "Einsum_diagonal": ("ii->i",),
    "Einsum_sum_all": ("ij->",), "Einsum_transpose": ("ij->ji",),
    "TopK_3d": (10, -1), "TopK_dim0": (10, 0), "Trilu_lower": (0,), "Trilu_uppper": (1,),
    "Unique_sorted_with_axis": (0, True), "Unique_sorted_with_axis_3d": (1, True),
}


# ------------------------------------------------------------------ inputs
def torch_draw(expression: str, shape: tuple[int, ...], dtype: str) -> tuple[str, bool]:
    """A spec draw expression as torch code; (code, uses math)."""
    dims = ", ".join(str(d) for d in shape)
    size = f"({dims},)" if len(shape) == 1 else f"({dims})"
    int_dtype = {"int32": ", dtype=torch.int32", "int64": "", "uint8": ", dtype=torch.uint8", "int8": ", dtype=torch.int8"}
    uses_math = False

    def call(name: str, *args: ast.expr) -> ast.Call:
        return ast.Call(ast.Attribute(ast.Name("torch"), name), list(args), [])

    def raw(code: str) -> ast.expr:
        return ast.parse(code, mode="eval").body

    class ToTorch(ast.NodeTransformer):
        def visit_Name(self, node):
            nonlocal uses_math
            if node.id == "pi":
                uses_math = True
                return raw("math.pi")
            if node.id in ("rand", "randn", "zeros", "ones"):
                return raw(f"torch.{node.id}({dims})")
            return node

        def visit_Compare(self, node):
            # randint(0, 2) > 0 is the table's randint[0,2).bool()
            left = node.left
            if (isinstance(left, ast.Call) and left.func.id == "randint" and isinstance(node.ops[0], ast.Gt)
                    and isinstance(node.comparators[0], ast.Constant) and node.comparators[0].value == 0):
                low, high = (a.value for a in left.args)
                return raw(f"torch.randint({low}, {high}, {size}).bool()")
            self.generic_visit(node)
            return node

        def visit_Call(self, node):
            name = node.func.id
            args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
            if name == "randint":
                return raw(f"torch.randint({args[0]}, {args[1]}, {size}{int_dtype.get(dtype, '')})")
            if name == "const" and not shape:
                return raw(f"torch.tensor({args[0]!r})")
            if name in ("const", "full"):
                return raw(f"torch.full({size}, {args[0]!r})")
            if name == "uniform":
                return raw(f"torch.empty({dims}).uniform_({args[0]!r}, {args[1]!r})")
            raise ValueError(f"no torch translation for draw {expression!r}")

    tree = ToTorch().visit(ast.parse(expression, mode="eval"))
    code = ast.unparse(tree)
    if dtype in ("float16",) and "torch." in code:
        code = f"({code}).half()"
    return code, uses_math


# ------------------------------------------------------------------ assembling a module
def indent(text: str, spaces: int) -> str:
    return "\n".join((" " * spaces + line) if line.strip() else "" for line in text.splitlines())


def module_source(task: Task) -> str:
    template = TEMPLATES[task.name]
    values = INIT_VALUES.get(task.name, template.values)
    if len(template.args) != len(task.inputs):
        raise ValueError(f"{task.name}: template takes {len(template.args)} inputs, the spec has {len(task.inputs)}")
    draws, uses_math = [], "math." in template.forward + template.helpers
    for arg, spec in zip(template.args, task.inputs):
        code, math_used = torch_draw(spec.draw, spec.shape, spec.dtype)
        uses_math |= math_used
        draws.append(f"{arg} = {code}")
    imports = ["import torch", "import torch.nn as nn"] + list(template.imports)
    if uses_math and "import math" not in imports:
        imports.insert(0, "import math")
    imports = sorted(i for i in imports if i.startswith("import math")) + [i for i in imports if not i.startswith("import math")]
    params = f"self, {template.params}" if template.params else "self"
    init_body = "super().__init__()" + (f"\n{template.init}" if template.init else "")
    lines = [*imports, "", "", "class Model(nn.Module):",
             f"    def __init__({params}):", indent(init_body, 8), "",
             f"    def forward(self, {', '.join(template.args)}):", indent(template.forward, 8)]
    if template.helpers:
        lines += ["", indent(template.helpers, 4)]
    lines += ["", "", "def get_inputs():"]
    if task.seed:
        lines.append(f"    torch.manual_seed({task.seed})")
    lines += [indent(d, 4) for d in draws]
    lines += [f"    return [{', '.join(template.args)}]", "", "", "def get_init_inputs():",
              f"    return [{', '.join(repr(v) for v in values)}]", ""]
    source = "\n".join(lines)
    check_module(task.name, source)
    return source


def check_module(name: str, source: str) -> None:
    compile(source, name, "exec")
    if "'''" in source or '"""' in source:
        raise ValueError(f"{name}: module must not contain a triple quote")
    for line in source.splitlines():
        if line.strip().startswith("["):
            raise ValueError(f"{name}: module line starts with '[' (write_section would split there): {line!r}")


def main(names: list[str]) -> int:
    tasks, errors = load_suite(PAPER, "paper")
    for error in errors:
        print(f"bad task file: {error}", file=sys.stderr)
    missing = sorted(t.name for t in tasks if t.name not in TEMPLATES)
    if missing:
        print(f"no template for: {', '.join(missing)}", file=sys.stderr)
        return 1
    chosen = [t for t in tasks if not names or t.name in names]
    for task in chosen:
        write_section(task.path, "torch", {"module": module_source(task)})
    print(f"wrote [torch] for {len(chosen)} tasks")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
