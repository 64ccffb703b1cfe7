// mkbench bandwidth probe: how fast this device reads and writes memory, per working-set size.
//
//   bandwidth --out FILE [--seconds S]
//
// For working sets from 16 KiB to 512 MiB (doubling), copies one buffer of half the set into the
// other half, over and over, and keeps the fastest copy (STREAM's "best of" rule: the bound is what
// the machine can do, not what it usually does). FILE gets one JSON object:
//   {"sizes": [bytes...], "bytes_per_second": [...]}   (read + written bytes per second)
// The judge holds a kernel's time against the time to read its inputs and write its outputs at
// the bandwidth of that working set (judge/bounds.py): below it, a time is not physically possible.
// Sizes the device cannot allocate are left out. Exit 0 on success.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    std::string out;
    double seconds = 0.1;  // per size, at least
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string flag = argv[i];
        if (flag == "--out") out = argv[i + 1];
        else if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
    }
    if (out.empty()) {
        std::fprintf(stderr, "usage: bandwidth --out FILE [--seconds S]\n");
        return 2;
    }
    std::vector<double> sizes, rates;
    for (size_t set = 16u << 10; set <= (512u << 20); set *= 2) {
        const size_t half = set / 2;
        char* buffer = static_cast<char*>(std::malloc(set));
        if (buffer == nullptr) break;
        std::memset(buffer, 1, set);
        double best = 1e30;
        auto begin = std::chrono::steady_clock::now();
        int rounds = 0;
        // memcpy (the C library's best: wide or non-temporal stores) and a plain float loop (what
        // a kernel's stores look like), alternately: the faster of the two is the bound.
        while (rounds < 6 || std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count() < seconds) {
            char* to = buffer + (rounds % 2 ? 0 : half);
            const char* from = buffer + (rounds % 2 ? half : 0);
            auto start = std::chrono::steady_clock::now();
            if ((rounds / 2) % 2 == 0) {
                std::memcpy(to, from, half);
            } else {
                float* d = reinterpret_cast<float*>(to);
                const float* f = reinterpret_cast<const float*>(from);
                for (size_t k = 0; k < half / sizeof(float); ++k) d[k] = f[k];
            }
            auto stop = std::chrono::steady_clock::now();
            best = std::min(best, std::chrono::duration<double>(stop - start).count());
            ++rounds;
            __asm__ volatile("" : : "r"(buffer) : "memory");
        }
        std::free(buffer);
        sizes.push_back((double)set);
        rates.push_back(best > 0 ? (double)set / best : 0.0);  // half read + half written per copy
    }
    FILE* f = std::fopen(out.c_str(), "w");
    if (f == nullptr) return 1;
    std::fprintf(f, "{\"sizes\": [");
    for (size_t i = 0; i < sizes.size(); ++i) std::fprintf(f, "%s%.0f", i ? ", " : "", sizes[i]);
    std::fprintf(f, "], \"bytes_per_second\": [");
    for (size_t i = 0; i < rates.size(); ++i) std::fprintf(f, "%s%.0f", i ? ", " : "", rates[i]);
    std::fprintf(f, "]}\n");
    return std::fclose(f) == 0 ? 0 : 1;
}
