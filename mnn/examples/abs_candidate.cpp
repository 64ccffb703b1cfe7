// mkbench example candidate: UnaryOp ABS for fp32 on MNN's CPU backend, written as an LLM would
// be asked to: one self-contained file with its own Execution and Creator and one registration.
// Same maths as MNN's native abs (|x| elementwise); used by the tests and appliance/benchmarks/mnn_build.py.
#include <cmath>
#include "backend/cpu/CPUBackend.hpp"
#include "core/Concurrency.h"
#include "core/Execution.hpp"

namespace MNN {

class MkExampleAbs : public Execution {
public:
    explicit MkExampleAbs(Backend* backend) : Execution(backend) {}
    ErrorCode onExecute(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs) override {
        auto cpu = static_cast<CPUBackend*>(backend());
        // The backend's size: NC4HW4 tensors are padded to its pack (8 on AVX2), not always to 4.
        const int size = static_cast<int>(cpu->getTensorSize(inputs[0]));
        const float* src = inputs[0]->host<float>();
        float* dst = outputs[0]->host<float>();
        const int threads = cpu->threadNumber();
        const int chunk = (size + threads - 1) / threads;
        MNN_CONCURRENCY_BEGIN(tId, threads) {
            const int begin = static_cast<int>(tId) * chunk;
            const int end = std::min(size, begin + chunk);
            for (int i = begin; i < end; ++i) {
                dst[i] = std::fabs(src[i]);
            }
        }
        MNN_CONCURRENCY_END();
        return NO_ERROR;
    }
};

class MkExampleAbsCreator : public CPUBackend::Creator {
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {
        return new MkExampleAbs(backend);
    }
};

REGISTER_CPU_OP_CREATOR(MkExampleAbsCreator, OpType_UnaryOp);

}  // namespace MNN
