
class MkScaffoldReduction : public Execution {
public:
    MkScaffoldReduction(Backend* backend, int type, int axis, bool all) : Execution(backend), mType(type), mAxis(axis), mAll(all) {}
    ErrorCode onResize(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {
        // MNN's geometry hands a Reduction one axis of a plain tensor (it splits multi-axis ones).
        if (mkscaffold::isPacked(inputs[0]) || mkscaffold::isPacked(outputs[0])) {
            MNN_ERROR("mkbench scaffold: a packed (NC4HW4) Reduction is not handled\n");
            return NOT_SUPPORT;
        }
        return NO_ERROR;
    }
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {
        auto cpu = static_cast<CPUBackend*>(backend());
        int outside = 1, length = inputs[0]->elementSize(), inside = 1;
        if (!mAll) mkscaffold::axisView(inputs[0], mAxis, &outside, &length, &inside);
        const float* x = inputs[0]->host<float>();
        float* y = outputs[0]->host<float>();
        const int threads = std::max(1, cpu->threadNumber());
        MNN_CONCURRENCY_BEGIN(tId, threads) {
            int begin, end;
            mkscaffold::split(outside, threads, (int)tId, &begin, &end);
            if (end > begin) run(x + (size_t)begin * length * inside, y + (size_t)begin * inside, end - begin, length, inside);
        }
        MNN_CONCURRENCY_END();
        return NO_ERROR;
    }

private:
    void run(const float* x, float* y, int outside, int axis, int inside) const {
        switch (mType) {
@CASES@
            default: break;
        }
    }
    int mType;
    int mAxis;
    bool mAll;
};

class MkScaffoldReductionCreator : public CPUBackend::Creator {
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {
        auto param = op->main_as_ReductionParam();
        const int type = param->operation();
        const bool all = param->dim() == nullptr || param->dim()->size() == 0;
        if (!all && param->dim()->size() != 1) return nullptr;  // geometry gives one axis per Reduction
        const int axis = all ? 0 : param->dim()->data()[0];
        if (@ACCEPTED@) return new MkScaffoldReduction(backend, type, axis, all);
        return nullptr;  // mkbench's dispatcher sends only the task's sub-types here
    }
};
REGISTER_CPU_OP_CREATOR(MkScaffoldReductionCreator, OpType_Reduction);
