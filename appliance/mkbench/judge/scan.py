"""A candidate's source, read for things a kernel has no business doing.

A hit does not decide the verdict by itself (a kernel may legitimately include <cmath>);
it is recorded as a flag for review, the way JUDGE.md's defences ask: symbols that touch
the clock, signals, files, processes or threads of its own.
"""

from __future__ import annotations

import re

SUSPICIOUS = {
    "clock": r"\b(chrono|clock_gettime|gettimeofday|rdtsc|__rdtsc|time\s*\()",
    "signals": r"\b(signal|sigaction|raise|setjmp|longjmp)\s*\(",
    "files": r"\b(fopen|open|ifstream|ofstream|fstream|freopen|mmap)\s*\(",
    "process": r"\b(system|popen|fork|exec[lv]p?e?|exit|_exit|abort|getpid|kill)\s*\(",
    "threads": r"\b(std::thread|pthread_create|std::async)\b",
    "globals": r"^\s*static\s+(std::vector|float|double|int)\b[^(]*=",
}


def flags(source: str) -> list[str]:
    """Review flags for a candidate source: one short string per kind of hit."""
    found = []
    for name, pattern in SUSPICIOUS.items():
        match = re.search(pattern, source, re.MULTILINE)
        if match:
            line = source[: match.start()].count("\n") + 1
            found.append(f"{name}: '{match.group(0).strip()}' at line {line}")
    return found
