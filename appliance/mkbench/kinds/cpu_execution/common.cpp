
}  // namespace mkuser

#include "backend/cpu/CPUBackend.hpp"
#include "backend/cpu/compute/CommonOptFunction.h"
#include "core/Concurrency.h"
#include "core/Execution.hpp"
#include "core/Macro.h"
#include "core/TensorUtils.hpp"

namespace MNN {
namespace mkscaffold {
// NC4HW4 keeps channels in blocks of `pack` (the backend's: 4 on NEON/SSE, 8 on AVX2, 16 on AVX-512),
// padded, batch outermost: [batch][ceil(channel / pack)][area][pack].
static inline bool isPacked(const Tensor* t) {
    return TensorUtils::getDescribe(t)->dimensionFormat == MNN_DATA_FORMAT_NC4HW4;
}
static inline void plainShape(const Tensor* t, int* batch, int* channel, int* area) {
    *batch = t->dimensions() > 0 ? t->length(0) : 1;
    *channel = t->dimensions() > 1 ? t->length(1) : 1;
    *area = 1;
    for (int i = 2; i < t->dimensions(); ++i) *area *= t->length(i);
}
static inline int plainSize(const Tensor* t) {
    int batch, channel, area;
    plainShape(t, &batch, &channel, &area);
    return batch * channel * area;
}
template <typename T>
static void unpackTo(const Tensor* t, T* dst, int pack) {
    int batch, channel, area;
    plainShape(t, &batch, &channel, &area);
    const T* src = t->host<T>();
    const int blocks = (channel + pack - 1) / pack;
    for (int b = 0; b < batch; ++b)
        for (int c = 0; c < channel; ++c) {
            const T* s = src + ((size_t)(b * blocks + c / pack) * area) * pack + c % pack;
            T* d = dst + (size_t)(b * channel + c) * area;
            for (int x = 0; x < area; ++x) d[x] = s[(size_t)x * pack];
        }
}
template <typename T>
static void packFrom(const T* src, Tensor* t, int pack) {
    int batch, channel, area;
    plainShape(t, &batch, &channel, &area);
    T* dst = t->host<T>();
    const int blocks = (channel + pack - 1) / pack;
    ::memset(dst, 0, sizeof(T) * (size_t)batch * blocks * area * pack);
    for (int b = 0; b < batch; ++b)
        for (int c = 0; c < channel; ++c) {
            const T* s = src + (size_t)(b * channel + c) * area;
            T* d = dst + ((size_t)(b * blocks + c / pack) * area) * pack + c % pack;
            for (int x = 0; x < area; ++x) d[(size_t)x * pack] = s[x];
        }
}
// Thread tId of `threads` takes [begin, end) of `total` items.
static inline void split(int total, int threads, int tId, int* begin, int* end) {
    const int chunk = (total + threads - 1) / threads;
    *begin = std::min(total, tId * chunk);
    *end = std::min(total, *begin + chunk);
}
// [outside, axis, inside] around one axis of a plain tensor (axis < 0 counts from the end).
static inline void axisView(const Tensor* t, int axis, int* outside, int* length, int* inside) {
    const int dims = t->dimensions();
    if (axis < 0) axis += dims;
    *outside = 1;
    *inside = 1;
    *length = (axis >= 0 && axis < dims) ? t->length(axis) : 1;
    for (int i = 0; i < axis && i < dims; ++i) *outside *= t->length(i);
    for (int i = axis + 1; i < dims; ++i) *inside *= t->length(i);
}
}  // namespace mkscaffold
