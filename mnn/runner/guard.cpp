// mkbench guard: run one program, time it from outside its process, and leave nothing behind.
//
//   guard --report FILE --deadline SECONDS [--stop-after SECONDS [--extra K]] -- PROGRAM ARGS...
//
// The guard starts PROGRAM as its child (stdin from /dev/null, stdout and stderr shared) and
// measures its wall time with the monotonic clock from just before fork to the child's exit: a
// process cannot shorten its own life, and nothing in the child can reach the guard's clock or
// memory (the guard is not dumpable, so a same-user process cannot read it, trace it or open its
// files through /proc). It is a child subreaper, so every descendant that outlives its parent
// (a setsid daemon included) becomes its child; once PROGRAM has exited, or the deadline passed,
// the guard kills every process left (counting them) and reaps them all. Only then, with no code
// of the child alive, it writes FILE:
//   {"exit_code": N | null, "signal": N | null, "timed_out": bool, "wall_ns": N, "leftover": N,
//    "user_us": N, "system_us": N}
// The guard shares one page with the program (a file it unlinks at once; its descriptor in the
// program's MKBENCH_GUARD_FD). The runner marks its phases there (1: warm-up begins, 2: timed
// runs begin, 3: they end) and wakes the guard (a futex), which notes the time it saw each mark:
// the timed runs are timed by the guard's clock, within microseconds, and nothing in the
// program can move the guard's clock. With --stop-after, the guard writes 1 into the page's first
// word that many seconds after it saw mark 2, and into its third word a number drawn from
// [0, K) (--extra, default 32): the runner's timed loop ends that many runs after the one in
// progress (runner --until-stopped). Only the last run's outputs are kept and checked, so which
// run is last is chosen by no code in the program, and not by time either (a kernel that works in
// one run of ten, slowly, would be caught in that one run by a stop drawn by time). FILE then also has
//   "marks_ns": [t1, t2, t3] (from the start; 0 for a mark never seen),
//   "run_ns": the median time of a timed run by the guard's clock (medianRunNs), "samples": how
//   many (time, runs done) samples it took, "runs_seen": the runs the counter showed last.
// The runner counts its timed runs in the page's fourth word and wakes the guard at a run's end
// when the fifth word says the guard waits; the guard samples that count at most every 0.2 ms.
// The guard exits 0 when FILE was written, 2 on its own failure (bad arguments, fork, FILE).
#include <dirent.h>
#include <utility>
#include <fcntl.h>
#include <signal.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const char* message) {
    std::fprintf(stderr, "guard: %s\n", message);
    std::_Exit(2);
}

int64_t nowNs() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// The pids whose parent is the guard (its children, and the orphans it adopted as subreaper).
std::vector<pid_t> children() {
    std::vector<pid_t> found;
    const pid_t self = getpid();
    DIR* proc = opendir("/proc");
    if (proc == nullptr) return found;
    while (dirent* entry = readdir(proc)) {
        char* end = nullptr;
        long pid = std::strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) continue;
        char path[64];
        std::snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        FILE* f = std::fopen(path, "r");
        if (f == nullptr) continue;
        char buffer[512];
        size_t n = std::fread(buffer, 1, sizeof(buffer) - 1, f);
        std::fclose(f);
        buffer[n] = '\0';
        const char* close = std::strrchr(buffer, ')');  // the name may hold spaces and parentheses
        if (close == nullptr) continue;
        char state = 0;
        long ppid = 0;
        if (std::sscanf(close + 1, " %c %ld", &state, &ppid) == 2 && ppid == self) found.push_back((pid_t)pid);
    }
    closedir(proc);
    return found;
}

// Kills and reaps every process left below the guard; returns how many there were.
int killLeftovers() {
    int killed = 0;
    for (int round = 0; round < 1000; ++round) {
        // Reap whatever is already dead, then kill what still lives.
        while (waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        std::vector<pid_t> left = children();
        if (left.empty()) return killed;
        for (pid_t pid : left) {
            if (kill(pid, SIGKILL) == 0) ++killed;
        }
        for (pid_t pid : left) waitpid(pid, nullptr, 0);
    }
    return killed;
}

// The shared page: a file beside the report, mapped shared and unlinked at once.
// Word 0: the stop flag (guard -> program); word 1: the program's phase (program -> guard).
volatile uint32_t* sharedPage(const std::string& report, int* fd) {
    std::string path = report + ".page";
    size_t slash = report.rfind('/');
    if (slash != std::string::npos && slash > 0) mkdir(report.substr(0, slash).c_str(), 0755);  // the run's folder, if new
    unlink(path.c_str());
    *fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (*fd < 0 || ftruncate(*fd, 4096) != 0) die("cannot create the shared page");
    void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    unlink(path.c_str());
    if (page == MAP_FAILED) die("cannot map the shared page");
    return static_cast<volatile uint32_t*>(page);
}

// Sleeps until the word changes from `seen` or `ns` pass (a futex on the shared mapping).
void waitChange(volatile uint32_t* word, uint32_t seen, int64_t ns) {
    struct timespec timeout;
    ns = std::max<int64_t>(ns, 1000);
    timeout.tv_sec = (time_t)(ns / 1000000000LL);
    timeout.tv_nsec = (long)(ns % 1000000000LL);
    syscall(SYS_futex, (uint32_t*)word, FUTEX_WAIT, seen, &timeout, nullptr, 0);
}

const int64_t POLL_NS = 1000000;  // the child's exit is looked for every millisecond
const int64_t SAMPLE_GAP_NS = 200000;  // in the timed phase, a (time, runs done) sample every 0.2 ms at most

void sleepNs(int64_t ns) {
    struct timespec t;
    t.tv_sec = (time_t)(ns / 1000000000LL);
    t.tv_nsec = (long)(ns % 1000000000LL);
    nanosleep(&t, nullptr);
}

// The time per run the samples show: the median over sampled intervals of (time / runs), each
// interval weighted by its runs. A run the scheduler interrupted makes one slow interval, which
// the median leaves out, as the median of a runner's own per-run times would; but these times are
// the guard's. 0 when there are fewer than 3 intervals with runs.
int64_t medianRunNs(const std::vector<std::pair<int64_t, uint32_t>>& samples) {
    std::vector<std::pair<double, uint32_t>> rates;  // (ns per run, runs)
    uint64_t total = 0;
    for (size_t i = 1; i < samples.size(); ++i) {
        if (samples[i].second <= samples[i - 1].second) continue;
        uint32_t runs = samples[i].second - samples[i - 1].second;
        rates.push_back({(double)(samples[i].first - samples[i - 1].first) / runs, runs});
        total += runs;
    }
    if (rates.size() < 3) return 0;
    std::sort(rates.begin(), rates.end());
    uint64_t seen = 0;
    for (auto& rate : rates) {
        seen += rate.second;
        if (2 * seen >= total) return (int64_t)rate.first;
    }
    return (int64_t)rates.back().first;
}

// A number in [0, n) from the kernel's randomness (never from anything the program could see).
uint32_t randomBelow(uint32_t n) {
    uint32_t value = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, &value, sizeof(value)) != (ssize_t)sizeof(value)) value = (uint32_t)nowNs();
    if (fd >= 0) close(fd);
    return value % n;
}

}  // namespace

int main(int argc, char** argv) {
    std::string report;
    double deadline = 0, stopAfter = 0;
    uint32_t extra = 32;
    int i = 1;
    for (; i < argc; ++i) {
        std::string flag = argv[i];
        if (flag == "--") {
            ++i;
            break;
        }
        if (i + 1 >= argc) die("missing value after an option");
        if (flag == "--report") report = argv[++i];
        else if (flag == "--deadline") deadline = std::atof(argv[++i]);
        else if (flag == "--stop-after") stopAfter = std::atof(argv[++i]);
        else if (flag == "--extra") extra = (uint32_t)std::max(1, std::atoi(argv[++i]));
        else die("usage: guard --report FILE --deadline SECONDS [--stop-after SECONDS [--extra K]] -- PROGRAM ARGS...");
    }
    if (report.empty() || deadline <= 0 || i >= argc)
        die("usage: guard --report FILE --deadline SECONDS [--stop-after SECONDS [--extra K]] -- PROGRAM ARGS...");
    int pageFd = -1;
    volatile uint32_t* page = sharedPage(report, &pageFd);

    prctl(PR_SET_DUMPABLE, 0);           // no same-user process may read, trace or open us
    prctl(PR_SET_CHILD_SUBREAPER, 1);    // orphaned descendants become ours
    const int64_t start = nowNs();
    pid_t child = fork();
    if (child < 0) die("cannot fork");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);  // the guard dying takes the program with it
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) dup2(null, 0);
        setenv("MKBENCH_GUARD_FD", std::to_string(pageFd).c_str(), 1);
        // Under emulation the program may need a loader first (qemu-user, the emulator's mkexec):
        // MKBENCH_EXEC_PREFIX names it, words split on spaces.
        const char* prefix = std::getenv("MKBENCH_EXEC_PREFIX");
        if (prefix != nullptr && prefix[0] != '\0') {
            std::vector<std::string> words;
            std::string text = prefix, word;
            for (char c : text + " ") {
                if (c != ' ') word += c;
                else if (!word.empty()) { words.push_back(word); word.clear(); }
            }
            std::vector<char*> full;
            for (auto& w : words) full.push_back(const_cast<char*>(w.c_str()));
            for (int k = i; k < argc; ++k) full.push_back(argv[k]);
            full.push_back(nullptr);
            unsetenv("MKBENCH_EXEC_PREFIX");
            execvp(full[0], full.data());
        }
        execvp(argv[i], argv + i);
        std::fprintf(stderr, "guard: cannot run %s: %s\n", argv[i], std::strerror(errno));
        std::_Exit(127);
    }
    close(pageFd);  // the mapping stays
    const int64_t deadlineAt = start + (int64_t)(deadline * 1e9);
    const int64_t stopNs = (int64_t)(stopAfter * 1e9);
    int64_t marks[3] = {0, 0, 0};
    uint32_t phase = 0;
    bool stopped = stopAfter <= 0;
    int status = 0;
    bool timedOut = false;
    std::vector<std::pair<int64_t, uint32_t>> samples;  // (when, timed runs done) in the timed phase
    int64_t lastSample = 0;
    // Reads the page: marks newly reached, and a sample when the count of timed runs moved.
    auto observe = [&](int64_t now) {
        const uint32_t seen = page[1];
        const uint32_t count = __atomic_load_n(&page[3], __ATOMIC_SEQ_CST);
        for (uint32_t mark = phase + 1; mark <= seen && mark <= 3; ++mark) {
            marks[mark - 1] = now - start;
            if (mark == 2 || mark == 3) samples.push_back({now, mark == 2 ? 0u : count});
        }
        if (seen > phase) phase = seen;
        if (phase == 2 && count != samples.back().second) {
            samples.push_back({now, count});
            lastSample = now;
        }
        return std::make_pair(seen, count);
    };
    while (true) {
        pid_t done = waitpid(child, &status, WNOHANG);
        if (done == child) {
            observe(nowNs());  // what it marked between the last look and its exit (its end mark, often)
            break;
        }
        if (done < 0 && errno != EINTR) die("cannot wait for the program");
        const int64_t now = nowNs();
        const auto [seen, count] = observe(now);
        if (!stopped && marks[1] != 0 && now - start >= marks[1] + stopNs) {
            __atomic_store_n(&page[2], randomBelow(extra), __ATOMIC_SEQ_CST);  // how many runs after this one
            __atomic_store_n(&page[0], 1u, __ATOMIC_SEQ_CST);
            stopped = true;
        }
        if (now >= deadlineAt) {
            timedOut = true;
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
            break;
        }
        int64_t wait = std::min(POLL_NS, deadlineAt - now);
        if (!stopped && marks[1] != 0) wait = std::min(wait, start + marks[1] + stopNs - now);
        if (phase == 2) {
            // Timed runs: a sample at the first run boundary SAMPLE_GAP_NS after the last one
            // (the runner wakes the guard at a boundary only when it asks: word 4).
            if (now - lastSample < SAMPLE_GAP_NS) {
                sleepNs(std::min(wait, SAMPLE_GAP_NS - (now - lastSample)));
                continue;
            }
            __atomic_store_n(&page[4], 1u, __ATOMIC_SEQ_CST);
            waitChange(&page[3], count, wait);
            __atomic_store_n(&page[4], 0u, __ATOMIC_SEQ_CST);
            continue;
        }
        waitChange(&page[1], seen, wait);
    }
    const int64_t wall = nowNs() - start;
    const int leftover = killLeftovers();

    struct rusage usage;
    std::memset(&usage, 0, sizeof(usage));
    getrusage(RUSAGE_CHILDREN, &usage);
    const long long user = (long long)usage.ru_utime.tv_sec * 1000000LL + usage.ru_utime.tv_usec;
    const long long system = (long long)usage.ru_stime.tv_sec * 1000000LL + usage.ru_stime.tv_usec;
    char exitText[32] = "null", signalText[32] = "null";
    if (!timedOut && WIFEXITED(status)) std::snprintf(exitText, sizeof(exitText), "%d", WEXITSTATUS(status));
    if (!timedOut && WIFSIGNALED(status)) std::snprintf(signalText, sizeof(signalText), "%d", WTERMSIG(status));
    char json[768];
    int length = std::snprintf(json, sizeof(json),
                               "{\"exit_code\": %s, \"signal\": %s, \"timed_out\": %s, \"wall_ns\": %lld, \"leftover\": %d, "
                               "\"user_us\": %lld, \"system_us\": %lld, \"marks_ns\": [%lld, %lld, %lld], "
                               "\"run_ns\": %lld, \"samples\": %zu, \"runs_seen\": %u}\n",
                               exitText, signalText, timedOut ? "true" : "false", (long long)wall, leftover, user, system,
                               (long long)marks[0], (long long)marks[1], (long long)marks[2], (long long)medianRunNs(samples),
                               samples.size(), samples.empty() ? 0u : samples.back().second);
    // Replace, never append: nothing of the program is alive any more to race this write.
    unlink(report.c_str());
    int fd = open(report.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 || write(fd, json, (size_t)length) != length || close(fd) != 0) die("cannot write the report");
    return 0;
}
