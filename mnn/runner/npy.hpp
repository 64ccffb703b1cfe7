// mkbench: a tiny .npy reader and writer (format versions 1.0-3.0, C order, little-endian).
// Element types: float32 (<f4), int32 (<i4), uint8 (|u1), int8 (|i1), bool (|b1, read only).
#ifndef MKBENCH_NPY_HPP
#define MKBENCH_NPY_HPP

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace mkbench {

struct NpyArray {
    std::string descr;      // numpy dtype string, e.g. "<f4"
    std::vector<int> shape;
    std::vector<uint8_t> data;  // raw bytes, C order

    size_t count() const {
        size_t n = 1;
        for (int d : shape) n *= (size_t)d;
        return n;
    }
};

inline size_t npyItemSize(const std::string& descr) {
    if (descr == "<f4" || descr == "<i4" || descr == "<u4") return 4;
    if (descr == "|u1" || descr == "|i1" || descr == "|b1" || descr == "<u1" || descr == "<i1") return 1;
    if (descr == "<f8" || descr == "<i8" || descr == "<u8") return 8;
    if (descr == "<f2" || descr == "<i2" || descr == "<u2") return 2;
    return 0;
}

// Find `'key': value` in the header dict; returns the raw value text (up to the next top-level ',').
inline bool npyHeaderField(const std::string& header, const char* key, std::string* value) {
    std::string quoted = std::string("'") + key + "'";
    size_t at = header.find(quoted);
    if (at == std::string::npos) return false;
    at = header.find(':', at + quoted.size());
    if (at == std::string::npos) return false;
    ++at;
    while (at < header.size() && header[at] == ' ') ++at;
    int depth = 0;
    size_t end = at;
    for (; end < header.size(); ++end) {
        char c = header[end];
        if (c == '(' || c == '[') depth++;
        if (c == ')' || c == ']') depth--;
        if ((c == ',' || c == '}') && depth == 0) break;
    }
    *value = header.substr(at, end - at);
    return true;
}

// Reads a .npy file; on failure returns false with a one-line reason in *error.
inline bool readNpy(const std::string& path, NpyArray* out, std::string* error) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        *error = "cannot open " + path;
        return false;
    }
    unsigned char magic[8];
    if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
        std::fclose(f);
        *error = path + " is not a .npy file";
        return false;
    }
    uint32_t headerLength = 0;
    if (magic[6] == 1) {
        unsigned char b[2];
        if (std::fread(b, 1, 2, f) != 2) { std::fclose(f); *error = path + ": truncated header"; return false; }
        headerLength = b[0] | (b[1] << 8);
    } else {
        unsigned char b[4];
        if (std::fread(b, 1, 4, f) != 4) { std::fclose(f); *error = path + ": truncated header"; return false; }
        headerLength = b[0] | (b[1] << 8) | (b[2] << 16) | ((uint32_t)b[3] << 24);
    }
    std::string header(headerLength, '\0');
    if (std::fread(&header[0], 1, headerLength, f) != headerLength) {
        std::fclose(f);
        *error = path + ": truncated header";
        return false;
    }
    std::string descr, order, shape;
    if (!npyHeaderField(header, "descr", &descr) || !npyHeaderField(header, "fortran_order", &order) ||
        !npyHeaderField(header, "shape", &shape)) {
        std::fclose(f);
        *error = path + ": malformed header";
        return false;
    }
    out->descr = descr.substr(1, descr.size() - 2);  // strip quotes
    if (order.compare(0, 4, "True") == 0) {
        std::fclose(f);
        *error = path + ": Fortran order is not supported, save C-order arrays";
        return false;
    }
    out->shape.clear();
    long long current = -1;
    for (char c : shape) {
        if (c >= '0' && c <= '9') {
            current = (current < 0 ? 0 : current * 10) + (c - '0');
        } else if (current >= 0) {
            out->shape.push_back((int)current);
            current = -1;
        }
    }
    size_t item = npyItemSize(out->descr);
    if (item == 0) {
        std::fclose(f);
        *error = path + ": unsupported dtype " + out->descr;
        return false;
    }
    size_t bytes = out->count() * item;
    out->data.resize(bytes);
    if (bytes > 0 && std::fread(out->data.data(), 1, bytes, f) != bytes) {
        std::fclose(f);
        *error = path + ": fewer data bytes than the shape needs";
        return false;
    }
    std::fclose(f);
    return true;
}

inline bool writeNpy(const std::string& path, const std::string& descr, const std::vector<int>& shape, const void* data,
                     size_t bytes, std::string* error) {
    std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (";
    for (size_t i = 0; i < shape.size(); ++i) {
        header += std::to_string(shape[i]);
        if (shape.size() == 1 || i + 1 < shape.size()) header += ",";
        if (i + 1 < shape.size()) header += " ";
    }
    header += "), }";
    size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header += '\n';
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) {
        *error = "cannot write " + path;
        return false;
    }
    unsigned char prefix[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(header.size() & 0xff),
                                (unsigned char)(header.size() >> 8)};
    bool ok = std::fwrite(prefix, 1, 10, f) == 10 && std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
              (bytes == 0 || std::fwrite(data, 1, bytes, f) == bytes);
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) *error = "cannot write " + path;
    return ok;
}

}  // namespace mkbench

#endif  // MKBENCH_NPY_HPP
