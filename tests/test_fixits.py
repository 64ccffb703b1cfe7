"""The compiler's fix-its: read from a real compile log, applied only to the model's code.

MoKA applying them to a real failed build is in test_agents.py (with the judge)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from mkbench.agents.tools import fixits

CODE = """\
#include <cstddef>
struct Op { int main_as_Pool() const { return 1; } };
int f(const Op* op) {
\tint new_hidden = 2;
\treturn op->main_as_Pooling() + newHidden;
}
"""


def compile_log(path) -> subprocess.CompletedProcess:
    return subprocess.run(["g++", "-fdiagnostics-parseable-fixits", "-c", str(path), "-o", "/dev/null"],
                          capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs the host's g++")
def test_the_compilers_fixits_make_the_file_build(tmp_path):
    """Two misspellings gcc knows the answer to (a member, a local), after a tab: byte columns."""
    source = tmp_path / "candidate.cpp"
    source.write_text(CODE)
    failed = compile_log(source)
    assert failed.returncode != 0
    edits = fixits.parse(failed.stderr)
    assert [e.text for e in edits] == ["main_as_Pool", "new_hidden"]
    fixed, applied = fixits.apply(CODE, edits)
    assert applied == edits and "op->main_as_Pool() + new_hidden;" in fixed
    source.write_text(fixed)
    assert compile_log(source).returncode == 0


def test_only_fixits_in_the_models_code_are_applied():
    """A scaffold's hole at file lines 10-11: an edit there lands on the code's own lines, one in the
    scaffold is left alone, a second edit over the same bytes is dropped, escapes are decoded."""
    code = "y = fab(x);\nlabel = name;"
    log = "\n".join([
        'candidate.cpp:10:5: error: ‘fab’ was not declared in this scope; did you mean ‘fabs’?',
        'fix-it:"candidate.cpp":{10:5-10:8}:"fabs"',
        'fix-it:"candidate.cpp":{10:5-10:8}:"fabsf"',  # the same bytes again: the first one wins
        'fix-it:"candidate.cpp":{11:9-11:13}:"\\"caf\\303\\251\\""',
        'fix-it:"candidate.cpp":{1:1-1:1}:"#include <cmath>\\n"',  # the scaffold's line: not the model's
        'fix-it:"other.cpp":{10:1-10:2}:"z"',
    ])
    edits = fixits.parse(log)
    assert len(edits) == 4
    fixed, applied = fixits.apply(code, edits, lines=(10, 11))
    assert fixed == 'y = fabs(x);\nlabel = "café";'
    assert [e.start for e in applied] == [(10, 5), (11, 9)]
    assert fixits.apply(code, [], lines=(10, 11)) == (code, [])
