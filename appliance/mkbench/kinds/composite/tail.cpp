
}  // namespace mkuser

class MkScaffoldTransform : public OnnxExtraManager::Transform {
public:
    EXPRP onExecute(EXPRP expr) const override {
        auto inputs = expr->inputs();
        if (inputs.size() < @COUNT@) {
            MNN_ERROR("mkbench scaffold: ONNX @OP@ has %d inputs, the scaffold expects @COUNT@\n", (int)inputs.size());
            return nullptr;
        }
        VARP y = mkuser::@FUNCTION@(@ARGUMENTS@);
        if (y.get() == nullptr) {
            return nullptr;
        }
        auto newExpr = y->expr().first;
        newExpr->setName(expr->name());
        return newExpr;
    }
};

static auto gRegister = []() {
    OnnxExtraManager::get()->insert("@OP@", std::shared_ptr<OnnxExtraManager::Transform>(new MkScaffoldTransform));
    return true;
}();

}  // namespace Express
}  // namespace MNN
