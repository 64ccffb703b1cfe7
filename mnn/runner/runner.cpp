// mkbench runner: run one .mnn model on MNN's CPU backend, time it, check it, report what served it.
//
//   runner --model M.mnn --inputs IN_DIR --out OUT_DIR --warmup W --iterations N --threads T
//          --precision normal|high|low [--hint NAME=VALUE ...]
//
// IN_DIR/timing/ and the correctness sets IN_DIR/checkK/ (K = 0, 1, ...) and IN_DIR/edge/ hold one
// <input>.npy per model input. The runner resizes to the timing shapes, runs W warm-ups and N runs
// timed one by one (monotonic clock around runSession only), records the executed ops in one
// untimed callback run, then for each correctness set: poisons the outputs (NaN / a fixed integer
// pattern), copies the inputs in, runs once and writes OUT_DIR/<set>/<output>.npy in plain layout
// with MNN's dtype. OUT_DIR/report.json holds times, ops, served records, thread counts, the MNN
// version and the settings. A model the Session API refuses (output shapes that depend on input
// values) runs the same steps through MNN's Module API (report "api": "module").
// Exit 0 on success; otherwise 1 with a one-line message on stderr.
// In file names, '/' in a tensor name is written as '_'.

#include <MNN/Interpreter.hpp>
#include <MNN/MNNDefine.h>
#include <MNN/Tensor.hpp>
#include <MNN/expr/Executor.hpp>
#include <MNN/expr/ExprCreator.hpp>
#include <MNN/expr/Module.hpp>
#include <dirent.h>
#include <sys/stat.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "elf_symbols.hpp"
#include "mkbench_dispatch.hpp"
#include "npy.hpp"

extern "C" __attribute__((noinline, used)) void mkbench_anchor() {
    __asm__ volatile("");
}

namespace {

[[noreturn]] void fail(const std::string& message) {
    std::string line = message;
    std::replace(line.begin(), line.end(), '\n', ' ');
    std::fprintf(stderr, "runner: %s\n", line.c_str());
    std::fflush(stderr);
    std::_Exit(1);
}

struct Options {
    std::string model, inputs, out, precision = "normal";
    int warmup = -1, iterations = -1, threads = -1;
    std::vector<std::pair<std::string, int>> hints;
};

int parseInt(const std::string& text, const std::string& what) {
    char* end = nullptr;
    long value = std::strtol(text.c_str(), &end, 0);
    if (text.empty() || *end != '\0') fail("bad value for " + what + ": '" + text + "'");
    return (int)value;
}

const std::map<std::string, MNN::Interpreter::HintMode>& hintNames() {
    static const std::map<std::string, MNN::Interpreter::HintMode> names = {
        {"MAX_TUNING_NUMBER", MNN::Interpreter::MAX_TUNING_NUMBER},
        {"STRICT_CHECK_MODEL", MNN::Interpreter::STRICT_CHECK_MODEL},
        {"MEM_ALLOCATOR_TYPE", MNN::Interpreter::MEM_ALLOCATOR_TYPE},
        {"WINOGRAD_MEMORY_LEVEL", MNN::Interpreter::WINOGRAD_MEMORY_LEVEL},
        {"GEOMETRY_COMPUTE_MASK", MNN::Interpreter::GEOMETRY_COMPUTE_MASK},
        {"DYNAMIC_QUANT_OPTIONS", MNN::Interpreter::DYNAMIC_QUANT_OPTIONS},
        {"CPU_LITTLECORE_DECREASE_RATE", MNN::Interpreter::CPU_LITTLECORE_DECREASE_RATE},
        {"INIT_THREAD_NUMBER", MNN::Interpreter::INIT_THREAD_NUMBER},
        {"CPU_SME2_INSTRUCTIONS", MNN::Interpreter::CPU_SME2_INSTRUCTIONS},
        {"CPU_ENABLE_KLEIDIAI", MNN::Interpreter::CPU_ENABLE_KLEIDIAI},
    };
    return names;
}

Options parseOptions(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string flag = argv[i];
        if (i + 1 >= argc) fail("missing value after " + flag);
        std::string value = argv[++i];
        if (flag == "--model") o.model = value;
        else if (flag == "--inputs") o.inputs = value;
        else if (flag == "--out") o.out = value;
        else if (flag == "--warmup") o.warmup = parseInt(value, flag);
        else if (flag == "--iterations") o.iterations = parseInt(value, flag);
        else if (flag == "--threads") o.threads = parseInt(value, flag);
        else if (flag == "--precision") o.precision = value;
        else if (flag == "--hint") {
            size_t eq = value.find('=');
            if (eq == std::string::npos) fail("--hint wants NAME=VALUE, got '" + value + "'");
            std::string name = value.substr(0, eq);
            if (hintNames().find(name) == hintNames().end()) fail("unknown hint " + name);
            o.hints.push_back({name, parseInt(value.substr(eq + 1), "--hint " + name)});
        } else {
            fail("unknown option " + flag);
        }
    }
    if (o.model.empty() || o.inputs.empty() || o.out.empty()) fail("--model, --inputs and --out are required");
    if (o.warmup < 0 || o.iterations < 1 || o.threads < 1) fail("--warmup >= 0, --iterations >= 1 and --threads >= 1 are required");
    if (o.precision != "normal" && o.precision != "high" && o.precision != "low") fail("--precision must be normal, high or low");
    return o;
}

int countThreads() {
    DIR* dir = opendir("/proc/self/task");
    if (dir == nullptr) return -1;
    int count = 0;
    while (dirent* entry = readdir(dir)) {
        if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
    return count;
}

bool isDirectory(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void makeDirectory(const std::string& path) {
    if (mkdir(path.c_str(), 0755) != 0 && !isDirectory(path)) fail("cannot create folder " + path);
}

std::vector<std::string> listDirectory(const std::string& path) {
    std::vector<std::string> names;
    DIR* dir = opendir(path.c_str());
    if (dir == nullptr) fail("cannot read folder " + path);
    while (dirent* entry = readdir(dir)) {
        if (entry->d_name[0] != '.') names.push_back(entry->d_name);
    }
    closedir(dir);
    return names;
}

std::string fileName(const std::string& tensorName) {
    std::string name = tensorName;
    std::replace(name.begin(), name.end(), '/', '_');
    return name + ".npy";
}

std::string jsonString(const std::string& text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') { out += '\\'; out += (char)c; }
        else if (c < 0x20) { char buf[8]; std::snprintf(buf, sizeof(buf), "\\u%04x", c); out += buf; }
        else out += (char)c;
    }
    return out + "\"";
}

std::string npyDescr(halide_type_t type) {
    if (type.code == halide_type_float && type.bits == 32) return "<f4";
    if (type.code == halide_type_int && type.bits == 32) return "<i4";
    if (type.code == halide_type_uint && type.bits == 8) return "|u1";
    if (type.code == halide_type_int && type.bits == 8) return "|i1";
    return "";
}

std::string shapeText(const std::vector<int>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
}

// Reads every input of one folder (one .npy per model input, no more, no fewer).
std::map<std::string, mkbench::NpyArray> readInputs(const std::string& folder, const std::vector<std::string>& inputs) {
    if (!isDirectory(folder)) fail("missing input folder " + folder);
    std::map<std::string, mkbench::NpyArray> arrays;
    std::map<std::string, std::string> expected;
    for (auto& name : inputs) expected[fileName(name)] = name;
    for (auto& name : listDirectory(folder)) {
        if (expected.find(name) == expected.end()) fail(folder + "/" + name + " matches no model input");
    }
    for (auto& entry : expected) {
        std::string error;
        mkbench::NpyArray array;
        if (!mkbench::readNpy(folder + "/" + entry.first, &array, &error)) fail("input " + entry.second + ": " + error);
        arrays[entry.second] = array;
    }
    return arrays;
}

// Converts an array to the tensor's element type where that is exact; fails on anything else.
std::vector<uint8_t> asTensorType(const mkbench::NpyArray& array, halide_type_t type, const std::string& name) {
    const std::string& d = array.descr;
    size_t n = array.count();
    if (type.code == halide_type_float && type.bits == 32) {
        if (d != "<f4") fail("input " + name + ": the model wants float32, the .npy is " + d);
        return array.data;
    }
    bool integerSource = d == "<i4" || d == "|u1" || d == "|b1" || d == "<u1" || d == "|i1";
    if (!integerSource) fail("input " + name + ": the model wants an integer type, the .npy is " + d);
    std::vector<int64_t> values(n);
    for (size_t i = 0; i < n; ++i) {
        if (d == "<i4") { int32_t v; std::memcpy(&v, &array.data[i * 4], 4); values[i] = v; }
        else if (d == "|i1") values[i] = (int8_t)array.data[i];
        else values[i] = array.data[i];
    }
    std::vector<uint8_t> out(n * (type.bits / 8));
    for (size_t i = 0; i < n; ++i) {
        if (type.code == halide_type_int && type.bits == 32) { int32_t v = (int32_t)values[i]; std::memcpy(&out[i * 4], &v, 4); }
        else if (type.bits == 8 && (type.code == halide_type_uint || type.code == halide_type_int)) {
            if (values[i] < -128 || values[i] > 255) fail("input " + name + ": value out of range for an 8-bit tensor");
            out[i] = (uint8_t)values[i];
        } else fail("input " + name + ": unsupported tensor type (bits " + std::to_string(type.bits) + ")");
    }
    return out;
}

MNN::Tensor::DimensionType hostLayout(const MNN::Tensor* t) {
    auto layout = t->getDimensionType();
    return layout == MNN::Tensor::CAFFE_C4 ? MNN::Tensor::CAFFE : layout;
}

struct Runner {
    Options options;
    std::unique_ptr<MNN::Interpreter, void (*)(MNN::Interpreter*)> net{nullptr, MNN::Interpreter::destroy};
    MNN::Session* session = nullptr;

    // Resizes inputs to the arrays' shapes (and the session if any changed), then copies data in.
    void setInputs(const std::map<std::string, mkbench::NpyArray>& arrays) {
        auto inputs = net->getSessionInputAll(session);
        bool resized = false;
        for (auto& entry : inputs) {
            const auto& array = arrays.at(entry.first);
            if (entry.second->shape() != array.shape) {
                net->resizeTensor(entry.second, array.shape);
                resized = true;
            }
        }
        if (resized) {
            net->resizeSession(session);
            checkDispatcher();
        }
        inputs = net->getSessionInputAll(session);
        for (auto& entry : inputs) {
            MNN::Tensor* input = entry.second;
            const auto& array = arrays.at(entry.first);
            if (input->shape() != array.shape)
                fail("input " + entry.first + ": shape " + shapeText(array.shape) + " cannot be used, the model keeps " + shapeText(input->shape()));
            std::vector<uint8_t> data = asTensorType(array, input->getType(), entry.first);
            std::unique_ptr<MNN::Tensor> host(MNN::Tensor::create(array.shape, input->getType(), data.data(), hostLayout(input)));
            if (!input->copyFromHostTensor(host.get())) fail("input " + entry.first + ": copy into the session failed");
        }
    }

    std::vector<std::string> inputNames() {
        std::vector<std::string> names;
        for (auto& entry : net->getSessionInputAll(session)) names.push_back(entry.first);
        return names;
    }

    void run() {
        auto code = net->runSession(session);
        if (code != MNN::NO_ERROR) fail("runSession failed with MNN error code " + std::to_string((int)code));
    }

    // After every session creation or resize: the dispatcher installed, the candidate's creator
    // returned an execution (a native nullptr can be legitimate: MNN then retries on the backup
    // backend, e.g. fp32 after fp16), the session is ready to run.
    void checkDispatcher() {
        std::string error = mkbench::dispatcher_error();
        if (!error.empty()) fail(error);
        for (auto& record : mkbench::served_records()) {
            if (record.vtable == 0 && record.served == "candidate")
                fail("the candidate creator returned no execution for op '" + record.op_name + "' (" + record.op_type +
                     (record.sub_type.empty() ? "" : " " + record.sub_type) + "); MNN has no fallback for that");
        }
        int status = 0;
        if (net->getSessionInfo(session, MNN::Interpreter::RESIZE_STATUS, &status) && status != 0)
            fail("the session could not be prepared (MNN resize status " + std::to_string(status) + ")");
    }

    // Fills every output with a poison value through MNN's own layout conversion.
    void poisonOutputs() {
        for (auto& entry : net->getSessionOutputAll(session)) {
            MNN::Tensor* output = entry.second;
            std::unique_ptr<MNN::Tensor> host(new MNN::Tensor(output, hostLayout(output), true));
            auto type = output->getType();
            size_t n = host->elementSize();
            if (type.code == halide_type_float && type.bits == 32) {
                std::fill(host->host<float>(), host->host<float>() + n, std::numeric_limits<float>::quiet_NaN());
            } else if (type.bits == 32) {
                std::fill(host->host<int32_t>(), host->host<int32_t>() + n, (int32_t)0x7F5A5A5A);
            } else {
                std::memset(host->host<void>(), 0xA5, host->size());
            }
            output->copyFromHostTensor(host.get());
        }
    }

    void writeOutputs(const std::string& folder) {
        makeDirectory(folder);
        for (auto& entry : net->getSessionOutputAll(session)) {
            MNN::Tensor* output = entry.second;
            std::string descr = npyDescr(output->getType());
            if (descr.empty()) fail("output " + entry.first + ": unsupported element type");
            std::unique_ptr<MNN::Tensor> host(new MNN::Tensor(output, hostLayout(output), true));
            if (!output->copyToHostTensor(host.get())) fail("output " + entry.first + ": copy out of the session failed");
            std::string error;
            size_t bytes = host->elementSize() * (output->getType().bits / 8);
            if (!mkbench::writeNpy(folder + "/" + fileName(entry.first), descr, host->shape(), host->host<void>(), bytes, &error)) fail(error);
        }
    }
};

// The same run through MNN's Module API, for models the Session API refuses: those whose output
// shapes depend on input values (Range: "shape compute need input content, please use module
// api"). The same CPU backend and dispatcher serve it, so creations are recorded alike. Outputs
// are new tensors on every forward (nothing to poison); the timed region is onForward plus
// reading the outputs, which is when the Module API has computed them.
struct ModuleRunner {
    std::shared_ptr<MNN::Express::Module> net;
    const MNN::Express::Module::Info* info = nullptr;
    std::vector<MNN::Express::VARP> inputs, outputs;

    void load(const Options& o, const MNN::ScheduleConfig& config) {
        using MNN::Express::Executor;
        std::shared_ptr<Executor::RuntimeManager> runtime(Executor::RuntimeManager::createRuntimeManager(config));
        if (!runtime) fail("cannot create MNN's runtime for " + o.model);
        for (auto& hint : o.hints) runtime->setHint(hintNames().at(hint.first), hint.second);
        net.reset(MNN::Express::Module::load({}, {}, o.model.c_str(), runtime));
        if (!net) fail("cannot load model " + o.model + " with MNN's Module API either");
        info = net->getInfo();
    }

    void setInputs(const std::map<std::string, mkbench::NpyArray>& arrays) {
        inputs.clear();
        for (size_t i = 0; i < info->inputNames.size(); ++i) {
            const std::string& name = info->inputNames[i];
            const auto& array = arrays.at(name);
            halide_type_t type = info->inputs[i].type;
            std::vector<uint8_t> data = asTensorType(array, type, name);
            auto input = MNN::Express::_Input(array.shape, info->inputs[i].order, type);
            void* target = input->writeMap<void>();
            if (target == nullptr) fail("input " + name + ": cannot be written");
            std::memcpy(target, data.data(), data.size());
            inputs.push_back(input);
        }
    }

    void run() {
        outputs = net->onForward(inputs);
        if (outputs.size() != info->outputNames.size()) fail("the forward pass returned " + std::to_string(outputs.size()) + " outputs");
        for (size_t i = 0; i < outputs.size(); ++i) {
            if (outputs[i] == nullptr || outputs[i]->readMap<void>() == nullptr) fail("output " + info->outputNames[i] + ": not computed");
        }
    }

    void writeOutputs(const std::string& folder) {
        makeDirectory(folder);
        for (size_t i = 0; i < outputs.size(); ++i) {
            auto output = outputs[i];
            if (output->getInfo()->order == MNN::Express::NC4HW4) output = MNN::Express::_Convert(output, MNN::Express::NCHW);
            auto* shape = output->getInfo();
            std::string descr = npyDescr(shape->type);
            if (descr.empty()) fail("output " + info->outputNames[i] + ": unsupported element type");
            std::string error;
            size_t bytes = shape->size * (shape->type.bits / 8);
            if (!mkbench::writeNpy(folder + "/" + fileName(info->outputNames[i]), descr, shape->dim, output->readMap<void>(), bytes, &error))
                fail(error);
        }
    }
};

// Every correctness set: each folder beside timing/, checkK in numeric order first (check0, check1,
// ...), then the others (an `edge` set) by name.
std::vector<std::string> checkFolders(const std::string& inputs) {
    std::vector<std::pair<int, std::string>> numbered;
    std::vector<std::string> named;
    for (auto& name : listDirectory(inputs)) {
        if (name == "timing" || !isDirectory(inputs + "/" + name)) continue;
        bool digits = name.size() > 5 && name.compare(0, 5, "check") == 0 &&
                      std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (digits) numbered.push_back({std::atoi(name.c_str() + 5), name});
        else named.push_back(name);
    }
    std::sort(numbered.begin(), numbered.end());
    std::sort(named.begin(), named.end());
    std::vector<std::string> names;
    for (auto& f : numbered) names.push_back(f.second);
    names.insert(names.end(), named.begin(), named.end());
    return names;
}

}  // namespace

int runModule(const Options& o, const MNN::ScheduleConfig& config);
void writeReport(const Options& o, const std::vector<double>& times, const std::vector<std::pair<std::string, std::string>>& ops,
                 int threadsBefore, int threadsAfter, const std::string& api);

int main(int argc, char** argv) {
    Runner r;
    r.options = parseOptions(argc, argv);
    const Options& o = r.options;
    if (!isDirectory(o.inputs + "/timing")) fail("missing input folder " + o.inputs + "/timing");
    makeDirectory(o.out);

    r.net.reset(MNN::Interpreter::createFromFile(o.model.c_str()));
    if (!r.net) fail("cannot load model " + o.model);
    r.net->setSessionMode(MNN::Interpreter::Session_Debug);
    for (auto& hint : o.hints) r.net->setSessionHint(hintNames().at(hint.first), hint.second);

    MNN::ScheduleConfig config;
    config.type = MNN_FORWARD_CPU;
    config.backupType = MNN_FORWARD_CPU;
    config.numThread = o.threads;
    MNN::BackendConfig backendConfig;
    backendConfig.precision = o.precision == "high" ? MNN::BackendConfig::Precision_High
                            : o.precision == "low"  ? MNN::BackendConfig::Precision_Low
                                                    : MNN::BackendConfig::Precision_Normal;
    config.backendConfig = &backendConfig;
    r.session = r.net->createSession(config);
    if (r.session == nullptr) return runModule(o, config);
    r.checkDispatcher();

    auto timingInputs = readInputs(o.inputs + "/timing", r.inputNames());
    r.setInputs(timingInputs);
    int threadsBefore = countThreads();

    for (int i = 0; i < o.warmup; ++i) r.run();
    std::vector<double> times;
    times.reserve(o.iterations);
    for (int i = 0; i < o.iterations; ++i) {
        auto start = std::chrono::steady_clock::now();
        r.run();
        auto stop = std::chrono::steady_clock::now();
        times.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    }

    std::vector<std::pair<std::string, std::string>> ops;
    MNN::TensorCallBackWithInfo before = [&](const std::vector<MNN::Tensor*>&, const MNN::OperatorInfo* info) {
        ops.push_back({info->name(), info->type()});
        return true;
    };
    MNN::TensorCallBackWithInfo after = [](const std::vector<MNN::Tensor*>&, const MNN::OperatorInfo*) { return true; };
    if (r.net->runSessionWithCallBackInfo(r.session, before, after, true) != MNN::NO_ERROR) fail("the callback run failed");

    for (auto& folder : checkFolders(o.inputs)) {
        auto arrays = readInputs(o.inputs + "/" + folder, r.inputNames());
        r.setInputs(arrays);
        r.poisonOutputs();
        r.setInputs(arrays);  // poisoning may share memory with inputs in odd graphs: copy them again
        r.run();
        r.writeOutputs(o.out + "/" + folder);
    }
    int threadsAfter = countThreads();
    writeReport(o, times, ops, threadsBefore, threadsAfter, "session");
    r.net->releaseSession(r.session);
    return 0;
}

int runModule(const Options& o, const MNN::ScheduleConfig& config) {
    ModuleRunner r;
    r.load(o, config);
    std::string error = mkbench::dispatcher_error();
    if (!error.empty()) fail(error);
    r.setInputs(readInputs(o.inputs + "/timing", r.info->inputNames));
    int threadsBefore = countThreads();
    for (int i = 0; i < o.warmup; ++i) r.run();
    std::vector<double> times;
    for (int i = 0; i < o.iterations; ++i) {
        auto start = std::chrono::steady_clock::now();
        r.run();
        auto stop = std::chrono::steady_clock::now();
        times.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    }
    for (auto& folder : checkFolders(o.inputs)) {
        r.setInputs(readInputs(o.inputs + "/" + folder, r.info->inputNames));
        r.run();
        r.writeOutputs(o.out + "/" + folder);
    }
    error = mkbench::dispatcher_error();
    if (!error.empty()) fail(error);
    int threadsAfter = countThreads();
    writeReport(o, times, {}, threadsBefore, threadsAfter, "module");
    return 0;
}

void writeReport(const Options& o, const std::vector<double>& times, const std::vector<std::pair<std::string, std::string>>& ops,
                 int threadsBefore, int threadsAfter, const std::string& api) {
    // Name the class of every served execution from its vtable (creation-time records only).
    mkbench::SymbolTable symbols;
    bool symbolsLoaded = symbols.load();
    std::vector<std::string> candidateVtables;
    for (int i = 0; mkbench_candidate_vtables[i] != nullptr; ++i) candidateVtables.push_back(mkbench_candidate_vtables[i]);

    std::string json = "{\n \"times_ms\": [";
    for (size_t i = 0; i < times.size(); ++i) {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.6f", times[i]);
        json += (i ? ", " : "") + std::string(buf);
    }
    json += "],\n \"ops\": [";
    for (size_t i = 0; i < ops.size(); ++i) {
        json += std::string(i ? ",\n  " : "\n  ") + "{\"name\": " + jsonString(ops[i].first) + ", \"type\": " + jsonString(ops[i].second) + "}";
    }
    json += "],\n \"served\": [";
    auto served = mkbench::served_records();
    for (size_t i = 0; i < served.size(); ++i) {
        const auto& s = served[i];
        std::string symbol = s.vtable ? symbols.vtableAt(s.vtable) : "";
        std::string className = s.vtable == 0 ? "" : (symbol.empty() ? "unknown" : mkbench::SymbolTable::className(symbol));
        std::string origin = s.vtable == 0 ? "none"
                           : symbol.empty() ? "unknown"
                           : (std::find(candidateVtables.begin(), candidateVtables.end(), symbol) != candidateVtables.end() ? "candidate" : "native");
        json += std::string(i ? ",\n  " : "\n  ") + "{\"op_name\": " + jsonString(s.op_name) + ", \"op_type\": " + jsonString(s.op_type) +
                ", \"sub_type\": " + (s.sub_type.empty() ? std::string("null") : jsonString(s.sub_type)) +
                ", \"served\": " + jsonString(s.served) + ", \"execution_class\": " + jsonString(className) +
                ", \"class_defined_in\": " + jsonString(origin) + ", \"backend_bytes\": " + std::to_string(s.backend_bytes) +
                ", \"float_inputs\": " + (s.float_inputs ? "true" : "false") + ", \"stage\": " + jsonString(s.stage) + "}";
    }
    json += "],\n \"threads_before\": " + std::to_string(threadsBefore) + ",\n \"threads_after\": " + std::to_string(threadsAfter);
    json += ",\n \"mnn_version\": " + jsonString(MNN::getVersion());
    json += ",\n \"build_kind\": " + jsonString(mkbench_build_kind);
    json += ",\n \"api\": " + jsonString(api);
    json += std::string(",\n \"symbols_loaded\": ") + (symbolsLoaded ? "true" : "false");
    json += ",\n \"settings\": {\"threads\": " + std::to_string(o.threads) + ", \"precision\": " + jsonString(o.precision) + ", \"hints\": {";
    for (size_t i = 0; i < o.hints.size(); ++i) json += (i ? ", " : "") + jsonString(o.hints[i].first) + ": " + std::to_string(o.hints[i].second);
    json += "}, \"warmup\": " + std::to_string(o.warmup) + ", \"iterations\": " + std::to_string(o.iterations) + "}\n}\n";

    std::string error;
    std::string path = o.out + "/report.json";
    FILE* f = std::fopen((path + ".partial").c_str(), "wb");
    if (f == nullptr || std::fwrite(json.data(), 1, json.size(), f) != json.size() || std::fclose(f) != 0) fail("cannot write " + path);
    if (std::rename((path + ".partial").c_str(), path.c_str()) != 0) fail("cannot write " + path);
}
