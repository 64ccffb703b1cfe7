
class MkScaffoldUnary : public Execution {
public:
    MkScaffoldUnary(Backend* backend, int type) : Execution(backend), mType(type) {}
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {
        auto cpu = static_cast<CPUBackend*>(backend());
        // Elementwise: any layout works when input and output share it; the backend's size counts
        // the padding of NC4HW4 tensors.
        const int total = static_cast<int>(cpu->getTensorSize(outputs[0]));
        const float* x = inputs[0]->host<float>();
        float* y = outputs[0]->host<float>();
        const int threads = std::max(1, cpu->threadNumber());
        MNN_CONCURRENCY_BEGIN(tId, threads) {
            int begin, end;
            mkscaffold::split(total, threads, (int)tId, &begin, &end);
            if (end > begin) run(x + begin, y + begin, (size_t)(end - begin));
        }
        MNN_CONCURRENCY_END();
        return NO_ERROR;
    }

private:
    void run(const float* x, float* y, size_t n) const {
        switch (mType) {
@CASES@
            default: break;
        }
    }
    int mType;
};

class MkScaffoldUnaryCreator : public CPUBackend::Creator {
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {
        const int type = op->main_as_UnaryOp()->opType();
        if (@ACCEPTED@) return new MkScaffoldUnary(backend, type);
        return nullptr;  // mkbench's dispatcher sends only the task's sub-types here
    }
};
REGISTER_CPU_OP_CREATOR(MkScaffoldUnaryCreator, OpType_UnaryOp);
