
class MkScaffoldSoftmax : public Execution {
public:
    MkScaffoldSoftmax(Backend* backend, int axis) : Execution(backend), mAxis(axis) {}
    ErrorCode onResize(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {
        mPacked = mkscaffold::isPacked(inputs[0]);
        if (mPacked) {  // compute on plain NCHW copies
            mPlainIn.resize(mkscaffold::plainSize(inputs[0]));
            mPlainOut.resize(mkscaffold::plainSize(outputs[0]));
        }
        return NO_ERROR;
    }
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {
        auto cpu = static_cast<CPUBackend*>(backend());
        const int pack = cpu->functions()->pack;
        int outside, length, inside;
        mkscaffold::axisView(inputs[0], mAxis, &outside, &length, &inside);
        if (mPacked) mkscaffold::unpackTo<float>(inputs[0], mPlainIn.data(), pack);
        const float* x = mPacked ? mPlainIn.data() : inputs[0]->host<float>();
        float* y = mPacked ? mPlainOut.data() : outputs[0]->host<float>();
        const int threads = std::max(1, cpu->threadNumber());
        MNN_CONCURRENCY_BEGIN(tId, threads) {
            int begin, end;
            mkscaffold::split(outside * inside, threads, (int)tId, &begin, &end);
            for (int row = begin; row < end; ++row) {  // row = o * inside + i
                const size_t offset = (size_t)(row / inside) * length * inside + row % inside;
                mkuser::mk_softmax(x + offset, y + offset, length, inside);
            }
        }
        MNN_CONCURRENCY_END();
        if (mPacked) mkscaffold::packFrom<float>(mPlainOut.data(), outputs[0], pack);
        return NO_ERROR;
    }

private:
    int mAxis;
    bool mPacked = false;
    std::vector<float> mPlainIn, mPlainOut;
};

class MkScaffoldSoftmaxCreator : public CPUBackend::Creator {
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {
        const int axis = op->main_as_Axis() != nullptr ? op->main_as_Axis()->axis() : -1;
        return new MkScaffoldSoftmax(backend, axis);
    }
};
REGISTER_CPU_OP_CREATOR(MkScaffoldSoftmaxCreator, OpType_Softmax);
