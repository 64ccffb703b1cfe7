// A transform that only shows whether MNN's converter asks for one: the candidate converter's recorder
// logs the call, and the transform declines, so MNN's conversion goes on as without it.
#include <MNN/expr/ExprCreator.hpp>
#include "MNN_generated.h"
#include "OnnxExtraManager.hpp"
namespace MNN {
namespace Express {
class MkbenchProbeTransform : public OnnxExtraManager::Transform {
public:
    EXPRP onExecute(EXPRP expr) const override { return nullptr; }
};
static auto gMkbenchProbe = []() {
    OnnxExtraManager::get()->insert("@OP@", std::shared_ptr<OnnxExtraManager::Transform>(new MkbenchProbeTransform));
    return true;
}();
}  // namespace Express
}  // namespace MNN
