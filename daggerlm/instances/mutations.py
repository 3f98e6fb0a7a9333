"""Single-point mutations of a Python expression, by bug kind.

Used by the synthetic family (on one-line bodies); the kinds mirror SWE-smith's procedural bugs.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterator
from dataclasses import dataclass

FLIP = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
BOUNDARY = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
OPERATOR = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv,
            ast.Pow: ast.Mult, ast.And: ast.Or, ast.Or: ast.And}
NON_COMMUTATIVE = (ast.Sub, ast.FloorDiv, ast.Mod, ast.Pow, ast.Div)
BUG_KINDS = ("wrong_constant", "flipped_comparison", "off_by_one", "wrong_operator", "swapped_arguments")


@dataclass(frozen=True)
class Mutation:
    kind: str
    source: str
    """The mutated expression."""


def _swap_operands(node: ast.BinOp) -> None:
    node.left, node.right = node.right, node.left


def _variants(tree: ast.Expression) -> Iterator[tuple[str, ast.Expression]]:
    """Every single-point mutation of `tree`, as (kind, mutated tree)."""
    nodes = list(ast.walk(tree))
    for index, node in enumerate(nodes):

        def mutate(edit) -> ast.Expression:
            clone = copy.deepcopy(tree)
            edit(list(ast.walk(clone))[index])
            return clone

        if isinstance(node, ast.Constant) and type(node.value) is int:
            for delta in (1, -1):
                if node.value + delta > 0:
                    yield "wrong_constant", mutate(lambda n, d=delta: setattr(n, "value", n.value + d))
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for table, kind in ((FLIP, "flipped_comparison"), (BOUNDARY, "off_by_one")):
                    if type(op) in table:
                        yield kind, mutate(lambda n, i=i, t=table: n.ops.__setitem__(i, t[type(n.ops[i])]()))
        if isinstance(node, ast.BinOp):
            if type(node.op) in OPERATOR:
                yield "wrong_operator", mutate(lambda n: setattr(n, "op", OPERATOR[type(n.op)]()))
            if isinstance(node.op, NON_COMMUTATIVE):
                yield "swapped_arguments", mutate(_swap_operands)
        if isinstance(node, ast.BoolOp) and type(node.op) in OPERATOR:
            yield "wrong_operator", mutate(lambda n: setattr(n, "op", OPERATOR[type(n.op)]()))
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            yield "swapped_arguments", mutate(lambda n: n.args.__setitem__(slice(0, 2), n.args[1::-1][:2]))
        if isinstance(node, ast.Slice):
            for field in ("lower", "upper"):
                if getattr(node, field) is not None:
                    yield "off_by_one", mutate(
                        lambda n, f=field: setattr(n, f, ast.BinOp(getattr(n, f), ast.Add(), ast.Constant(1))))


def _drop_plus_one(tree: ast.Expression) -> Iterator[ast.Expression]:
    """`x + 1` -> `x` and `x - 1` -> `x`: the classic off-by-one."""
    nodes = list(ast.walk(tree))
    for index, node in enumerate(nodes):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) \
                and isinstance(node.right, ast.Constant) and node.right.value == 1:
            clone = copy.deepcopy(tree)
            target = list(ast.walk(clone))[index]

            class Replace(ast.NodeTransformer):
                def visit_BinOp(self, n: ast.BinOp) -> ast.AST:
                    return n.left if n is target else self.generic_visit(n)

            yield Replace().visit(clone)


def mutations(expression: str) -> list[Mutation]:
    """All distinct single-point mutations of `expression`, in a stable order."""
    tree = ast.parse(expression, mode="eval")
    seen = {ast.unparse(tree)}
    out = []
    candidates = list(_variants(tree)) + [("off_by_one", t) for t in _drop_plus_one(tree)]
    for kind, mutated in candidates:
        src = ast.unparse(mutated)
        if src not in seen:
            seen.add(src)
            out.append(Mutation(kind, src))
    return out
