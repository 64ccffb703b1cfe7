"""The Error Extractor on real g++ logs of MNN candidates (recorded in fixtures, and compiled live)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mkbench.agents.tools import errors
from mkbench.kinds import kind_of
from mkbench.agents.tools.tree import TreeIndex
from mkbench.tasks import get_task

LOGS = Path(__file__).parent / "fixtures" / "agents" / "logs"


@pytest.fixture(scope="module")
def index(mnn_root) -> TreeIndex:
    return TreeIndex.build(mnn_root).for_targets([("UnaryOp", "ABS")])


def log(name: str, index: TreeIndex) -> str:
    """A recorded log, with the MNN tree's path as on this machine."""
    return (LOGS / name).read_text().replace("{MNN}", str(index.root))


def test_parse_groups_notes_with_their_error():
    found, others = errors.parse(
        "candidate.cpp: In constructor ‘MNN::A::A()’:\n"
        "candidate.cpp:8:13: error: use of deleted function ‘MNN::Execution::Execution()’\n"
        "    8 |     A() {}\n"
        "/x/source/core/Execution.hpp:30:5: note: declared here\n"
        "/usr/bin/ld: candidate.o: undefined reference to `foo()'\n"
        "mkbench: the candidate registers no creator\n")
    assert len(found) == 1 and found[0].notes == (("/x/source/core/Execution.hpp", 30, "declared here"),)
    assert found[0].function == "‘MNN::A::A()’"
    assert len(others) == 2


def test_whole_file_errors_are_split_local_and_cross_file(index):
    source = (LOGS / "whole_file_candidate.cpp").read_text()
    report = errors.extract(log("whole_file.log", index), source, index)
    as_dict = report.to_dict()
    assert set(as_dict) == {"local_error", "crossfile_error", "other_error"}
    cross = {e["message"]: e for e in as_dict["crossfile_error"]}
    local = {e["message"] for e in as_dict["local_error"]}
    # A deleted MNN constructor: cross-file, with the whole Execution class from MNN's source.
    deleted = next(e for m, e in cross.items() if "deleted function" in m)
    assert deleted["line"] == 8 and ">   8 |     MyAbs() {}" in deleted["context"]
    assert deleted["mnn_source"]["symbol"] == "MNN::Execution" and "Execution(Backend *backend)" in deleted["mnn_source"]["code"]
    # A hallucinated Tensor method: cross-file, with the real members that look like it.
    member = next(e for m, e in cross.items() if "elementCount" in m)
    assert "elementSize" in member["mnn_source"]["code"]
    # The candidate's own constructor mismatch and an invented error code: local.
    assert any("no matching function for call to" in m for m in local)
    assert any("SUCCESS" in m for m in local)
    assert report.first()["line"] == 8  # the order the compiler gave
    assert json.loads(report.render())["crossfile_error"]


def test_without_the_tree_nothing_is_resolved(index):
    source = (LOGS / "whole_file_candidate.cpp").read_text()
    report = errors.extract(log("whole_file.log", index), source, None)
    assert report.crossfile_error and not any("mnn_source" in e for e in report.crossfile_error)


def test_scaffolded_lines_count_from_the_model_code(index, settings):
    task = get_task("Abs")
    scaffold = kind_of(task).scaffold(task, settings)
    code = (LOGS / "scaffolded_code.cpp").read_text()
    source, region = scaffold.splice(code)
    report = errors.extract(log("scaffolded.log", index), source, index, region)
    first = report.first()
    assert first["file"] == "your code" and first["line"] == 3
    assert ">   3 |         y[i] = fabsf(x[i]) + undefined_scale;" in first["context"]
    assert "void mk_unary_abs" in first["context"] and "#include" not in first["context"]  # only the model's lines
    assert "undefined_scale" in report.render(first_only=True)


def test_an_error_in_the_scaffold_points_at_the_model_code(index, settings):
    task = get_task("Abs")
    scaffold = kind_of(task).scaffold(task, settings)
    source, region = scaffold.splice((LOGS / "scaffold_call_code.cpp").read_text())
    first = errors.extract(log("scaffold_call.log", index), source, index, region).first()
    assert first["file"] == "scaffold" and "mk_unary_abs(x, y, n)" in first["context"]
    assert first["notes"] == ["your code line 1: initializing argument 1 of ‘void mkuser::mk_unary_abs(float*, float*, size_t)’"]


def test_missing_header_and_judge_findings(index):
    report = errors.extract("candidate.cpp:4:10: fatal error: backend/cpu/CPUBackends.hpp: No such file or directory\n",
                            "\n\n\n#include \"backend/cpu/CPUBackends.hpp\"\n", index)
    assert report.crossfile_error[0]["mnn_source"]["code"] == "MNN 3.6.1 has no header of that name"
    report = errors.extract("candidate.cpp:4:10: fatal error: CPUBackend.hpp: No such file or directory\n", "", index)
    assert "source/backend/cpu/CPUBackend.hpp" in report.crossfile_error[0]["mnn_source"]["code"]
    report = errors.extract("mkbench: the candidate registers no creator: use REGISTER_CPU_OP_CREATOR(YourCreator, OpType_X)", "", index)
    assert report.other_error and report.first()["message"].startswith("mkbench: the candidate registers no creator")
    report = errors.extract("mkbench lint: do not write #include", "", index)  # a lint rejection reads like an error
    assert report.first()["message"] == "mkbench lint: do not write #include"


@pytest.mark.slow
def test_a_live_compile(index, mnn_settings):
    """A candidate compiled now, with MNN's own flags, gives what the recorded logs give."""
    from mkbench.kinds.cpu_execution import REGISTRATION
    from mkbench.mnn import inject

    source = (LOGS / "whole_file_candidate.cpp").read_text()
    built = inject.build_candidate(source, [("UnaryOp", "ABS")], "host", "errors-test", mnn_settings, REGISTRATION)
    assert not built.ok
    report = errors.extract(built.compiler_output, source, index)
    assert any("elementCount" in e["message"] for e in report.crossfile_error)
    assert any("SUCCESS" in e["message"] for e in report.local_error)


def test_misspelt_mnn_names_and_missing_standard_headers(index):
    log = ("candidate.cpp:3:48: error: ‘UnaryOpOperation_Abs’ was not declared in this scope; did you mean ‘UnaryOpOperation_ABS’?\n"
           "candidate.cpp:4:10: error: ‘fabs’ was not declared in this scope; did you mean ‘labs’?\n")
    report = errors.extract(log, "\n" * 8, index)
    misspelt, standard = report.ordered
    assert misspelt in report.crossfile_error and "UnaryOpOperation_ABS = 0" in misspelt["mnn_source"]["code"]
    assert standard in report.local_error and standard["hint"] == "declared in <cmath>"


def test_a_missing_member_of_a_const_struct(index):
    report = errors.extract("candidate.cpp:3:17: error: ‘const struct MNN::Op’ has no member named ‘main_as_Activation’\n",
                            "\n" * 8, index)
    assert "main_as_" in report.crossfile_error[0]["mnn_source"]["code"]
