// A geometry kernel for MNN 3.6.1 (kind "geometry"): a GeometryComputer for one op type.
//
// MNN's geometry stage runs once when a session is created or resized. A computer does not
// compute values: it describes the output as "raster regions" of its inputs (each region copies a
// strided 3-D box of one input tensor into the output), or emits commands for other ops into
// `cmd`. MNN then executes the regions with its Raster kernel. This one serves Reshape of a
// plain (NCHW/NHWC) float tensor: the output is the input's elements in the same order, so one
// region copies all of them.
//
// Register with REGISTER_GEOMETRY(Name, function): mkbench calls the function after MNN's own
// geometry computers are registered, so yours serves the op type.
#include "geometry/GeometryComputer.hpp"
#include "core/TensorUtils.hpp"

namespace MNN {

class MkbenchExampleReshapeGeometry : public GeometryComputer {
public:
    bool onCompute(const Op* op, const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs,
                   Context& context, CommandBuffer& cmd) const override {
        Tensor* input = inputs[0];
        Tensor* output = outputs[0];
        if (TensorUtils::getDescribe(input)->dimensionFormat == MNN_DATA_FORMAT_NC4HW4) {
            return false;  // packed channels: not handled by this example
        }
        int total = 1;
        for (int i = 0; i < input->dimensions(); ++i) total *= input->length(i);
        auto describe = TensorUtils::getDescribe(output);
        describe->memoryType = Tensor::InsideDescribe::MEMORY_VIRTUAL;  // the output is made of regions
        describe->regions.clear();
        Tensor::InsideDescribe::Region region;
        region.origin = input;
        region.size[0] = 1;
        region.size[1] = 1;
        region.size[2] = total;  // one row of `total` contiguous elements
        region.src.offset = 0;
        region.dst.offset = 0;
        region.src.stride[2] = 1;
        region.dst.stride[2] = 1;
        describe->regions.push_back(region);
        return true;
    }
};

static void _create() {
    std::shared_ptr<GeometryComputer> computer(new MkbenchExampleReshapeGeometry);
    GeometryComputer::registerGeometryComputer(computer, {OpType_Reshape});
}

REGISTER_GEOMETRY(MkbenchExampleReshapeGeometry, _create);

}  // namespace MNN
