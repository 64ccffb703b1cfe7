// mkbench runner: run one .mnn model on MNN's CPU backend, time it, check it, report what served it.
//
//   runner --model M.mnn --sets DIR --out OUT --warmup W (--iterations N | --until-stopped MAX)
//          --rotate K --perturb SEED --threads T --precision normal|high|low [--hint NAME=VALUE ...]
//
// DIR holds input sets, one folder each with one <input>.npy per model input, taken in name order.
// The first K sets are timed: each gets a session of its own, and W warm-up then the timed runs go
// round them (run i uses set i % K). The timed runs number N, or, with --until-stopped, continue
// until the guard raises its stop flag and a few more runs (guard --stop-after; as many as it drew;
// at most MAX): no code in the process can know which run is the last, the only one whose
// outputs are kept. Before every run a
// few elements of each float input take other values of the same draw, at places chosen by a
// generator seeded with SEED and the run's number: no two runs see the same inputs, so a kernel
// cannot replay an earlier answer or skip the work, and runs with the same SEED, W and number of
// runs end on the same inputs on any machine (native's outputs, run that many times, then judge
// the candidate's). After the loop the timed sets' outputs are written as they are, then every
// other set runs once, untimed, into outputs poisoned with NaN (or a fixed integer pattern), and
// OUT/<set>/<output>.npy is written in plain layout with MNN's dtype. The ops executed are recorded
// in one untimed callback run. The runner marks where its warm-up and timed runs begin and end on
// a page it shares with the guard, which times them by its own clock (guard.cpp). OUT/report.json
// holds the runner's own per-run times (diagnostics: a candidate's process could alter them), how
// many runs were timed, the creation-time served records, thread counts, MNN's version and the
// settings. Then the runner ends with _Exit: no static destructor or exit handler of a candidate
// runs after the report. Every run of an evaluation, correctness or timing, has this same shape.
// A model the Session API refuses (output shapes that depend on input values) runs the same steps
// through MNN's Module API (report "api": "module"; no perturbation: its inputs are a few scalars).
// Exit 0 on success; otherwise 1 with a one-line message on stderr.
// In file names, '/' in a tensor name is written as '_'.

#include <MNN/Interpreter.hpp>
#include <MNN/MNNDefine.h>
#include <MNN/Tensor.hpp>
#include <MNN/expr/Executor.hpp>
#include <MNN/expr/ExprCreator.hpp>
#include <MNN/expr/Module.hpp>
#include <dirent.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
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
    std::string model, sets, out, precision = "normal";
    int warmup = -1, iterations = -1, untilStopped = -1, threads = -1, rotate = -1;
    uint64_t perturb = 0;
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
        else if (flag == "--sets") o.sets = value;
        else if (flag == "--rotate") o.rotate = parseInt(value, flag);
        else if (flag == "--perturb") o.perturb = std::strtoull(value.c_str(), nullptr, 10);
        else if (flag == "--out") o.out = value;
        else if (flag == "--warmup") o.warmup = parseInt(value, flag);
        else if (flag == "--iterations") o.iterations = parseInt(value, flag);
        else if (flag == "--until-stopped") o.untilStopped = parseInt(value, flag);
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
    if (o.model.empty() || o.sets.empty() || o.out.empty()) fail("--model, --sets and --out are required");
    if (o.warmup < 0 || o.threads < 1 || o.rotate < 1) fail("--warmup >= 0, --rotate >= 1 and --threads >= 1 are required");
    if ((o.iterations >= 1) == (o.untilStopped >= 1)) fail("one of --iterations N or --until-stopped MAX (>= 1) is required");
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

// One session per timed set (and one more set's worth of work for the untimed ones).
struct Runner {
    Options options;
    std::unique_ptr<MNN::Interpreter, void (*)(MNN::Interpreter*)> net{nullptr, MNN::Interpreter::destroy};
    std::vector<MNN::Session*> sessions;

    // Resizes a session's inputs to the arrays' shapes (and the session if any changed), then copies data in.
    void setInputs(MNN::Session* session, const std::map<std::string, mkbench::NpyArray>& arrays) {
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
            checkDispatcher(session);
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

    std::vector<std::string> inputNames(MNN::Session* session) {
        std::vector<std::string> names;
        for (auto& entry : net->getSessionInputAll(session)) names.push_back(entry.first);
        return names;
    }

    void run(MNN::Session* session) {
        auto code = net->runSession(session);
        if (code != MNN::NO_ERROR) fail("runSession failed with MNN error code " + std::to_string((int)code));
    }

    // After every session creation or resize: the dispatcher installed, the candidate's creator
    // returned an execution (a native nullptr can be legitimate: MNN then retries on the backup
    // backend, e.g. fp32 after fp16), the session is ready to run.
    void checkDispatcher(MNN::Session* session) {
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

    // A timed set's inputs as the runner keeps them, and how each changes before every timed run.
    // Changing an input in place, in the session's own memory, costs next to nothing; but MNN may
    // reuse an input's memory while it runs the graph (measured: a Softplus model's second run saw
    // its first run's intermediates), and a kernel may write into its input. So one untimed run
    // first shows whether the session leaves its inputs alone (and whether writing the tensor's
    // memory is seen by MNN): if not, the kept copy is copied in again before every run.
    struct KeptInput {
        std::string name;
        std::vector<uint8_t> data;  // the current values, in the tensor's element type and host layout
        std::vector<uint8_t> pristine;  // as drawn: replacements are taken from here
        std::unique_ptr<MNN::Tensor> host;  // wraps data
        MNN::Tensor* device = nullptr;  // the session's input tensor
        bool isFloat = false;
        bool inPlace = false;
    };

    std::vector<KeptInput> keep(MNN::Session* session, const std::map<std::string, mkbench::NpyArray>& arrays) {
        std::vector<KeptInput> kept;
        for (auto& entry : net->getSessionInputAll(session)) {  // a std::map: the inputs in name order
            MNN::Tensor* input = entry.second;
            KeptInput k;
            k.name = entry.first;
            k.data = asTensorType(arrays.at(entry.first), input->getType(), entry.first);
            k.pristine = k.data;
            k.host.reset(MNN::Tensor::create(input->shape(), input->getType(), k.data.data(), hostLayout(input)));
            k.device = input;
            k.isFloat = input->getType().code == halide_type_float && input->getType().bits == 32;
            kept.push_back(std::move(k));
        }
        return kept;
    }

    // After one untimed run: an input may change in place when its memory is plain host memory in
    // the kept layout, still holds exactly the kept values, and a value written there reads back.
    void chooseInPlace(std::vector<KeptInput>& kept) {
        for (auto& k : kept) {
            k.inPlace = false;
            if (!k.isFloat || k.data.size() < 8 || k.device->host<float>() == nullptr) continue;
            if (k.device->getDimensionType() == MNN::Tensor::CAFFE_C4) continue;
            if ((size_t)k.device->size() != k.data.size()) continue;
            float* memory = k.device->host<float>();
            if (std::memcmp(memory, k.data.data(), k.data.size()) != 0) continue;  // clobbered by the run
            std::unique_ptr<MNN::Tensor> check(new MNN::Tensor(k.device, hostLayout(k.device), true));
            float saved = memory[0];
            memory[0] = saved + 1.0f;
            bool seen = k.device->copyToHostTensor(check.get()) && check->host<float>()[0] == saved + 1.0f;
            memory[0] = saved;
            k.inPlace = seen;
        }
    }

    // Before timed run `runIndex`: REPLACEMENTS elements of every kept float input take a value
    // drawn from the input as drawn, at places chosen by a generator seeded with (seed, run):
    // the values stay in the task's distribution (a domain such as Log's is kept), their sum and
    // order change (so a reduction's answer changes too), and the same seed and run count give the
    // same inputs on any machine. Integer inputs (indices, shapes) are never changed.
    void perturbAndLoad(std::vector<KeptInput>& kept, uint64_t seed, uint64_t runIndex, int replacements) {
        uint64_t state = seed ^ (0x9E3779B97F4A7C15ull * (runIndex + 1));
        for (auto& k : kept) {
            uint64_t n = k.data.size() / 4;
            float* values = reinterpret_cast<float*>(k.data.data());
            const float* drawn = reinterpret_cast<const float*>(k.pristine.data());
            for (int s = 0; k.isFloat && n >= 2 && s < replacements; ++s) {
                uint64_t a = splitmix64(&state) % n, b = splitmix64(&state) % n;
                values[a] = drawn[b];
                if (k.inPlace) k.device->host<float>()[a] = values[a];
            }
            if (!k.inPlace && !k.device->copyFromHostTensor(k.host.get())) fail("input " + k.name + ": copy into the session failed");
        }
    }

    static uint64_t splitmix64(uint64_t* state) {
        uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }

    // Fills every output of a session with a poison value through MNN's own layout conversion.
    void poisonOutputs(MNN::Session* session) {
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

    void writeOutputs(MNN::Session* session, const std::string& folder) {
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

// The input sets: every folder of DIR, in name order.
std::vector<std::string> setFolders(const std::string& sets) {
    std::vector<std::string> names;
    for (auto& name : listDirectory(sets)) {
        if (isDirectory(sets + "/" + name)) names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    if (names.empty()) fail("no input set in " + sets);
    return names;
}

const int REPLACEMENTS = 4;  // elements of each float input replaced before each timed run
const int MIN_TIMED = 3;  // timed runs done even when told to stop sooner

// The page shared with the guard (mnn/runner/guard.cpp; its descriptor in MKBENCH_GUARD_FD):
// word 0 turns non-zero when the timed runs should end (guard --stop-after), word 1 is where the
// runner marks its phases for the guard's clock. Without a guard (a probe run) there is no page,
// marks go nowhere and nothing stops a loop.
volatile uint32_t* guardPage() {
    static volatile uint32_t* page = [] {
        const char* fd = std::getenv("MKBENCH_GUARD_FD");
        if (fd == nullptr) return (volatile uint32_t*)nullptr;
        void* mapped = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, std::atoi(fd), 0);
        if (mapped == MAP_FAILED) fail("cannot map the guard's page");
        return static_cast<volatile uint32_t*>(mapped);
    }();
    return page;
}

// Marks a phase for the guard (1: warm-up begins, 2: timed runs begin, 3: they end) and wakes it.
void mark(uint32_t phase) {
    volatile uint32_t* page = guardPage();
    if (page == nullptr) return;
    __atomic_store_n(&page[1], phase, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, (uint32_t*)&page[1], FUTEX_WAKE, 1, nullptr, nullptr, 0);
    syscall(SYS_futex, (uint32_t*)&page[3], FUTEX_WAKE, 1, nullptr, nullptr, 0);  // the guard may wait on the count
}

// After each timed run: the count for the guard's clock (word 3), and a wake if it waits (word 4).
void counted(uint32_t timedRuns) {
    volatile uint32_t* page = guardPage();
    if (page == nullptr) return;
    __atomic_store_n(&page[3], timedRuns, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&page[4], __ATOMIC_SEQ_CST) != 0) syscall(SYS_futex, (uint32_t*)&page[3], FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

// -1 until the guard raises its stop flag; then how many more timed runs it asks for.
int stopAfterMore() {
    volatile uint32_t* page = guardPage();
    if (page == nullptr || __atomic_load_n(&page[0], __ATOMIC_SEQ_CST) == 0) return -1;
    return (int)__atomic_load_n(&page[2], __ATOMIC_SEQ_CST);
}

}  // namespace

int runModule(const Options& o, const MNN::ScheduleConfig& config, const std::vector<std::string>& sets);
void writeReport(const Options& o, const std::vector<double>& times, const std::vector<double>& warmups,
                 const std::vector<std::pair<std::string, std::string>>& ops, int threadsBefore, int threadsAfter,
                 const std::string& api, const std::vector<std::string>& sets, int timed, const std::string& inputs, double loopMs);

int main(int argc, char** argv) {
    Runner r;
    r.options = parseOptions(argc, argv);
    const Options& o = r.options;
    std::vector<std::string> sets = setFolders(o.sets);
    const int timed = std::min<int>(o.rotate, (int)sets.size());
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
    MNN::Session* first = r.net->createSession(config);
    if (first == nullptr) return runModule(o, config, sets);
    r.sessions.push_back(first);
    r.checkDispatcher(first);
    for (int k = 1; k < timed; ++k) {
        MNN::Session* session = r.net->createSession(config);
        if (session == nullptr) fail("cannot create a session for input set " + sets[k]);
        r.checkDispatcher(session);
        r.sessions.push_back(session);
    }
    std::vector<std::vector<Runner::KeptInput>> kept(timed);
    for (int k = 0; k < timed; ++k) {
        auto arrays = readInputs(o.sets + "/" + sets[k], r.inputNames(r.sessions[k]));
        r.setInputs(r.sessions[k], arrays);  // resizes the session to the set's shapes
        kept[k] = r.keep(r.sessions[k], arrays);
        r.run(r.sessions[k]);  // untimed: shows whether the session leaves its inputs alone
        r.chooseInPlace(kept[k]);
        r.perturbAndLoad(kept[k], o.perturb, 0, 0);  // the kept values, whatever that run did to them
        r.poisonOutputs(r.sessions[k]);
    }
    int threadsBefore = countThreads();

    // W warm-up runs, then timed runs until N are done or, told to stop, until the guard says so.
    std::vector<double> times, warmups;
    times.reserve(o.iterations > 0 ? o.iterations : 4096);
    if (o.untilStopped > 0 && guardPage() == nullptr) fail("--until-stopped needs the guard (its MKBENCH_GUARD_FD)");
    const auto loopStart = std::chrono::steady_clock::now();
    int lastRun = -1, more = -1;  // the run the loop ends on, once the guard has said
    mark(1);
    for (int i = 0;; ++i) {
        if (i == o.warmup) mark(2);
        MNN::Session* session = r.sessions[i % timed];
        r.perturbAndLoad(kept[i % timed], o.perturb, (uint64_t)i, REPLACEMENTS);
        auto start = std::chrono::steady_clock::now();
        r.run(session);
        auto stop_ = std::chrono::steady_clock::now();
        (i >= o.warmup ? times : warmups).push_back(std::chrono::duration<double, std::milli>(stop_ - start).count());
        int timedRuns = (int)times.size();
        if (i >= o.warmup) counted((uint32_t)timedRuns);
        if (o.untilStopped > 0 && lastRun < 0 && timedRuns >= MIN_TIMED && (more = stopAfterMore()) >= 0) lastRun = i + more;
        if (o.untilStopped <= 0 ? timedRuns >= o.iterations : i == lastRun || timedRuns >= o.untilStopped) break;
    }
    mark(3);
    const double loopMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - loopStart).count();
    const int runs = o.warmup + (int)times.size();
    for (int k = 0; k < timed; ++k) {
        if (k >= runs) {  // a timed set the loop never reached
            r.perturbAndLoad(kept[k], o.perturb, (uint64_t)k, 0);
            r.run(r.sessions[k]);
        }
        r.writeOutputs(r.sessions[k], o.out + "/" + sets[k]);
    }

    std::vector<std::pair<std::string, std::string>> ops;
    MNN::TensorCallBackWithInfo before = [&](const std::vector<MNN::Tensor*>&, const MNN::OperatorInfo* info) {
        ops.push_back({info->name(), info->type()});
        return true;
    };
    MNN::TensorCallBackWithInfo after = [](const std::vector<MNN::Tensor*>&, const MNN::OperatorInfo*) { return true; };
    if (r.net->runSessionWithCallBackInfo(first, before, after, true) != MNN::NO_ERROR) fail("the callback run failed");

    for (size_t k = timed; k < sets.size(); ++k) {
        auto arrays = readInputs(o.sets + "/" + sets[k], r.inputNames(first));
        r.setInputs(first, arrays);
        r.poisonOutputs(first);
        r.setInputs(first, arrays);  // poisoning may share memory with inputs in odd graphs: copy them again
        r.run(first);
        r.writeOutputs(first, o.out + "/" + sets[k]);
    }
    int threadsAfter = countThreads();
    bool copied = false;
    for (auto& inputs : kept) {
        for (auto& k : inputs) copied = copied || (k.isFloat && !k.inPlace);
    }
    writeReport(o, times, warmups, ops, threadsBefore, threadsAfter, "session", sets, timed, copied ? "copied" : "in-place", loopMs);
    std::fflush(nullptr);
    std::_Exit(0);  // no candidate destructor or exit handler runs after the report
}

int runModule(const Options& o, const MNN::ScheduleConfig& config, const std::vector<std::string>& sets) {
    ModuleRunner r;
    r.load(o, config);
    std::string error = mkbench::dispatcher_error();
    if (!error.empty()) fail(error);
    const int timed = std::min<int>(o.rotate, (int)sets.size());
    std::vector<std::vector<MNN::Express::VARP>> timedInputs;
    for (int k = 0; k < timed; ++k) {
        r.setInputs(readInputs(o.sets + "/" + sets[k], r.info->inputNames));
        timedInputs.push_back(r.inputs);
    }
    int threadsBefore = countThreads();
    std::vector<double> times, warmups;
    if (o.untilStopped > 0 && guardPage() == nullptr) fail("--until-stopped needs the guard (its MKBENCH_GUARD_FD)");
    const auto loopStart = std::chrono::steady_clock::now();
    int lastRun = -1, more = -1;  // the run the loop ends on, once the guard has said
    mark(1);
    for (int i = 0;; ++i) {
        if (i == o.warmup) mark(2);
        r.inputs = timedInputs[i % timed];
        auto start = std::chrono::steady_clock::now();
        r.run();
        auto stop_ = std::chrono::steady_clock::now();
        (i >= o.warmup ? times : warmups).push_back(std::chrono::duration<double, std::milli>(stop_ - start).count());
        int timedRuns = (int)times.size();
        if (i >= o.warmup) counted((uint32_t)timedRuns);
        if (o.untilStopped > 0 && lastRun < 0 && timedRuns >= MIN_TIMED && (more = stopAfterMore()) >= 0) lastRun = i + more;
        if (o.untilStopped <= 0 ? timedRuns >= o.iterations : i == lastRun || timedRuns >= o.untilStopped) break;
    }
    mark(3);
    const double loopMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - loopStart).count();
    for (size_t k = 0; k < sets.size(); ++k) {
        r.setInputs(readInputs(o.sets + "/" + sets[k], r.info->inputNames));
        r.run();
        r.writeOutputs(o.out + "/" + sets[k]);
    }
    error = mkbench::dispatcher_error();
    if (!error.empty()) fail(error);
    int threadsAfter = countThreads();
    writeReport(o, times, warmups, {}, threadsBefore, threadsAfter, "module", sets, timed, "unchanged", loopMs);
    std::fflush(nullptr);
    std::_Exit(0);
}

std::string jsonNumbers(const std::vector<double>& values) {
    std::string out = "[";
    for (size_t i = 0; i < values.size(); ++i) {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.6f", values[i]);
        out += (i ? ", " : "") + std::string(buf);
    }
    return out + "]";
}

void writeReport(const Options& o, const std::vector<double>& times, const std::vector<double>& warmups,
                 const std::vector<std::pair<std::string, std::string>>& ops, int threadsBefore, int threadsAfter,
                 const std::string& api, const std::vector<std::string>& sets, int timed, const std::string& inputs, double loopMs) {
    // Name the class of every served execution from its vtable (creation-time records only).
    mkbench::SymbolTable symbols;
    bool symbolsLoaded = symbols.load();
    std::vector<std::string> candidateVtables;
    for (int i = 0; mkbench_candidate_vtables[i] != nullptr; ++i) candidateVtables.push_back(mkbench_candidate_vtables[i]);

    std::string json = "{\n \"times_ms\": " + jsonNumbers(times) + ",\n \"warmup_ms\": " + jsonNumbers(warmups);
    char loop[64];
    std::snprintf(loop, sizeof(loop), "%.6f", loopMs);
    json += ",\n \"loop_ms\": " + std::string(loop) + ",\n \"iterations\": " + std::to_string(times.size());
    json += ",\n \"ops\": [";
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
    json += ",\n \"timed_inputs\": " + jsonString(inputs);
    json += ",\n \"sets\": [";
    for (size_t i = 0; i < sets.size(); ++i) json += (i ? ", " : "") + jsonString(sets[i]);
    json += "],\n \"timed_sets\": " + std::to_string(timed);
    json += std::string(",\n \"symbols_loaded\": ") + (symbolsLoaded ? "true" : "false");
    json += ",\n \"settings\": {\"threads\": " + std::to_string(o.threads) + ", \"precision\": " + jsonString(o.precision) + ", \"hints\": {";
    for (size_t i = 0; i < o.hints.size(); ++i) json += (i ? ", " : "") + jsonString(o.hints[i].first) + ": " + std::to_string(o.hints[i].second);
    json += "}, \"warmup\": " + std::to_string(o.warmup) + ", \"iterations\": " + std::to_string(times.size()) +
            ", \"rotate\": " + std::to_string(o.rotate) + ", \"perturb\": " + std::to_string(o.perturb) + "}\n}\n";

    std::string error;
    std::string path = o.out + "/report.json";
    FILE* f = std::fopen((path + ".partial").c_str(), "wb");
    if (f == nullptr || std::fwrite(json.data(), 1, json.size(), f) != json.size() || std::fclose(f) != 0) fail("cannot write " + path);
    if (std::rename((path + ".partial").c_str(), path.c_str()) != 0) fail("cannot write " + path);
}
