"""The Repository Tree Builder over the real pinned MNN tree: symbols, documents, the hidden native kernel."""

from __future__ import annotations

import json

import pytest
from mkbench.agents.tools.tree import HIDDEN_NOTE, TreeIndex


@pytest.fixture(scope="module")
def index(mnn_root) -> TreeIndex:
    return TreeIndex.build(mnn_root)


@pytest.fixture(scope="module")
def unary(index) -> TreeIndex:
    return index.for_targets([("UnaryOp", "ABS")])


def test_classes_show_their_members_compactly(unary):
    text = unary.describe("Execution")
    assert "source/core/Execution.hpp" in text
    assert "Execution(Backend *backend)" in text and "Execution() = delete;" in text
    assert "virtual ErrorCode onExecute(" in text
    assert "{ ... }" in text  # inline bodies are elided


def test_nested_class_methods_macros_and_flatbuffers_tables(unary):
    assert "virtual Execution* onCreate(" in unary.describe("CPUBackend::Creator")
    assert "size_t getTensorSize(const Tensor* tensor, bool multiBytes = false) const;" in unary.describe("CPUBackend::getTensorSize")
    assert "#define REGISTER_CPU_OP_CREATOR(name, opType)" in unary.describe("REGISTER_CPU_OP_CREATOR")
    table = unary.describe("ReductionParam")  # a flatbuffers table, export macros and all
    assert "const flatbuffers::Vector<int32_t> *dim() const" in table and "keepDims()" in table
    assert "Verify" not in table  # flatbuffers plumbing is left out
    assert "UnaryOpOperation_ABS = 0" in unary.describe("UnaryOpOperation")


def test_unknown_names_get_close_real_ones(unary):
    text = unary.describe("elementCount")
    assert "no such name in MNN" in text and "elementSize" in text
    assert unary.members_like("Tensor", "elementCount")[0].short == "elementSize"


def test_the_task_own_native_kernel_is_never_shown(index, unary):
    # Visible to a task on another op type, hidden to a UnaryOp task: files, classes and the unary functions.
    assert index.lookup("CPUUnary") and index.lookup("MNNSelectUnaryFunctionForFloat")
    assert unary.describe("CPUUnary").endswith(HIDDEN_NOTE)
    assert unary.describe("MNNSelectUnaryFunctionForFloat").endswith(HIDDEN_NOTE)
    assert not unary.lookup("MNNExp")
    assert HIDDEN_NOTE in unary.excerpt("source/backend/cpu/CPUUnary.cpp", 1, 40)
    assert unary.context_for("source/backend/cpu/CPUUnary.cpp", 30)["code"] == HIDDEN_NOTE
    exp = next(s for s in index.symbols if s.short == "MNNExp" and s.defined)  # in a file all ops share
    assert HIDDEN_NOTE in unary.excerpt(exp.file, exp.line, exp.end_line)
    assert "source/backend/cpu/UnaryUtils.hpp" not in unary.find_file("UnaryUtils.hpp")
    # Another task's view still shows them.
    assert "CPUUnary" in index.for_targets([("Softmax", None)]).describe("CPUUnary")
    assert index.for_targets([("Softmax", None)]).describe("CPUSoftmax").endswith(HIDDEN_NOTE)


def test_enclosing_function_or_class_of_a_line(unary):
    # A one-line declaration says less than its class: the class is given.
    context = unary.context_for("source/core/Execution.hpp", 30)
    assert context["symbol"] == "MNN::Execution" and "onExecute" in context["code"]
    line = unary.lookup("CPUBackend::getTensorSize")[-1]  # the definition in CPUBackend.cpp
    context = unary.context_for(str(unary.root / line.file), line.line + 2)
    assert context["symbol"] == "MNN::CPUBackend::getTensorSize"


def test_documents_are_searched_by_words(unary):
    text = unary.search_docs("add a new operator")
    assert "skills/" in text or "docs/" in text or "AGENTS.md" in text


def test_the_index_is_cached_under_the_cache_dir(mkbench_home, mnn_settings):
    first = TreeIndex.load(mnn_settings)
    files = list((mkbench_home / "cache" / "tree-index").glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert len(data["symbols"]) == len(first.symbols) > 5000
    assert TreeIndex.load(mnn_settings) is first  # the same process reuses it


def test_the_names_whole_file_decoding_may_write(index):
    """What llm/identifiers.py keeps a whole-file kernel to: the tree's own names after each prefix."""
    names = index.api_names()
    assert {"UnaryOp", "BinaryOp", "Pooling", "Convolution"} <= names["OpType_"] and "Pooling2D" not in names["OpType_"]
    assert {"DT_FLOAT", "DT_INT32"} <= names["DataType_"] and "FLOAT32" not in names["DataType_"]
    assert {"Pool", "UnaryOp", "Axis"} <= names["main_as_"] and "Pooling" not in names["main_as_"]
    assert {"Tensor", "Backend", "CPUBackend", "Execution", "Express"} <= names["MNN::"]
