
class MkScaffoldBinary : public Execution {
public:
    MkScaffoldBinary(Backend* backend, int type, int activation) : Execution(backend), mType(type), mActivation(activation) {}
    ErrorCode onResize(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {
        auto cpu = static_cast<CPUBackend*>(backend());
        const size_t total = cpu->getTensorSize(outputs[0]);
        const size_t n0 = cpu->getTensorSize(inputs[0]), n1 = cpu->getTensorSize(inputs[1]);
        if ((n0 != total && n0 != 1) || (n1 != total && n1 != 1)) {
            MNN_ERROR("mkbench scaffold: BinaryOp inputs of %d and %d values for %d outputs (only same shape or one value)\n",
                      (int)n0, (int)n1, (int)total);
            return NOT_SUPPORT;
        }
        return NO_ERROR;
    }
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {
        auto cpu = static_cast<CPUBackend*>(backend());
        const int total = static_cast<int>(cpu->getTensorSize(outputs[0]));
        // The model's functions read n values of each input: one that holds a single value (MNN's
        // geometry expands every other broadcast) is repeated into a buffer first.
        const float* a = repeated(inputs[0], total, mRepeatA);
        const float* b = repeated(inputs[1], total, mRepeatB);
        const int threads = std::max(1, cpu->threadNumber());
        MNN_CONCURRENCY_BEGIN(tId, threads) {
            int begin, end;
            mkscaffold::split(total, threads, (int)tId, &begin, &end);
            if (end > begin) run(a + begin, b + begin, outputs[0], begin, (size_t)(end - begin));
        }
        MNN_CONCURRENCY_END();
        return NO_ERROR;
    }

private:
    const float* repeated(const Tensor* input, int total, std::vector<float>& buffer) const {
        const float* values = input->host<float>();
        if (static_cast<CPUBackend*>(backend())->getTensorSize(input) != 1 || total == 1) return values;
        buffer.assign((size_t)total, values[0]);
        return buffer.data();
    }
    void run(const float* a, const float* b, Tensor* output, int begin, size_t n) const {
        float* y = output->host<float>() + begin;
        int32_t* yi = output->host<int32_t>() + begin;
        (void)y; (void)yi;
        switch (mType) {
@CASES@
            default: break;
        }
        if (mActivation == 1 && output->getType().code == halide_type_float) {  // a fused ReLU
            for (size_t i = 0; i < n; ++i) y[i] = std::max(y[i], 0.0f);
        }
    }
    int mType;
    int mActivation;
    std::vector<float> mRepeatA, mRepeatB;
};

class MkScaffoldBinaryCreator : public CPUBackend::Creator {
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {
        const int type = op->main_as_BinaryOp()->opType();
        if (@ACCEPTED@) return new MkScaffoldBinary(backend, type, op->main_as_BinaryOp()->activationType());
        return nullptr;  // mkbench's dispatcher sends only the task's sub-types here
    }
};
REGISTER_CPU_OP_CREATOR(MkScaffoldBinaryCreator, OpType_BinaryOp);
