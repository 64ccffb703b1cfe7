"""The scaffolding tool: everything MNN-specific of a kernel file, written from the task's targets.

    scaffold = scaffold_for(task)          # raises ScaffoldUnsupported for targets it cannot frame
    scaffold.stubs()                       # what the model sees: signatures, index formulas, steps
    source, region = scaffold.splice(code) # the candidate file, and the lines of the model's code

The model writes only plain C++ functions over raw pointers and sizes; the scaffold writes the
includes, the Execution (constructor, onResize, onExecute), the Creator that reads the op's
parameters (UnaryOp/BinaryOp sub-type, ReductionParam::dim, Axis::axis), the layout handling
(NC4HW4 tensors are unpacked to plain NCHW with the backend's pack and packed back; elementwise
kernels use the backend's padded size), the threading over MNN's pool, and the registration.

Kinds: elementwise unary (UnaryOp sub-types), binary over same-shape inputs or one single value
(BinaryOp), reduction over an [outside, axis, inside] view (Reduction sub-types), softmax over an
axis, and a generic fallback for one other op type (its tensors plain, shapes as the task states).
A task whose targets span several of the first four kinds (LogSoftmax: Reduction, BinaryOp, UnaryOp)
gets one Execution per op type and one function per sub-type.

A composite task (MNN's converter rewrites the ONNX operator into other MNN ops) has no raw
pointers to hand out: its kernel runs at conversion time. Its scaffold writes the converter
transform and its registration, and the model writes one function from the node's inputs (VARPs)
to its output with MNN's Express functions, whose declarations the stub lists, read from the
pinned tree's headers.

A geometry task whose op only moves elements (Reshape, Concat, DepthToSpace, ...) gets a
GeometryComputer that asks the model's function for the output as blocks copied from the inputs
(3-D strided boxes, MNN's raster regions in plain words), checks every block against the
tensors' sizes and hands them to MNN as regions. Geometry ops that compute (CumSum, MatMul) are
not framed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...tasks.spec import Task

BEGIN_MARK = "// ---- mkbench: model code begins"
END_MARK = "// ---- mkbench: model code ends"

# What each sub-type computes, as the ONNX reference does (x: input value).
UNARY = {
    "ABS": "|x|", "NEG": "-x", "FLOOR": "floor(x)", "CEIL": "ceil(x)", "SQUARE": "x * x", "SQRT": "sqrt(x)",
    "RSQRT": "1 / sqrt(x)", "EXP": "exp(x)", "LOG": "log(x) (natural)", "SIN": "sin(x)", "COS": "cos(x)",
    "TAN": "tan(x)", "ASIN": "asin(x)", "ACOS": "acos(x)", "ATAN": "atan(x)", "RECIPROCAL": "1 / x",
    "LOG1P": "log(1 + x)", "BNLL": "log(1 + exp(x))", "ACOSH": "acosh(x)", "SINH": "sinh(x)", "ASINH": "asinh(x)",
    "ATANH": "atanh(x)", "SIGN": "-1 if x < 0, 0 if x == 0, 1 if x > 0",
    "ROUND": "x rounded to the nearest integer, halves to even (std::nearbyint)", "COSH": "cosh(x)",
    "ERF": "erf(x)", "ERFC": "erfc(x)", "EXPM1": "exp(x) - 1", "SIGMOID": "1 / (1 + exp(-x))", "TANH": "tanh(x)",
    "HARDSWISH": "x * min(max(x + 3, 0), 6) / 6", "GELU": "0.5 * x * (1 + tanh(0.7978845608 * (x + 0.044715 * x^3)))",
    "GELU_STANDARD": "0.5 * x * (1 + erf(x / sqrt(2)))", "SILU": "x / (1 + exp(-x))",
}
BINARY = {
    "ADD": "a + b", "SUB": "a - b", "MUL": "a * b", "REALDIV": "a / b", "DIV": "a / b", "MINIMUM": "min(a, b)",
    "MAXIMUM": "max(a, b)", "POW": "pow(a, b)", "FLOORDIV": "floor(a / b)", "FLOORMOD": "a - floor(a / b) * b",
    "MOD": "fmod(a, b)", "ATAN2": "atan2(a, b)", "SquaredDifference": "(a - b) * (a - b)",
    "GREATER": "1 if a > b else 0", "GREATER_EQUAL": "1 if a >= b else 0", "LESS": "1 if a < b else 0",
    "LESS_EQUAL": "1 if a <= b else 0", "EQUAL": "1 if a == b else 0", "NOTEQUAL": "1 if a != b else 0",
    "LOGICALOR": "1 if (a != 0 or b != 0) else 0", "LOGICALXOR": "1 if ((a != 0) != (b != 0)) else 0",
}
COMPARISONS = {"GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL", "NOTEQUAL", "LOGICALOR", "LOGICALXOR"}
# Reductions: (what y holds, Y's start value, how a value v joins Y, the last step or ""), Y = y[o * inside + i].
REDUCTIONS = {
    "SUM": ("the sum", "0", "Y += v", ""), "MEAN": ("the mean", "0", "Y += v", "Y /= axis"),
    "MAXIMUM": ("the maximum", "x[o * axis * inside + i]", "Y = max(Y, v)", ""),
    "MINIMUM": ("the minimum", "x[o * axis * inside + i]", "Y = min(Y, v)", ""),
    "PROD": ("the product", "1", "Y *= v", ""), "ASUM": ("the sum of |v|", "0", "Y += |v|", ""),
    "SUMSQ": ("the sum of v * v", "0", "Y += v * v", ""),
}
SCAFFOLD_KINDS = ("unary", "binary", "reduction", "softmax", "generic", "composite", "movement")
# Geometry op types whose output is the inputs' elements moved or repeated: framed as copy blocks.
MOVEMENT_OPS = ("Reshape", "Concat", "DepthToSpace", "SpaceToDepth", "Permute", "Transpose", "Squeeze", "Unsqueeze",
                "Flatten", "Tile", "BroadcastTo", "Slice", "StridedSlice")
_KIND_OF_OP = {"UnaryOp": "unary", "BinaryOp": "binary", "Reduction": "reduction", "Softmax": "softmax"}
_CTYPE = {"float32": "float", "float16": "float", "int64": "int32_t", "int32": "int32_t", "bool": "int32_t",
          "uint8": "int32_t", "int8": "int32_t"}


class ScaffoldUnsupported(ValueError):
    """The scaffold cannot frame this task's targets (the message says which and why)."""


@dataclass(frozen=True)
class Function:
    """One function the model writes."""

    name: str
    signature: str  # without the trailing semicolon
    comment: str  # what it computes: the index formula and the algorithm's steps
    read_only: tuple[str, ...]  # parameters that point at inputs (never written)

    def stub(self) -> str:
        return "\n".join(f"// {line}" if line else "//" for line in self.comment.splitlines()) + f"\n{self.signature};"


@dataclass(frozen=True)
class Scaffold:
    """A generated kernel file with a hole for the model's functions."""

    task: str
    kinds: tuple[str, ...]
    functions: tuple[Function, ...]
    head: str  # the file before the model's code
    tail: str  # the file after it
    api: str = ""  # declarations the functions may call (a composite's Express functions), as comments

    def stubs(self) -> str:
        """What the model must write: one commented signature per function (and what it may call)."""
        return "\n\n".join([*(f.stub() for f in self.functions), *([self.api] if self.api else [])])

    def splice(self, code: str) -> tuple[str, tuple[int, int]]:
        """The candidate file with the model's code in the hole, and its (first, last) line numbers."""
        code = code.strip("\n")
        first = self.head.count("\n") + 1
        last = first + max(0, code.count("\n"))
        return f"{self.head}{code}\n{self.tail}", (first, last)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.functions)


# ---------------------------------------------------------------- the C++ pieces

_HEAD = """\
// mkbench scaffold for task {task} ({targets}) on MNN 3.6.1's CPU backend.
// Generated by mkbench: everything MNN-specific. Only the functions between the marks are the model's.
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>
#if defined(__aarch64__) || defined(__ARM_NEON)
#include <arm_neon.h>
#elif defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mkuser {{
{begin}
"""

_COMMON = """
}}  // namespace mkuser

#include "backend/cpu/CPUBackend.hpp"
#include "backend/cpu/compute/CommonOptFunction.h"
#include "core/Concurrency.h"
#include "core/Execution.hpp"
#include "core/Macro.h"
#include "core/TensorUtils.hpp"

namespace MNN {{
namespace mkscaffold {{
// NC4HW4 keeps channels in blocks of `pack` (the backend's: 4 on NEON/SSE, 8 on AVX2, 16 on AVX-512),
// padded, batch outermost: [batch][ceil(channel / pack)][area][pack].
static inline bool isPacked(const Tensor* t) {{
    return TensorUtils::getDescribe(t)->dimensionFormat == MNN_DATA_FORMAT_NC4HW4;
}}
static inline void plainShape(const Tensor* t, int* batch, int* channel, int* area) {{
    *batch = t->dimensions() > 0 ? t->length(0) : 1;
    *channel = t->dimensions() > 1 ? t->length(1) : 1;
    *area = 1;
    for (int i = 2; i < t->dimensions(); ++i) *area *= t->length(i);
}}
static inline int plainSize(const Tensor* t) {{
    int batch, channel, area;
    plainShape(t, &batch, &channel, &area);
    return batch * channel * area;
}}
template <typename T>
static void unpackTo(const Tensor* t, T* dst, int pack) {{
    int batch, channel, area;
    plainShape(t, &batch, &channel, &area);
    const T* src = t->host<T>();
    const int blocks = (channel + pack - 1) / pack;
    for (int b = 0; b < batch; ++b)
        for (int c = 0; c < channel; ++c) {{
            const T* s = src + ((size_t)(b * blocks + c / pack) * area) * pack + c % pack;
            T* d = dst + (size_t)(b * channel + c) * area;
            for (int x = 0; x < area; ++x) d[x] = s[(size_t)x * pack];
        }}
}}
template <typename T>
static void packFrom(const T* src, Tensor* t, int pack) {{
    int batch, channel, area;
    plainShape(t, &batch, &channel, &area);
    T* dst = t->host<T>();
    const int blocks = (channel + pack - 1) / pack;
    ::memset(dst, 0, sizeof(T) * (size_t)batch * blocks * area * pack);
    for (int b = 0; b < batch; ++b)
        for (int c = 0; c < channel; ++c) {{
            const T* s = src + (size_t)(b * channel + c) * area;
            T* d = dst + ((size_t)(b * blocks + c / pack) * area) * pack + c % pack;
            for (int x = 0; x < area; ++x) d[(size_t)x * pack] = s[x];
        }}
}}
// Thread tId of `threads` takes [begin, end) of `total` items.
static inline void split(int total, int threads, int tId, int* begin, int* end) {{
    const int chunk = (total + threads - 1) / threads;
    *begin = std::min(total, tId * chunk);
    *end = std::min(total, *begin + chunk);
}}
// [outside, axis, inside] around one axis of a plain tensor (axis < 0 counts from the end).
static inline void axisView(const Tensor* t, int axis, int* outside, int* length, int* inside) {{
    const int dims = t->dimensions();
    if (axis < 0) axis += dims;
    *outside = 1;
    *inside = 1;
    *length = (axis >= 0 && axis < dims) ? t->length(axis) : 1;
    for (int i = 0; i < axis && i < dims; ++i) *outside *= t->length(i);
    for (int i = axis + 1; i < dims; ++i) *inside *= t->length(i);
}}
}}  // namespace mkscaffold
"""

_UNARY = """
class MkScaffoldUnary : public Execution {{
public:
    MkScaffoldUnary(Backend* backend, int type) : Execution(backend), mType(type) {{}}
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {{
        auto cpu = static_cast<CPUBackend*>(backend());
        // Elementwise: any layout works when input and output share it; the backend's size counts
        // the padding of NC4HW4 tensors.
        const int total = static_cast<int>(cpu->getTensorSize(outputs[0]));
        const float* x = inputs[0]->host<float>();
        float* y = outputs[0]->host<float>();
        const int threads = std::max(1, cpu->threadNumber());
        MNN_CONCURRENCY_BEGIN(tId, threads) {{
            int begin, end;
            mkscaffold::split(total, threads, (int)tId, &begin, &end);
            if (end > begin) run(x + begin, y + begin, (size_t)(end - begin));
        }}
        MNN_CONCURRENCY_END();
        return NO_ERROR;
    }}

private:
    void run(const float* x, float* y, size_t n) const {{
        switch (mType) {{
{cases}
            default: break;
        }}
    }}
    int mType;
}};

class MkScaffoldUnaryCreator : public CPUBackend::Creator {{
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {{
        const int type = op->main_as_UnaryOp()->opType();
        if ({accepted}) return new MkScaffoldUnary(backend, type);
        return nullptr;  // mkbench's dispatcher sends only the task's sub-types here
    }}
}};
REGISTER_CPU_OP_CREATOR(MkScaffoldUnaryCreator, OpType_UnaryOp);
"""

_BINARY = """
class MkScaffoldBinary : public Execution {{
public:
    MkScaffoldBinary(Backend* backend, int type, int activation) : Execution(backend), mType(type), mActivation(activation) {{}}
    ErrorCode onResize(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {{
        auto cpu = static_cast<CPUBackend*>(backend());
        const size_t total = cpu->getTensorSize(outputs[0]);
        const size_t n0 = cpu->getTensorSize(inputs[0]), n1 = cpu->getTensorSize(inputs[1]);
        if ((n0 != total && n0 != 1) || (n1 != total && n1 != 1)) {{
            MNN_ERROR("mkbench scaffold: BinaryOp inputs of %d and %d values for %d outputs (only same shape or one value)\\n",
                      (int)n0, (int)n1, (int)total);
            return NOT_SUPPORT;
        }}
        return NO_ERROR;
    }}
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {{
        auto cpu = static_cast<CPUBackend*>(backend());
        const int total = static_cast<int>(cpu->getTensorSize(outputs[0]));
        // The model's functions read n values of each input: one that holds a single value (MNN's
        // geometry expands every other broadcast) is repeated into a buffer first.
        const float* a = repeated(inputs[0], total, mRepeatA);
        const float* b = repeated(inputs[1], total, mRepeatB);
        const int threads = std::max(1, cpu->threadNumber());
        MNN_CONCURRENCY_BEGIN(tId, threads) {{
            int begin, end;
            mkscaffold::split(total, threads, (int)tId, &begin, &end);
            if (end > begin) run(a + begin, b + begin, outputs[0], begin, (size_t)(end - begin));
        }}
        MNN_CONCURRENCY_END();
        return NO_ERROR;
    }}

private:
    const float* repeated(const Tensor* input, int total, std::vector<float>& buffer) const {{
        const float* values = input->host<float>();
        if (static_cast<CPUBackend*>(backend())->getTensorSize(input) != 1 || total == 1) return values;
        buffer.assign((size_t)total, values[0]);
        return buffer.data();
    }}
    void run(const float* a, const float* b, Tensor* output, int begin, size_t n) const {{
        float* y = output->host<float>() + begin;
        int32_t* yi = output->host<int32_t>() + begin;
        (void)y; (void)yi;
        switch (mType) {{
{cases}
            default: break;
        }}
        if (mActivation == 1 && output->getType().code == halide_type_float) {{  // a fused ReLU
            for (size_t i = 0; i < n; ++i) y[i] = std::max(y[i], 0.0f);
        }}
    }}
    int mType;
    int mActivation;
    std::vector<float> mRepeatA, mRepeatB;
}};

class MkScaffoldBinaryCreator : public CPUBackend::Creator {{
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {{
        const int type = op->main_as_BinaryOp()->opType();
        if ({accepted}) return new MkScaffoldBinary(backend, type, op->main_as_BinaryOp()->activationType());
        return nullptr;  // mkbench's dispatcher sends only the task's sub-types here
    }}
}};
REGISTER_CPU_OP_CREATOR(MkScaffoldBinaryCreator, OpType_BinaryOp);
"""

_REDUCTION = """
class MkScaffoldReduction : public Execution {{
public:
    MkScaffoldReduction(Backend* backend, int type, int axis, bool all) : Execution(backend), mType(type), mAxis(axis), mAll(all) {{}}
    ErrorCode onResize(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {{
        // MNN's geometry hands a Reduction one axis of a plain tensor (it splits multi-axis ones).
        if (mkscaffold::isPacked(inputs[0]) || mkscaffold::isPacked(outputs[0])) {{
            MNN_ERROR("mkbench scaffold: a packed (NC4HW4) Reduction is not handled\\n");
            return NOT_SUPPORT;
        }}
        return NO_ERROR;
    }}
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {{
        auto cpu = static_cast<CPUBackend*>(backend());
        int outside = 1, length = inputs[0]->elementSize(), inside = 1;
        if (!mAll) mkscaffold::axisView(inputs[0], mAxis, &outside, &length, &inside);
        const float* x = inputs[0]->host<float>();
        float* y = outputs[0]->host<float>();
        const int threads = std::max(1, cpu->threadNumber());
        MNN_CONCURRENCY_BEGIN(tId, threads) {{
            int begin, end;
            mkscaffold::split(outside, threads, (int)tId, &begin, &end);
            if (end > begin) run(x + (size_t)begin * length * inside, y + (size_t)begin * inside, end - begin, length, inside);
        }}
        MNN_CONCURRENCY_END();
        return NO_ERROR;
    }}

private:
    void run(const float* x, float* y, int outside, int axis, int inside) const {{
        switch (mType) {{
{cases}
            default: break;
        }}
    }}
    int mType;
    int mAxis;
    bool mAll;
}};

class MkScaffoldReductionCreator : public CPUBackend::Creator {{
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {{
        auto param = op->main_as_ReductionParam();
        const int type = param->operation();
        const bool all = param->dim() == nullptr || param->dim()->size() == 0;
        if (!all && param->dim()->size() != 1) return nullptr;  // geometry gives one axis per Reduction
        const int axis = all ? 0 : param->dim()->data()[0];
        if ({accepted}) return new MkScaffoldReduction(backend, type, axis, all);
        return nullptr;  // mkbench's dispatcher sends only the task's sub-types here
    }}
}};
REGISTER_CPU_OP_CREATOR(MkScaffoldReductionCreator, OpType_Reduction);
"""

_SOFTMAX = """
class MkScaffoldSoftmax : public Execution {{
public:
    MkScaffoldSoftmax(Backend* backend, int axis) : Execution(backend), mAxis(axis) {{}}
    ErrorCode onResize(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {{
        mPacked = mkscaffold::isPacked(inputs[0]);
        if (mPacked) {{  // compute on plain NCHW copies
            mPlainIn.resize(mkscaffold::plainSize(inputs[0]));
            mPlainOut.resize(mkscaffold::plainSize(outputs[0]));
        }}
        return NO_ERROR;
    }}
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {{
        auto cpu = static_cast<CPUBackend*>(backend());
        const int pack = cpu->functions()->pack;
        int outside, length, inside;
        mkscaffold::axisView(inputs[0], mAxis, &outside, &length, &inside);
        if (mPacked) mkscaffold::unpackTo<float>(inputs[0], mPlainIn.data(), pack);
        const float* x = mPacked ? mPlainIn.data() : inputs[0]->host<float>();
        float* y = mPacked ? mPlainOut.data() : outputs[0]->host<float>();
        const int threads = std::max(1, cpu->threadNumber());
        MNN_CONCURRENCY_BEGIN(tId, threads) {{
            int begin, end;
            mkscaffold::split(outside * inside, threads, (int)tId, &begin, &end);
            for (int row = begin; row < end; ++row) {{  // row = o * inside + i
                const size_t offset = (size_t)(row / inside) * length * inside + row % inside;
                mkuser::mk_softmax(x + offset, y + offset, length, inside);
            }}
        }}
        MNN_CONCURRENCY_END();
        if (mPacked) mkscaffold::packFrom<float>(mPlainOut.data(), outputs[0], pack);
        return NO_ERROR;
    }}

private:
    int mAxis;
    bool mPacked = false;
    std::vector<float> mPlainIn, mPlainOut;
}};

class MkScaffoldSoftmaxCreator : public CPUBackend::Creator {{
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {{
        const int axis = op->main_as_Axis() != nullptr ? op->main_as_Axis()->axis() : -1;
        return new MkScaffoldSoftmax(backend, axis);
    }}
}};
REGISTER_CPU_OP_CREATOR(MkScaffoldSoftmaxCreator, OpType_Softmax);
"""

_GENERIC = """
class MkScaffold{op} : public Execution {{
public:
    explicit MkScaffold{op}(Backend* backend) : Execution(backend) {{}}
    ErrorCode onResize(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {{
        static const int inputSizes[] = {{{input_sizes}}};
        static const int outputSizes[] = {{{output_sizes}}};
        if ((int)inputs.size() != {input_count} || (int)outputs.size() != {output_count}) {{
            MNN_ERROR("mkbench scaffold: {op} has %d inputs and %d outputs, the task states {input_count} and {output_count}\\n",
                      (int)inputs.size(), (int)outputs.size());
            return NOT_SUPPORT;
        }}
        mPlain.clear();
        for (size_t i = 0; i < inputs.size() + outputs.size(); ++i) {{
            const Tensor* t = i < inputs.size() ? inputs[i] : outputs[i - inputs.size()];
            const int expected = i < inputs.size() ? inputSizes[i] : outputSizes[i - inputs.size()];
            if (mkscaffold::plainSize(t) != expected) {{
                MNN_ERROR("mkbench scaffold: {op} tensor %d has %d values, the task states %d\\n", (int)i, mkscaffold::plainSize(t), expected);
                return NOT_SUPPORT;
            }}
            // Packed (NC4HW4) tensors are computed on plain NCHW copies.
            mPlain.emplace_back(mkscaffold::isPacked(t) ? std::vector<float>(expected) : std::vector<float>());
        }}
        return NO_ERROR;
    }}
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {{
        const int pack = static_cast<CPUBackend*>(backend())->functions()->pack;
        std::vector<void*> plain(inputs.size() + outputs.size());
        for (size_t i = 0; i < plain.size(); ++i) {{
            Tensor* t = i < inputs.size() ? inputs[i] : outputs[i - inputs.size()];
            if (mPlain[i].empty()) {{
                plain[i] = t->host<void>();
            }} else {{
                if (i < inputs.size()) mkscaffold::unpackTo<float>(t, mPlain[i].data(), pack);
                plain[i] = mPlain[i].data();
            }}
        }}
        mkuser::{function}({arguments});
        for (size_t i = inputs.size(); i < plain.size(); ++i) {{
            if (!mPlain[i].empty()) mkscaffold::packFrom<float>(mPlain[i].data(), outputs[i - inputs.size()], pack);
        }}
        return NO_ERROR;
    }}

private:
    std::vector<std::vector<float>> mPlain;
}};

class MkScaffold{op}Creator : public CPUBackend::Creator {{
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {{
        return new MkScaffold{op}(backend);
    }}
}};
REGISTER_CPU_OP_CREATOR(MkScaffold{op}Creator, OpType_{op});
"""

_TAIL = "\n}  // namespace MNN\n"

_COMPOSITE_HEAD = """\
// mkbench scaffold for task {task}: MNN 3.6.1's converter rewrite of ONNX {op} (a composite kernel).
// Generated by mkbench: everything MNN-specific. Only the function between the marks is the model's.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>
#include <MNN/expr/ExprCreator.hpp>
#include "MNN_generated.h"
#include "OnnxExtraManager.hpp"

namespace MNN {{
namespace Express {{
namespace mkuser {{
{begin}
"""

_COMPOSITE_TAIL = """
}}  // namespace mkuser

class MkScaffoldTransform : public OnnxExtraManager::Transform {{
public:
    EXPRP onExecute(EXPRP expr) const override {{
        auto inputs = expr->inputs();
        if (inputs.size() < {count}) {{
            MNN_ERROR("mkbench scaffold: ONNX {op} has %d inputs, the scaffold expects {count}\\n", (int)inputs.size());
            return nullptr;
        }}
        VARP y = mkuser::{function}({arguments});
        if (y.get() == nullptr) {{
            return nullptr;
        }}
        auto newExpr = y->expr().first;
        newExpr->setName(expr->name());
        return newExpr;
    }}
}};

static auto gRegister = []() {{
    OnnxExtraManager::get()->insert("{op}", std::shared_ptr<OnnxExtraManager::Transform>(new MkScaffoldTransform));
    return true;
}}();

}}  // namespace Express
}}  // namespace MNN
"""

_MOVEMENT_HEAD = """\
// mkbench scaffold for task {task}: a geometry computer for {op} on MNN 3.6.1 (a geometry kernel).
// Generated by mkbench: everything MNN-specific. Only the function between the marks is the model's.
#include <algorithm>
#include <cstdint>
#include <vector>

namespace mkuser {{
// One block of the output: for a < size[0], b < size[1], c < size[2]:
//   output[dst_offset + a * dst_stride[0] + b * dst_stride[1] + c * dst_stride[2]]
//     = inputs[input][src_offset + a * src_stride[0] + b * src_stride[1] + c * src_stride[2]]
struct MkBlock {{
    int input;
    int src_offset;
    int src_stride[3];
    int dst_offset;
    int dst_stride[3];
    int size[3];
}};
{begin}
"""

_MOVEMENT_TAIL = """
}}  // namespace mkuser

#include "core/TensorUtils.hpp"
#include "geometry/GeometryComputer.hpp"

namespace MNN {{

class MkScaffoldGeometry : public GeometryComputer {{
public:
    bool onCompute(const Op* op, const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs,
                   Context& context, CommandBuffer& cmd) const override {{
        for (auto t : inputs) {{
            if (TensorUtils::getDescribe(t)->dimensionFormat == MNN_DATA_FORMAT_NC4HW4) {{
                MNN_ERROR("mkbench scaffold: a packed (NC4HW4) input, which the blocks cannot describe\\n");
                return false;
            }}
        }}
        std::vector<mkuser::MkBlock> blocks;
        mkuser::{function}(blocks);
        const int64_t outputSize = outputs[0]->elementSize();
        auto describe = TensorUtils::getDescribe(outputs[0]);
        describe->memoryType = Tensor::InsideDescribe::MEMORY_VIRTUAL;
        describe->regions.clear();
        for (const auto& b : blocks) {{
            if (b.input < 0 || b.input >= (int){count} || b.input >= (int)inputs.size()) {{
                MNN_ERROR("mkbench scaffold: a block reads input %d of {count}\\n", b.input);
                return false;
            }}
            int64_t srcLast = b.src_offset, dstLast = b.dst_offset;
            for (int i = 0; i < 3; ++i) {{
                if (b.size[i] <= 0) {{
                    MNN_ERROR("mkbench scaffold: a block with size[%d] = %d\\n", i, b.size[i]);
                    return false;
                }}
                srcLast += (int64_t)(b.size[i] - 1) * b.src_stride[i];
                dstLast += (int64_t)(b.size[i] - 1) * b.dst_stride[i];
            }}
            const int64_t inputSize = inputs[b.input]->elementSize();
            if (b.src_offset < 0 || b.dst_offset < 0 || srcLast < 0 || dstLast < 0 || srcLast >= inputSize || dstLast >= outputSize) {{
                MNN_ERROR("mkbench scaffold: a block outside its tensors (input %d: last %lld of %lld, output: last %lld of %lld)\\n",
                          b.input, (long long)srcLast, (long long)inputSize, (long long)dstLast, (long long)outputSize);
                return false;
            }}
            Tensor::InsideDescribe::Region region;
            region.origin = inputs[b.input];
            region.src.offset = b.src_offset;
            region.dst.offset = b.dst_offset;
            for (int i = 0; i < 3; ++i) {{
                region.src.stride[i] = b.src_stride[i];
                region.dst.stride[i] = b.dst_stride[i];
                region.size[i] = b.size[i];
            }}
            describe->regions.push_back(region);
        }}
        return !describe->regions.empty();
    }}
}};

static void _mkScaffoldCreate() {{
    std::shared_ptr<GeometryComputer> computer(new MkScaffoldGeometry);
    GeometryComputer::registerGeometryComputer(computer, {{OpType_{op}}});
}}

REGISTER_GEOMETRY(MkScaffoldGeometry, _mkScaffoldCreate);

}}  // namespace MNN
"""

# The Express functions a composite's function may call: declarations read from the tree's headers.
EXPRESS_FUNCTIONS = (
    "_Add", "_Subtract", "_Multiply", "_Divide", "_Pow", "_Minimum", "_Maximum", "_Greater", "_GreaterEqual",
    "_Less", "_LessEqual", "_Equal", "_Abs", "_Negative", "_Sign", "_Floor", "_Square", "_Sqrt", "_Rsqrt",
    "_Reciprocal", "_Exp", "_Log", "_Log1p", "_Sin", "_Cos", "_Tanh", "_Sigmoid", "_Erf", "_ReduceSum",
    "_ReduceMean", "_ReduceMax", "_ReduceMin", "_ReduceProd", "_MatMul", "_Relu", "_Softmax", "_Conv",
    "_Reshape", "_Transpose", "_Squeeze", "_Unsqueeze", "_Concat", "_Slice", "_StridedSlice", "_Gather",
    "_GatherV2", "_GatherElements", "_ScatterElements", "_OneHot", "_Select", "_Tile", "_Fill", "_Shape",
    "_Range", "_Cast", "_Const",
)
EXPRESS_HEADERS = ("include/MNN/expr/MathOp.hpp", "include/MNN/expr/NeuralNetWorkOp.hpp")


# ---------------------------------------------------------------- functions per kind


def _unary(sub: str) -> Function:
    math = UNARY.get(sub, sub.lower())
    name = f"mk_unary_{sub.lower()}"
    return Function(name, f"void {name}(const float* x, float* y, size_t n)",
                    f"UnaryOp {sub}: y[i] = {math}, for every i in [0, n).\n"
                    f"Steps: loop i from 0 to n - 1; read x[i]; write y[i]. x and y do not overlap.", ("x",))


def _binary(sub: str) -> Function:
    math = BINARY.get(sub, sub.lower())
    name = f"mk_binary_{sub.lower()}"
    out = "int32_t" if sub in COMPARISONS else "float"
    return Function(name, f"void {name}(const float* a, const float* b, {out}* y, size_t n)",
                    f"BinaryOp {sub}: y[i] = {math}, with a = a[i], b = b[i], for every i in [0, n).\n"
                    f"Steps: loop i from 0 to n - 1; read a[i] and b[i]; write y[i] ({out}).", ("a", "b"))


def _reduction(sub: str) -> Function:
    what, start, join, last = REDUCTIONS.get(sub, (sub.lower(), "x[o * axis * inside + i]", f"Y = {sub}(Y, v)", ""))
    name = f"mk_reduce_{sub.lower()}"
    first = 1 if start.startswith("x[") else 0  # started from the a = 0 value
    steps = ("Loops (this order reads x contiguously), Y meaning y[o * inside + i]:\n"
             "  for o in [0, outside):\n"
             f"    for i in [0, inside): Y = {start}\n"
             f"    for a in [{first}, axis): for i in [0, inside): v = x[(o * axis + a) * inside + i]; {join}\n"
             + (f"    for i in [0, inside): {last}\n" if last else ""))
    return Function(name, f"void {name}(const float* x, float* y, int outside, int axis, int inside)",
                    f"Reduction {sub}: x is [outside, axis, inside] (row-major), y is [outside, inside].\n"
                    f"y[o * inside + i] = {what} of x[(o * axis + a) * inside + i] over a in [0, axis).\n{steps}".rstrip(),
                    ("x",))


def _softmax() -> Function:
    # One row per call: the scaffold walks the rows (and threads over them); reductions over an
    # [outside, axis, inside] view are where small models break.
    return Function("mk_softmax", "void mk_softmax(const float* x, float* y, int n, int stride)",
                    "Softmax of one row of n values: v(a) = x[a * stride] for a in [0, n);\n"
                    "write y[a * stride] for the same a (stride is 1 when the row is contiguous).\n"
                    "  1. m = max over a of v(a)   (subtract it so exp never overflows)\n"
                    "  2. s = sum over a of exp(v(a) - m)\n"
                    "  3. y[a * stride] = exp(v(a) - m) / s, for every a in [0, n)", ("x",))


def _identifier(name: str) -> str:
    name = re.sub(r"\W", "_", name)
    return name if re.match(r"[A-Za-z_]", name) else f"t_{name}"


def _generic(task: Task, op_type: str) -> tuple[Function, str]:
    """The function and the Execution for one op type the scaffold knows nothing special about."""
    node = next((n for n in task.nodes if n.op == task.operator), task.nodes[0])
    constants = {c.name: c for c in task.constants}
    graph_inputs = [i for i in task.inputs]
    params, arguments, read_only = [], [], []
    lines = [f"{op_type} (ONNX {node.op}): compute the task's outputs from its inputs.",
             "Every tensor is a plain row-major array (NCHW order for images); integer outputs are int32_t."]
    for k, tensor in enumerate(graph_inputs):
        name = _identifier(tensor.name)
        params.append(f"const float* {name}")
        arguments.append(f"static_cast<const float*>(plain[{k}])")
        read_only.append(name)
        lines.append(f"input  {name}: float32 {list(tensor.shape)}")
    for k, tensor in enumerate(task.outputs):
        name = _identifier(tensor.name)
        ctype = _CTYPE.get(tensor.dtype, "float")
        params.append(f"{ctype}* {name}")
        arguments.append(f"static_cast<{ctype}*>(plain[{len(graph_inputs) + k}])")
        lines.append(f"output {name}: {tensor.dtype} {list(tensor.shape)}" + (" (stored as int32_t)" if ctype == "int32_t" and tensor.dtype != "int32" else ""))
    if node.attributes:
        lines.append("attributes: " + ", ".join(f"{k}={v}" for k, v in sorted(node.attributes.items())))
    for name in node.inputs:
        if name in constants:
            c = constants[name]
            value = list(c.value) if c.value is not None and len(c.value) <= 16 else f"drawn ({c.draw})"
            lines.append(f"constant {name}: {c.dtype} {list(c.shape)} = {value} (fixed: use the value)")
    function_name = f"mk_{op_type.lower()}"
    function = Function(function_name, f"void {function_name}({', '.join(params)})", "\n".join(lines), tuple(read_only))
    sizes_in = ", ".join(str(max(1, t.size)) for t in graph_inputs) or "0"
    sizes_out = ", ".join(str(max(1, t.size)) for t in task.outputs) or "0"
    execution = _GENERIC.format(op=op_type, input_sizes=sizes_in, output_sizes=sizes_out, input_count=len(graph_inputs),
                                output_count=len(task.outputs), function=function_name, arguments=", ".join(arguments))
    return function, execution


def express_declarations(tree=None) -> str:
    """EXPRESS_FUNCTIONS as the pinned tree declares them (quantized overloads left out), as comments."""
    from ...mnn import tree as mnn_tree

    root = tree or mnn_tree.locate()
    text = "\n".join((root / header).read_text(errors="replace") for header in EXPRESS_HEADERS)
    declarations = {}
    for match in re.finditer(r"^MNN_PUBLIC\s+(VARP\s+(_\w+)\s*\([^;]*?\))\s*;", text, re.MULTILINE):
        line, name = re.sub(r"\s+", " ", match.group(1)), match.group(2)
        if name in EXPRESS_FUNCTIONS and "int8_t" not in line and "&&" not in line:
            declarations.setdefault(name, []).append(line)
    lines = ["MNN Express functions to build it with (namespace MNN::Express; VARP is a tensor value,",
             "INTS is std::vector<int>; operators + - * / on VARPs work too):",
             "template <typename T> VARP _Scalar(T value)  // a constant, e.g. _Scalar<float>(1.0f)"]
    lines += [f"{line};" for name in EXPRESS_FUNCTIONS for line in declarations.get(name, [])]
    return "\n".join(f"// {line}" for line in lines)


def _node_shapes(task: Task) -> dict[str, tuple[str, list]]:
    """name -> (dtype, shape) of every tensor of the task's graph, intermediates by onnx shape inference."""
    import onnx

    from ...tasks.model import build_model

    known = {t.name: (t.dtype, list(t.shape)) for t in task.inputs + task.constants + task.outputs}
    try:
        inferred = onnx.shape_inference.infer_shapes(build_model(task))
    except Exception:  # onnx raises several kinds; the stub then just lacks a shape
        return known
    for info in inferred.graph.value_info:
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type).name
        known.setdefault(info.name, (dtype, dims))
    return known


def _composite(task: Task) -> Scaffold:
    """A converter transform for the task's ONNX operator that calls the model's Express function."""
    op = task.mnn.targets[0][0]
    node = next((n for n in task.nodes if n.op == op), None)
    if node is None:
        raise ScaffoldUnsupported(f"{task.name}: no ONNX {op} node to rewrite")
    outputs = [o for o in node.outputs if o]
    if len(outputs) != 1:
        raise ScaffoldUnsupported(f"{task.name}: ONNX {op} here has {len(outputs)} outputs; the scaffold frames one")
    shapes = _node_shapes(task)
    constants = {c.name: c for c in task.constants}
    params, arguments = [], []
    lines = [f"ONNX {op} (opset {task.opset}), rewritten at model conversion time: return its output built",
             "from its inputs with the Express functions listed below. The device runs the graph you return."]
    for k, name in enumerate(node.inputs):
        if not name:
            lines.append(f"input {k}: absent (optional, not given)")
            continue
        identifier = _identifier(name)
        params.append(f"VARP {identifier}")
        arguments.append(f"inputs[{k}]")
        dtype, shape = shapes.get(name, ("?", "?"))
        where = "constant" if name in constants else "input"
        c = constants.get(name)
        value = f" = {list(c.value)}" if c is not None and c.value is not None and len(c.value) <= 16 else ""
        lines.append(f"{where} {k} {identifier}: {dtype} {shape}{value}")
    dtype, shape = shapes.get(outputs[0], ("?", "?"))
    lines.append(f"return: {dtype} {shape}")
    if node.attributes:
        lines.append("attributes (fixed for this task: use the values): "
                     + ", ".join(f"{k}={v}" for k, v in sorted(node.attributes.items())))
    name = f"mk_composite_{_identifier(op).lower()}"
    function = Function(name, f"VARP {name}({', '.join(params)})", "\n".join(lines), ())
    head = _COMPOSITE_HEAD.format(task=task.name, op=op, begin=BEGIN_MARK)
    tail = f"{END_MARK}\n" + _COMPOSITE_TAIL.format(op=op, count=len(node.inputs), function=name,
                                                     arguments=", ".join(arguments))
    return Scaffold(task.name, ("composite",), (function,), head, tail, express_declarations())


def _movement(task: Task, op_type: str) -> Scaffold:
    """A geometry computer for an op that only moves elements, around the model's list of copy blocks."""
    node = next((n for n in task.nodes if n.op == task.operator), task.nodes[0])
    shapes = _node_shapes(task)
    inputs = [name for name in node.inputs if name and name not in {c.name for c in task.constants}]
    output = next((o for o in node.outputs if o), "")

    def described(name: str) -> str:
        dtype, shape = shapes.get(name, ("?", "?"))
        return f"{dtype} {shape}"

    lines = [f"{op_type} (ONNX {node.op}): the output holds the inputs' elements, moved or repeated; nothing is computed.",
             "Every tensor is a plain row-major array (element index = its flat position).",
             *(f"input {k} {_identifier(name)}: {described(name)}" for k, name in enumerate(inputs)),
             f"output: {described(output)}"]
    if node.attributes:
        lines.append("attributes (fixed for this task): " + ", ".join(f"{k}={v}" for k, v in sorted(node.attributes.items())))
    lines += ["Append to blocks the copies that make the output (MkBlock is declared above: input, src_offset,",
              "src_stride[3], dst_offset, dst_stride[3], size[3]), e.g. blocks.push_back({0, 0, {0, 0, 1}, 0, {0, 0, 1}, {1, 1, n}})",
              "copies n contiguous elements of input 0 to the start of the output. Every output element must",
              "be written by exactly one block; fewer, larger blocks are faster."]
    name = f"mk_geometry_{op_type.lower()}"
    function = Function(name, f"void {name}(std::vector<MkBlock>& blocks)", "\n".join(lines), ())
    head = _MOVEMENT_HEAD.format(task=task.name, op=op_type, begin=BEGIN_MARK)
    tail = f"{END_MARK}\n" + _MOVEMENT_TAIL.format(function=name, count=len(inputs), op=op_type)
    return Scaffold(task.name, ("movement",), (function,), head, tail)


# ---------------------------------------------------------------- the scaffold


def _cases(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"            case {enum}: {call}; break;" for enum, call in pairs)


def scaffold_for(task: Task) -> Scaffold:
    """The scaffold of a task's targets; raises ScaffoldUnsupported when it cannot frame them."""
    targets = list(task.mnn.targets) if task.mnn else []
    if not targets:
        raise ScaffoldUnsupported(f"{task.name} has no MNN target (validate the task first)")
    if task.mnn.kind == "composite":
        return _composite(task)
    if task.mnn.kind == "geometry":
        op_types = list(dict.fromkeys(op for op, _ in targets))
        if len(op_types) == 1 and op_types[0] in MOVEMENT_OPS:
            return _movement(task, op_types[0])
        raise ScaffoldUnsupported(f"{task.name} needs a geometry kernel for {', '.join(op_types)}: the scaffold frames "
                                  f"geometry only for one op type that moves elements ({', '.join(MOVEMENT_OPS[:3])}, ...)")
    if task.mnn.kind != "cpu-execution":
        raise ScaffoldUnsupported(f"{task.name} needs a {task.mnn.kind} kernel, which the scaffold does not frame")
    by_type: dict[str, list[str | None]] = {}
    for op_type, sub in targets:
        subs = by_type.setdefault(op_type, [])
        if sub not in subs:
            subs.append(sub)
    unknown = [t for t in by_type if t not in _KIND_OF_OP]
    if unknown and len(by_type) > 1:
        raise ScaffoldUnsupported(f"{task.name} targets {', '.join(sorted(by_type))}: the scaffold frames several op types "
                                  f"only when all are UnaryOp, BinaryOp, Reduction or Softmax")
    functions: list[Function] = []
    executions: list[str] = []
    kinds: list[str] = []
    for op_type, subs in by_type.items():
        kind = _KIND_OF_OP.get(op_type, "generic")
        kinds.append(kind)
        if kind in ("unary", "binary", "reduction") and None in subs:
            raise ScaffoldUnsupported(f"{task.name}: target {op_type} without a sub-type")
        if kind == "unary":
            made = [_unary(s) for s in subs]
            cases = _cases([(f"UnaryOpOperation_{s}", f"mkuser::{f.name}(x, y, n)") for s, f in zip(subs, made)])
            executions.append(_UNARY.format(cases=cases, accepted=" || ".join(f"type == UnaryOpOperation_{s}" for s in subs)))
        elif kind == "binary":
            made = [_binary(s) for s in subs]
            cases = _cases([(f"BinaryOpOperation_{s}",
                             f"mkuser::{f.name}(a, b, {'yi' if s in COMPARISONS else 'y'}, n)") for s, f in zip(subs, made)])
            executions.append(_BINARY.format(cases=cases, accepted=" || ".join(f"type == BinaryOpOperation_{s}" for s in subs)))
        elif kind == "reduction":
            made = [_reduction(s) for s in subs]
            cases = _cases([(f"ReductionType_{s}", f"mkuser::{f.name}(x, y, outside, axis, inside)") for s, f in zip(subs, made)])
            executions.append(_REDUCTION.format(cases=cases, accepted=" || ".join(f"type == ReductionType_{s}" for s in subs)))
        elif kind == "softmax":
            made = [_softmax()]
            executions.append(_SOFTMAX.format())
        else:
            function, execution = _generic(task, op_type)
            made = [function]
            executions.append(execution)
        functions += made
    label = ", ".join(f"{op}:{sub}" if sub else op for op, sub in targets)
    head = _HEAD.format(task=task.name, targets=label, begin=BEGIN_MARK)
    tail = f"{END_MARK}\n" + _COMMON.format() + "".join(executions) + _TAIL
    return Scaffold(task.name, tuple(kinds), tuple(functions), head, tail)
