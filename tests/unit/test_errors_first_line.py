"""converter.errors.first_line: a foreign exception's message as one line of ours. Pins each parameter
combination the formats use, since the messages they build are asserted elsewhere and are a user contract."""

from __future__ import annotations

from converter.errors import first_line
from converter.formats.tf.from_onnx import _first_line as tf_first_line

MULTI = ValueError("\n\n  first  line \t\n\n second\tline  \n")
COLOURED = RuntimeError("\x1b[1mWeights only\x1b[0m load failed. \n\t(1) retry")


def test_default_is_the_first_non_blank_line_stripped():  # tf/common's callers, keras/source.py
    assert first_line(MULTI) == "first  line"
    assert first_line(ValueError("x" * 500)) == "x" * 300
    assert first_line(ValueError()) == "ValueError"
    assert first_line(KeyError("k")) == "'k'"


def test_keep_trailing_space_keeps_what_ends_a_first_line_that_more_lines_follow():  # hf and torch sources
    assert first_line(MULTI, keep_trailing_space=True) == "first  line \t"
    assert first_line(ValueError("only  \n"), keep_trailing_space=True) == "only"
    assert first_line(COLOURED, keep_trailing_space=True) == "\x1b[1mWeights only\x1b[0m load failed. "
    assert first_line(ValueError(" \n "), keep_trailing_space=True) == "ValueError"


def test_join_lines_collapses_the_whole_message():  # hf/source.py
    assert first_line(MULTI, join_lines=True) == "first line second line"
    assert first_line(ValueError(), join_lines=True) == "ValueError"


def test_without_fallback_an_empty_message_stays_empty():  # onnx/runner.py
    assert first_line(MULTI, join_lines=True, fallback=False, limit=400) == "first line second line"
    assert first_line(ValueError("y " * 300), join_lines=True, fallback=False, limit=400) == "y " * 200
    assert first_line(ValueError(), join_lines=True, fallback=False, limit=400) == ""


def test_with_type_the_limit_counts_the_message_only():  # onnx/from_torch.py, onnx/from_hf.py
    assert first_line(COLOURED, join_lines=True, with_type=True, strip_ansi=True, limit=400) == \
        "RuntimeError: Weights only load failed. (1) retry"
    assert first_line(ValueError("z" * 500), join_lines=True, with_type=True, strip_ansi=True) == "ValueError: " + "z" * 300
    assert first_line(ValueError(), join_lines=True, with_type=True, strip_ansi=True) == "ValueError: "


def test_with_type_on_the_first_line():  # tfjs layers.py and keras3.py (240), graph.py (300)
    assert first_line(MULTI, with_type=True, limit=240) == "ValueError: first  line"
    assert first_line(ValueError("w" * 500), with_type=True, limit=240) == "ValueError: " + "w" * 240
    assert first_line(ValueError("\n"), with_type=True) == "ValueError: "


def test_skip_passes_over_lines_unless_all_are_skipped():
    exc = ValueError("Graph execution error:\n\nDetected at node m/d\nIncompatible shapes: [2] vs. [3]")
    assert first_line(exc, skip=lambda ln: ln.startswith(("Graph", "Detected"))) == "Incompatible shapes: [2] vs. [3]"
    assert first_line(ValueError("Graph one\nGraph two"), skip=lambda ln: ln.startswith("Graph")) == "Graph one"


def test_tensorflow_errors_name_the_useful_line_and_the_node():  # tf/from_onnx.py, tf/self_check.py
    exc = ValueError("Graph execution error:\n\nDetected at node \x1b[1mmodel/dense/MatMul\x1b[0m defined at:\n"
                     "  \u2022 File x.py\n\x1b[31mMatrix size-incompatible: In[0]: [1,4]\x1b[0m\n\t [[{{node MatMul}}]]")
    assert tf_first_line(exc) == "Matrix size-incompatible: In[0]: [1,4] (TF node model/dense/MatMul)"
    assert tf_first_line(ValueError("Graph execution error:")) == "Graph execution error:"
    assert tf_first_line(ValueError()) == "ValueError"
