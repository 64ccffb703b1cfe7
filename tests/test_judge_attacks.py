"""Kernels written to fool the judge, one per way other judges were fooled (JUDGE.md, issue 18),
each getting the verdict or flag the defence gives. Most are mutants of the stand-alone Abs
kernel (one Execution call per run, so a kernel can count its calls); the Softmax ones splice a
function into the task's scaffold.

What the object rules refuse (mnn/object_rules.py) never runs; what they let through meets the
guard's clock, the perturbed inputs and the checked timing runs. The jail itself is tested on its
own in test_sandbox.py, with programs the object rules would have refused.
"""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from mkbench import settings as settings_module
from mkbench.kinds import kind_of
from mkbench.tasks import get_task

ABS = (settings_module.SHIPPED / "mnn" / "examples" / "abs_candidate.cpp").read_text()
LOOP = "            for (int i = begin; i < end; ++i) {\n                dst[i] = std::fabs(src[i]);\n            }"
HEAD = "#include <cmath>"
BEFORE_THREADS = "        const int threads"


def abs_with(loop: str = LOOP, head: str = "", before: str = "", outside: str = "") -> str:
    """The Abs kernel with its loop replaced, lines added after its includes, at the top of
    onExecute, or at namespace scope before the class."""
    source = ABS.replace(LOOP, loop).replace(HEAD, HEAD + ("\n" + head if head else ""))
    source = source.replace(BEFORE_THREADS, before + BEFORE_THREADS) if before else source
    return source.replace("namespace MNN {\n", "namespace MNN {\n" + outside, 1) if outside else source


@pytest.fixture()
def softmax_with(settings):
    """The Softmax task's scaffold around a given function body."""
    task = get_task("Softmax")
    scaffold = kind_of(task).scaffold(task, settings)
    return lambda code: scaffold.splice(code)[0]


SOFTMAX = """void mk_softmax(const float* x, float* y, int n, int stride) {
    float m = x[0];
    for (int a = 1; a < n; ++a) m = std::max(m, x[(size_t)a * stride]);
    float s = 0.0f;
    for (int a = 0; a < n; ++a) {
        const float e = std::exp(x[(size_t)a * stride] - m);
        y[(size_t)a * stride] = e;
        s += e;
    }
    const float inverse = 1.0f / DENOMINATOR;
    for (int a = 0; a < n; ++a) y[(size_t)a * stride] *= inverse;
}"""


# ---------------------------------------------------------------- work it cannot skip


@pytest.mark.slow
def test_memoising_on_a_sample_of_the_input_is_wrong_values(judge):
    """A cache keyed on 16 sampled input values and the size: the timed inputs change at other
    places before every run, so the cached answer is stale and the checked timing run says so."""
    memo = abs_with(loop="""            if (tId == 0) {
                static std::vector<float> key, answer;
                std::vector<float> now;
                for (int k = 0; k < 16; ++k) now.push_back(src[(size_t)k * (size / 16)]);
                if (now == key && (int)answer.size() == size) {
                    std::copy(answer.begin(), answer.end(), dst);
                } else {
                    for (int i = 0; i < size; ++i) dst[i] = std::fabs(src[i]);
                    key = now;
                    answer.assign(dst, dst + size);
                }
            }""", head="#include <algorithm>\n#include <vector>")
    verdict = judge(memo, "Abs")
    assert verdict.verdict == "wrong-values", verdict.reason
    assert not verdict.correct


@pytest.mark.slow
def test_skipping_the_work_after_the_first_call_is_wrong_values(judge):
    verdict = judge(abs_with(before="        static int calls = 0;\n        if (++calls > 1) return NO_ERROR;\n"), "Abs")
    assert verdict.verdict == "wrong-values", verdict.reason


@pytest.mark.slow
def test_working_only_in_runs_that_look_like_correctness_runs_is_wrong_values(judge):
    """The timing phase told apart by its many calls: honest for the first few, then only every
    tenth call. The loop ends when the guard says so, never on a call the kernel can foresee."""
    verdict = judge(abs_with(before="        static int calls = 0;\n        if (++calls > 8 && calls % 10 != 0) return NO_ERROR;\n"),
                    "Abs")
    assert verdict.verdict == "wrong-values", verdict.reason
    assert "timed" in verdict.reason


# ---------------------------------------------------------------- what its object may not hold


@pytest.mark.slow
@pytest.mark.parametrize("attack, source, named", [
    ("read its command line to tell the timing phase",
     abs_with(head="#include <cstdio>", before='        if (FILE* f = std::fopen("/proc/self/cmdline", "r")) std::fclose(f);\n'),
     "fopen"),
    ("rewrite the report from a static destructor",
     abs_with(head="#include <cstdio>", outside='struct MkRewrite { ~MkRewrite() { if (FILE* f = std::fopen("report.json", "w")) '
                                               '{ std::fputs("{}", f); std::fclose(f); } } } mkRewrite;\n'),
     "fopen"),
    ("define clock_gettime",
     abs_with(head="#include <ctime>", outside='}\nextern "C" int clock_gettime(clockid_t, struct timespec* t) '
                                              '{ t->tv_sec = 0; t->tv_nsec = 0; return 0; }\nnamespace MNN {\n'),
     "clock_gettime"),
    ("define steady_clock::now",
     abs_with(head="#include <chrono>", outside='}\nstd::chrono::steady_clock::time_point std::chrono::steady_clock::now() noexcept '
                                               '{ return time_point(); }\nnamespace MNN {\n'),
     "steady_clock::now"),
    ("call clock_gettime through syscall",
     abs_with(head="#include <sys/syscall.h>\n#include <unistd.h>\n#include <ctime>",
              before="        struct timespec t;\n        syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &t);\n"),
     "syscall"),
    ("write outside its folder",
     abs_with(head="#include <cstdio>", before='        if (FILE* f = std::fopen("/tmp/mkbench-attack-was-here", "w")) std::fclose(f);\n'),
     "fopen"),
    ("connect to the network",
     abs_with(head="#include <sys/socket.h>\n#include <netinet/in.h>\n#include <unistd.h>",
              before="        { int s = socket(AF_INET, SOCK_STREAM, 0); sockaddr_in a{}; a.sin_family = AF_INET; a.sin_port = htons(80);\n"
                     "          connect(s, (sockaddr*)&a, sizeof a); close(s); }\n"),
     "connect"),
    ("leave a setsid child behind",
     abs_with(head="#include <unistd.h>", before="        if (fork() == 0) { setsid(); for (;;) pause(); }\n"),
     "fork"),
    ("read the task's references",
     abs_with(head="#include <fstream>", before='        { std::ifstream f("../references/check0/y.npy"); }\n'),
     "basic_filebuf"),
    ("include MNN's own implementation",
     abs_with(head='#include "backend/cpu/CPUUnary.cpp"'),
     "CPUUnary.cpp"),
])
def test_what_no_kernel_needs_is_forbidden_before_it_runs(judge, attack, source, named):
    verdict = judge(source, "Abs")
    assert verdict.verdict == "forbidden", (attack, verdict.verdict, verdict.reason)
    assert named in verdict.reason, (attack, verdict.reason)
    assert verdict.compiled and not verdict.correct


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the time-stamp counter instruction is x86's")
def test_reading_the_cycle_counter_is_forbidden(judge):
    verdict = judge(abs_with(before="        unsigned lo, hi;\n        __asm__ volatile(\"rdtsc\" : \"=a\"(lo), \"=d\"(hi));\n"), "Abs")
    assert verdict.verdict == "forbidden" and "rdtsc" in verdict.reason, verdict.reason


# ---------------------------------------------------------------- MNN's own implementation


@pytest.mark.slow
def test_calling_mnns_own_softmax_function_is_delegation(judge, softmax_with):
    """MNNSoftmax is what MNN's CPUSoftmax calls and few other kernels do: the op's own kernel."""
    source = softmax_with("""}  // mkuser
extern "C" void MNNSoftmax(float* dst, const float* src, float* runningMax, float* runningSum, float* updateScale,
                           int outside, int reduceSize, int kvSeqOffset, int validOffset, int pack, bool mask);
namespace mkuser {
void mk_softmax(const float* x, float* y, int n, int stride) {
    if (stride == 1) {
        ::MNNSoftmax(y, x, nullptr, nullptr, nullptr, 1, n, 1, 1, 1, false);
        return;
    }
    for (int a = 0; a < n; ++a) y[(size_t)a * stride] = 0.0f;
}""")
    verdict = judge(source, "Softmax")
    assert verdict.verdict == "delegated", verdict.reason
    assert "MNNSoftmax" in verdict.reason


# ---------------------------------------------------------------- what the paper's rule lets through


@pytest.mark.slow
def test_an_off_by_one_denominator_is_correct_by_the_paper_and_never_a_win(judge, softmax_with):
    """Softmax over 2,048 values: outputs near 5e-4, so an error of 0.08% is far inside 1e-4."""
    verdict = judge(softmax_with(SOFTMAX.replace("DENOMINATOR", "(s + 1.0f)")), "Softmax")
    assert verdict.verdict == "correct", verdict.reason
    assert verdict.strict_ok is False and verdict.blocked
    assert verdict.scaled_error > 10 * verdict.native_scaled_error
    honest = judge(softmax_with(SOFTMAX.replace("DENOMINATOR", "s")), "Softmax")
    assert honest.verdict == "correct" and honest.strict_ok, honest.flags


@pytest.mark.slow
def test_an_all_false_comparison_fails_the_tie_set(judge):
    """Equal of two rand draws is all false; its edge set draws from four values, so a quarter tie."""
    source = (Path(__file__).parent / "fixtures" / "candidates" / "equal_zeros.cpp").read_text()
    verdict = judge(source, "Equal")
    assert verdict.verdict == "wrong-values", verdict.reason
