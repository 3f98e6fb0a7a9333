"""Single-node mutations of real-looking code: each operator, only its segment changes, never a docstring."""

import ast
import difflib

from daggerlm.instances.ast_mutations import OPERATORS, candidates

SOURCE = '''"""Module docstring."""
import math


def clamp(x, lo=0, hi=10):
    """Keep x in [lo, hi]."""
    if x < lo:  # below
        return lo
    total = x + 1
    if lo >= 0 and hi > lo:
        total -= 1
    return min(total, hi)


class Box:
    def area(self, w, h):
        log(w)
        return w * h // 1
'''


def _changed_lines(before, after):
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_every_operator_changes_one_node_and_keeps_the_rest():
    found = candidates("pkg/mod.py", SOURCE)
    assert {m.operator for m in found} == set(OPERATORS)
    for m in found:
        out = m.apply(SOURCE)
        ast.parse(out)
        changed = _changed_lines(SOURCE, out)
        assert len(changed) == 2, (m, changed)  # one line out, one line in
        assert changed[0].startswith("-") and changed[1].startswith("+")
        assert "# below" in out and '"""Keep x in [lo, hi]."""' in out
    by_op = {(m.operator, m.function, m.replacement) for m in found}
    assert ("flip_comparison", "clamp", "x >= lo") in by_op
    assert ("swap_bool_op", "clamp", "lo >= 0 or hi > lo") in by_op
    assert ("invert_if", "clamp", "not (x < lo)") in by_op
    assert ("return_none", "Box.area", "return None") in by_op
    assert ("remove_statement", "Box.area", "pass") in by_op
    assert ("swap_arithmetic", "Box.area", "w * h * 1") in by_op
    assert ("shift_constant", "clamp", "2") in by_op


def test_defaults_module_code_and_docstrings_are_not_mutated():
    found = candidates("pkg/mod.py", SOURCE)
    lines = {m.start[0] for m in found}
    assert 5 not in lines  # the signature's defaults
    assert 1 not in lines and 2 not in lines and 6 not in lines  # module docstring, import, function docstring
    assert candidates("pkg/mod.py", SOURCE) == found  # deterministic order
