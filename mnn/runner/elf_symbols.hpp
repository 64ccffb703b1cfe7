// mkbench: name the class of an object from its vtable pointer by reading the running binary's own
// ELF symbol table (/proc/self/exe). MNN builds with -fno-rtti, so typeid is unavailable; a vtable
// symbol (_ZTV...) exists for every polymorphic class, local or global, as long as the binary is
// not stripped. The load bias comes from an anchor function whose link-time address is also in the
// table, so this works for static, PIE and non-PIE executables alike. 64-bit little-endian ELF only.
#ifndef MKBENCH_ELF_SYMBOLS_HPP
#define MKBENCH_ELF_SYMBOLS_HPP

#include <elf.h>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>
#include <string>
#include <vector>

extern "C" void mkbench_anchor();

namespace mkbench {

struct ObjectSymbol {
    uint64_t address;  // runtime address
    uint64_t size;
    std::string name;  // mangled
};

class SymbolTable {
public:
    // Loads the object symbols of /proc/self/exe; false if it cannot (then lookups return "").
    bool load() {
        FILE* f = std::fopen("/proc/self/exe", "rb");
        if (f == nullptr) return false;
        std::vector<char> file;
        char buffer[1 << 16];
        size_t n;
        while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) file.insert(file.end(), buffer, buffer + n);
        std::fclose(f);
        if (file.size() < sizeof(Elf64_Ehdr)) return false;
        const Elf64_Ehdr* eh = reinterpret_cast<const Elf64_Ehdr*>(file.data());
        if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_shoff == 0 ||
            eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) > file.size())
            return false;
        const Elf64_Shdr* sections = reinterpret_cast<const Elf64_Shdr*>(file.data() + eh->e_shoff);
        int64_t anchorLinkAddress = -1;
        std::vector<ObjectSymbol> symbols;
        for (int i = 0; i < eh->e_shnum; ++i) {
            if (sections[i].sh_type != SHT_SYMTAB) continue;
            const Elf64_Shdr& strtab = sections[sections[i].sh_link];
            if (sections[i].sh_offset + sections[i].sh_size > file.size() || strtab.sh_offset + strtab.sh_size > file.size())
                return false;
            const Elf64_Sym* syms = reinterpret_cast<const Elf64_Sym*>(file.data() + sections[i].sh_offset);
            size_t count = sections[i].sh_size / sizeof(Elf64_Sym);
            const char* names = file.data() + strtab.sh_offset;
            for (size_t k = 0; k < count; ++k) {
                if (syms[k].st_name >= strtab.sh_size) continue;
                std::string name = names + syms[k].st_name;
                if (name == "mkbench_anchor") anchorLinkAddress = (int64_t)syms[k].st_value;
                if (ELF64_ST_TYPE(syms[k].st_info) == STT_OBJECT && name.compare(0, 4, "_ZTV") == 0 && syms[k].st_size > 0)
                    symbols.push_back({syms[k].st_value, syms[k].st_size, name});
            }
        }
        if (anchorLinkAddress < 0) return false;
        uint64_t bias = reinterpret_cast<uintptr_t>(&mkbench_anchor) - (uint64_t)anchorLinkAddress;
        for (auto& s : symbols) s.address += bias;
        std::sort(symbols.begin(), symbols.end(), [](const ObjectSymbol& a, const ObjectSymbol& b) { return a.address < b.address; });
        mSymbols.swap(symbols);
        return true;
    }

    // The mangled vtable symbol that contains this address ("" if none).
    std::string vtableAt(uintptr_t address) const {
        auto it = std::upper_bound(mSymbols.begin(), mSymbols.end(), (uint64_t)address,
                                   [](uint64_t a, const ObjectSymbol& s) { return a < s.address; });
        if (it == mSymbols.begin()) return "";
        --it;
        return (address < it->address + it->size) ? it->name : "";
    }

    // "MNN::CPUUnary" from "_ZTVN3MNN8CPUUnaryE".
    static std::string className(const std::string& vtableSymbol) {
        int status = 0;
        char* demangled = abi::__cxa_demangle(vtableSymbol.c_str(), nullptr, nullptr, &status);
        std::string result = (status == 0 && demangled) ? demangled : vtableSymbol;
        std::free(demangled);
        const std::string prefix = "vtable for ";
        if (result.compare(0, prefix.size(), prefix) == 0) result = result.substr(prefix.size());
        return result;
    }

private:
    std::vector<ObjectSymbol> mSymbols;
};

}  // namespace mkbench

#endif  // MKBENCH_ELF_SYMBOLS_HPP
