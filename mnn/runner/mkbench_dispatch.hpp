// mkbench: the interface between the runner and the dispatcher that mkbench appends to a build
// copy of MNN's source/backend/cpu/CPUOPRegister.cpp (see mkbench_dispatch.inc), plus the small
// per-build "info" file that names the task's targets and the candidate's registration.
#ifndef MKBENCH_DISPATCH_HPP
#define MKBENCH_DISPATCH_HPP

#include <cstdint>
#include <string>
#include <vector>

namespace MNN {
struct Op;
}

namespace mkbench {

// One creation of an execution by a CPU creator, recorded when the session is created or resized
// (never inside a timed run).
struct ServedRecord {
    std::string op_name;
    std::string op_type;   // MNN OpType name without the prefix, e.g. "UnaryOp"
    std::string sub_type;  // e.g. "ABS" for UnaryOp; "" when the op type has no sub-type
    std::string served;    // "candidate" or "native": which creator was asked
    int backend_bytes;     // 4 for an fp32 CPU backend, 2 for fp16
    bool float_inputs;     // every input is float32
    uintptr_t vtable;      // the returned Execution's (or geometry computer's) vtable pointer, 0 for nullptr
    std::string stage = "execution";  // "execution": a CPU creator; "geometry": a geometry computer
};

// Adds one record (the CPU dispatcher and the geometry recorder both use it).
void record_served(const ServedRecord& record);

// The sub-type name of a shared op type (UnaryOp ABS, ...), "" for the others.
std::string sub_type_of(const MNN::Op* op);

// Records a failure to install the candidate; the runner stops with the first such message.
void fail_dispatch(const std::string& message);

// Every record so far, in creation order.
std::vector<ServedRecord> served_records();

// Non-empty when the dispatcher could not be installed (e.g. the candidate registered no creator
// for a target op type); the runner fails with this message.
std::string dispatcher_error();

}  // namespace mkbench

extern "C" {
// A task target: an MNN op type name and an optional sub-type name (nullptr: every sub-type).
struct MkbenchTarget {
    const char* op_type;
    const char* sub_type;
};
// The per-build info file defines these (arrays end with a {nullptr, nullptr} / nullptr entry).
extern const MkbenchTarget mkbench_targets[];
extern const char* const mkbench_candidate_vtables[];  // mangled vtable symbols the candidate defines
extern const char* const mkbench_build_kind;           // "native" or "candidate"
void mkbench_register_candidate();                     // the candidate's renamed REGISTER functions
// Geometry candidates (kind "geometry"): the op types they serve, and their renamed
// REGISTER_GEOMETRY functions, called after MNN registered its own geometry computers.
extern const MkbenchTarget mkbench_geometry_targets[];
void mkbench_register_geometry_candidate();
}

#endif  // MKBENCH_DISPATCH_HPP
