
}  // namespace mkuser

#include "core/TensorUtils.hpp"
#include "geometry/GeometryComputer.hpp"

namespace MNN {

class MkScaffoldGeometry : public GeometryComputer {
public:
    bool onCompute(const Op* op, const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs,
                   Context& context, CommandBuffer& cmd) const override {
        for (auto t : inputs) {
            if (TensorUtils::getDescribe(t)->dimensionFormat == MNN_DATA_FORMAT_NC4HW4) {
                MNN_ERROR("mkbench scaffold: a packed (NC4HW4) input, which the blocks cannot describe\n");
                return false;
            }
        }
        std::vector<mkuser::MkBlock> blocks;
        mkuser::@FUNCTION@(blocks);
        const int64_t outputSize = outputs[0]->elementSize();
        auto describe = TensorUtils::getDescribe(outputs[0]);
        describe->memoryType = Tensor::InsideDescribe::MEMORY_VIRTUAL;
        describe->regions.clear();
        for (const auto& b : blocks) {
            if (b.input < 0 || b.input >= (int)@COUNT@ || b.input >= (int)inputs.size()) {
                MNN_ERROR("mkbench scaffold: a block reads input %d of @COUNT@\n", b.input);
                return false;
            }
            int64_t srcLast = b.src_offset, dstLast = b.dst_offset;
            for (int i = 0; i < 3; ++i) {
                if (b.size[i] <= 0) {
                    MNN_ERROR("mkbench scaffold: a block with size[%d] = %d\n", i, b.size[i]);
                    return false;
                }
                srcLast += (int64_t)(b.size[i] - 1) * b.src_stride[i];
                dstLast += (int64_t)(b.size[i] - 1) * b.dst_stride[i];
            }
            const int64_t inputSize = inputs[b.input]->elementSize();
            if (b.src_offset < 0 || b.dst_offset < 0 || srcLast < 0 || dstLast < 0 || srcLast >= inputSize || dstLast >= outputSize) {
                MNN_ERROR("mkbench scaffold: a block outside its tensors (input %d: last %lld of %lld, output: last %lld of %lld)\n",
                          b.input, (long long)srcLast, (long long)inputSize, (long long)dstLast, (long long)outputSize);
                return false;
            }
            Tensor::InsideDescribe::Region region;
            region.origin = inputs[b.input];
            region.src.offset = b.src_offset;
            region.dst.offset = b.dst_offset;
            for (int i = 0; i < 3; ++i) {
                region.src.stride[i] = b.src_stride[i];
                region.dst.stride[i] = b.dst_stride[i];
                region.size[i] = b.size[i];
            }
            describe->regions.push_back(region);
        }
        return !describe->regions.empty();
    }
};

static void _mkScaffoldCreate() {
    std::shared_ptr<GeometryComputer> computer(new MkScaffoldGeometry);
    GeometryComputer::registerGeometryComputer(computer, {OpType_@OP@});
}

REGISTER_GEOMETRY(MkScaffoldGeometry, _mkScaffoldCreate);

}  // namespace MNN
