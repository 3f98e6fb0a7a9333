"""Procedural bugs for real library code (in the manner of SWE-smith): one small AST change.

Candidates are found with `ast` in the functions of non-test modules; a mutation rewrites only the
source segment of one node, so the rest of the file (formatting, comments) is untouched and the
gold patch (the reverse diff) is as small as the bug.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
        ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult}
OPERATORS = ("flip_comparison", "shift_constant", "swap_bool_op", "swap_arithmetic", "invert_if", "return_none",
             "remove_statement")


@dataclass(frozen=True)
class AstMutation:
    path: str
    function: str
    operator: str
    start: tuple[int, int]
    """(line, byte column) where the replaced segment starts (1-based line, as in `ast`)."""
    end: tuple[int, int]
    replacement: str

    def apply(self, source: str) -> str:
        data = source.encode()
        starts = _line_starts(data)
        a = starts[self.start[0] - 1] + self.start[1]
        b = starts[self.end[0] - 1] + self.end[1]
        return (data[:a] + self.replacement.encode() + data[b:]).decode()


def _line_starts(data: bytes) -> list[int]:
    starts, pos = [0], 0
    for line in data.splitlines(keepends=True):
        pos += len(line)
        starts.append(pos)
    return starts


def _segment(source: bytes, starts: list[int], node: ast.AST) -> str:
    a = starts[node.lineno - 1] + node.col_offset
    b = starts[node.end_lineno - 1] + node.end_col_offset
    return source[a:b].decode()


def _replacements(node: ast.AST, segment: str, parent_body: list | None) -> Iterator[tuple[str, str]]:
    """(operator, replacement text) for one node."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in FLIP:
        yield "flip_comparison", ast.unparse(ast.Compare(node.left, [FLIP[type(node.ops[0])]()], node.comparators))
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        yield "shift_constant", repr(node.value + 1)
    elif isinstance(node, ast.BoolOp):
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield "swap_bool_op", ast.unparse(ast.BoolOp(other, node.values))
    elif isinstance(node, ast.BinOp) and type(node.op) in SWAP:
        yield "swap_arithmetic", ast.unparse(ast.BinOp(node.left, SWAP[type(node.op)](), node.right))
    elif isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        yield "return_none", "return None"
    if isinstance(node, ast.If):
        yield "invert_if", f"not ({segment})"
    if parent_body is not None and len(parent_body) > 1 and isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign)) \
            and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # not a docstring
        yield "remove_statement", "pass"


def candidates(path: str, source: str) -> list[AstMutation]:
    """Every single-node mutation inside the functions of one module, in source order."""
    tree = ast.parse(source)
    original = ast.dump(tree)  # once: a module has thousands of candidates
    data = source.encode()
    starts = _line_starts(data)
    found: list[AstMutation] = []

    def visit_function(fn: ast.FunctionDef | ast.AsyncFunctionDef, qualname: str) -> None:
        bodies = {id(stmt): body for node in ast.walk(fn) for body in _bodies(node) for stmt in body}
        for node in ast.walk(fn):
            if node is fn or not hasattr(node, "lineno") or node in fn.decorator_list:
                continue
            if isinstance(node, ast.arg) or _inside(node, fn.args):
                continue
            target = node.test if isinstance(node, ast.If) else node
            for operator, replacement in _replacements(node, _segment(data, starts, target), bodies.get(id(node))):
                mutated = AstMutation(path, qualname, operator, (target.lineno, target.col_offset),
                                      (target.end_lineno, target.end_col_offset), replacement)
                try:
                    if ast.dump(ast.parse(mutated.apply(source))) != original:
                        found.append(mutated)
                except SyntaxError:
                    pass

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit_function(child, prefix + child.name)
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    walk(tree, "")
    return sorted(set(found), key=lambda m: (m.start, m.end, m.operator, m.replacement))


def _bodies(node: ast.AST) -> Iterator[list]:
    for field in ("body", "orelse", "finalbody"):
        body = getattr(node, field, None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            yield body


def _inside(node: ast.AST, args: ast.arguments) -> bool:
    """Default values of parameters are not part of the function body."""
    return any(node is d or any(node is sub for sub in ast.walk(d)) for d in [*args.defaults, *args.kw_defaults]
               if d is not None)
