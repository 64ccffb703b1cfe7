// mkbench example composite kernel: ONNX Softplus, written as an LLM would be asked to.
// A composite kernel is a converter transform, not a CPU execution: one C++ file defining an
// OnnxExtraManager::Transform whose onExecute rewrites the ONNX op into a graph of existing MNN
// ops with the Express API, registered with OnnxExtraManager::get()->insert("<ONNX op>", ...),
// exactly like the files in MNN's tools/converter/source/optimizer/onnxextra/. It runs inside
// MNNConvert when the model is converted; the .mnn it produces is what gets judged.
//
// MNN's own Softplus is log(exp(x) + 1), which overflows to inf for x > ~88. This one is the
// numerically stable form softplus(x) = relu(x) + log1p(exp(-|x|)).
#include <MNN/expr/ExprCreator.hpp>
#include "MNN_generated.h"
#include "OnnxExtraManager.hpp"

namespace MNN {
namespace Express {

class MkExampleSoftplusTransform : public OnnxExtraManager::Transform {
public:
    EXPRP onExecute(EXPRP expr) const override {
        auto x        = expr->inputs()[0];
        auto positive = _Relu(x);
        auto tail     = _Log1p(_Exp(_Negative(_Abs(x))));
        auto newExpr  = _Add(positive, tail)->expr().first;
        newExpr->setName(expr->name());
        return newExpr;
    }
};

static auto gRegister = []() {
    OnnxExtraManager::get()->insert("Softplus",
                                    std::shared_ptr<OnnxExtraManager::Transform>(new MkExampleSoftplusTransform));
    return true;
}();

} // namespace Express
} // namespace MNN
