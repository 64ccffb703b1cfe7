// mkbench recorder for composite candidates (converter transforms), linked into every candidate
// converter (see appliance/mkbench/mnn/converter.py).
//
// The candidate's object has its calls to OnnxExtraManager::insert renamed (objcopy) to
// mkbench_candidate_insert, so every transform the candidate registers comes through here and is
// registered wrapped in a RecordingTransform. When the converter applies it (onExecute), one line
// "candidate <OnnxOp>" is appended to the file named by MKBENCH_SERVED_LOG: the creation-time proof
// that the candidate's transform, not MNN's, converted the task's op ("declined <OnnxOp>" when it
// returned nothing or the node itself: then it converted nothing). Native transforms are
// registered by MNN's own code (the original insert) and are never wrapped.
//
// Why not -Wl,--wrap on OnnxExtraManager::find: find is only called inside OnnxExtraManager.cpp,
// the file that defines it, and --wrap only rewrites undefined references (measured: a same-file
// call is never redirected), so a wrapper there would never run.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include "OnnxExtraManager.hpp"

namespace {

using MNN::Express::EXPRP;
using MNN::Express::OnnxExtraManager;

class RecordingTransform : public OnnxExtraManager::Transform {
public:
    RecordingTransform(std::string onnxOp, std::shared_ptr<OnnxExtraManager::Transform> inner)
        : mOnnxOp(std::move(onnxOp)), mInner(std::move(inner)) {}

    EXPRP onExecute(EXPRP expr) const override {
        EXPRP result = mInner->onExecute(expr);
        const char* path = std::getenv("MKBENCH_SERVED_LOG");
        if (path != nullptr && path[0] != '\0') {
            FILE* log = std::fopen(path, "a");
            if (log != nullptr) {
                // A transform that returns nothing, or the node itself, declined: MNN keeps the node.
                bool declined = result == nullptr || result.get() == expr.get();
                std::fprintf(log, "%s %s\n", declined ? "declined" : "candidate", mOnnxOp.c_str());
                std::fclose(log);
            }
        }
        return result;
    }

private:
    std::string mOnnxOp;
    std::shared_ptr<OnnxExtraManager::Transform> mInner;
};

} // namespace

// Same calling convention as the member function it replaces in the candidate's object
// (Itanium C++ ABI: `this` first, the shared_ptr by invisible reference, destroyed by the caller).
extern "C" void mkbench_candidate_insert(OnnxExtraManager* manager, const std::string& name,
                                         std::shared_ptr<OnnxExtraManager::Transform> transform) {
    manager->insert(name, std::make_shared<RecordingTransform>(name, std::move(transform)));
}
