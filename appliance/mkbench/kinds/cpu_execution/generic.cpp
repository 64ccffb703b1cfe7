
class MkScaffold@OP@ : public Execution {
public:
    explicit MkScaffold@OP@(Backend* backend) : Execution(backend) {}
    ErrorCode onResize(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {
        static const int inputSizes[] = {@INPUT_SIZES@};
        static const int outputSizes[] = {@OUTPUT_SIZES@};
        if ((int)inputs.size() != @INPUT_COUNT@ || (int)outputs.size() != @OUTPUT_COUNT@) {
            MNN_ERROR("mkbench scaffold: @OP@ has %d inputs and %d outputs, the task states @INPUT_COUNT@ and @OUTPUT_COUNT@\n",
                      (int)inputs.size(), (int)outputs.size());
            return NOT_SUPPORT;
        }
        mPlain.clear();
        for (size_t i = 0; i < inputs.size() + outputs.size(); ++i) {
            const Tensor* t = i < inputs.size() ? inputs[i] : outputs[i - inputs.size()];
            const int expected = i < inputs.size() ? inputSizes[i] : outputSizes[i - inputs.size()];
            if (mkscaffold::plainSize(t) != expected) {
                MNN_ERROR("mkbench scaffold: @OP@ tensor %d has %d values, the task states %d\n", (int)i, mkscaffold::plainSize(t), expected);
                return NOT_SUPPORT;
            }
            // Packed (NC4HW4) tensors are computed on plain NCHW copies.
            mPlain.emplace_back(mkscaffold::isPacked(t) ? std::vector<float>(expected) : std::vector<float>());
        }
        return NO_ERROR;
    }
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {
        const int pack = static_cast<CPUBackend*>(backend())->functions()->pack;
        std::vector<void*> plain(inputs.size() + outputs.size());
        for (size_t i = 0; i < plain.size(); ++i) {
            Tensor* t = i < inputs.size() ? inputs[i] : outputs[i - inputs.size()];
            if (mPlain[i].empty()) {
                plain[i] = t->host<void>();
            } else {
                if (i < inputs.size()) mkscaffold::unpackTo<float>(t, mPlain[i].data(), pack);
                plain[i] = mPlain[i].data();
            }
        }
        mkuser::@FUNCTION@(@ARGUMENTS@);
        for (size_t i = inputs.size(); i < plain.size(); ++i) {
            if (!mPlain[i].empty()) mkscaffold::packFrom<float>(mPlain[i].data(), outputs[i - inputs.size()], pack);
        }
        return NO_ERROR;
    }

private:
    std::vector<std::vector<float>> mPlain;
};

class MkScaffold@OP@Creator : public CPUBackend::Creator {
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {
        return new MkScaffold@OP@(backend);
    }
};
REGISTER_CPU_OP_CREATOR(MkScaffold@OP@Creator, OpType_@OP@);
