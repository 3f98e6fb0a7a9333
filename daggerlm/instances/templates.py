"""The function library of the synthetic family.

Each template is a one-line function whose correct body a tiny model can memorise from its name;
bugs are mutations of that body, so "fix the bug" means "restore the body the name implies".
Arguments are drawn per parameter name, so every call site is small and regular.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FunctionTemplate:
    name: str
    params: tuple[str, ...]
    body: str

    @property
    def signature(self) -> str:
        return f"def {self.name}({', '.join(self.params)}):"


def _t(name: str, params: str, body: str) -> FunctionTemplate:
    return FunctionTemplate(name, tuple(p.strip() for p in params.split(",") if p.strip()), body)


DOMAINS: dict[str, list[FunctionTemplate]] = {
    "geometry": [
        _t("area", "width, height", "width * height"),
        _t("perimeter", "width, height", "2 * (width + height)"),
        _t("is_square", "width, height", "width == height"),
        _t("cube_volume", "side", "side ** 3"),
        _t("fits_inside", "inner, outer", "inner < outer"),
    ],
    "arith": [
        _t("double", "x", "x * 2"),
        _t("halve", "x", "x // 2"),
        _t("difference", "a, b", "a - b"),
        _t("remainder", "a, b", "a % b"),
        _t("power", "base, exp", "base ** exp"),
        _t("next_multiple", "n, k", "(n // k + 1) * k"),
    ],
    "checks": [
        _t("is_even", "n", "n % 2 == 0"),
        _t("is_positive", "n", "n > 0"),
        _t("is_adult", "age", "age >= 18"),
        _t("in_range", "x, low, high", "low <= x < high"),
        _t("is_leap", "year", "year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)"),
    ],
    "seqs": [
        _t("last_index", "items", "len(items) - 1"),
        _t("first_n", "items, n", "items[:n]"),
        _t("drop_n", "items, n", "items[n:]"),
        _t("count_above", "items, limit", "len([v for v in items if v > limit])"),
        _t("sum_upto", "n", "sum(range(n + 1))"),
        _t("middle", "items", "items[len(items) // 2]"),
    ],
    "money": [
        _t("apply_discount", "price, percent", "price - price * percent // 100"),
        _t("add_tax", "price, rate", "price + price * rate // 100"),
        _t("split_bill", "total, people", "total // people"),
        _t("change_due", "paid, price", "paid - price"),
        _t("can_afford", "balance, price", "balance >= price"),
    ],
    "clock": [
        _t("to_seconds", "minutes", "minutes * 60"),
        _t("to_minutes", "hours", "hours * 60"),
        _t("seconds_left", "seconds", "60 - seconds % 60"),
        _t("days_in", "weeks", "weeks * 7"),
        _t("hours_between", "start, end", "end - start"),
    ],
}

PACKAGES = ["toolbox", "mathkit", "ledger", "helpers", "gizmo", "widgets", "basics", "kit",
            "utilbox", "numlib", "tinylib", "corelib"]


def _ints(lo: int, hi: int) -> Callable[[random.Random], int]:
    return lambda rng: rng.randint(lo, hi)


def _list(rng: random.Random) -> list[int]:
    return [rng.randint(0, 9) for _ in range(rng.randint(3, 6))]


ARG_GENERATORS: dict[str, Callable[[random.Random], object]] = {
    "items": _list,
    "age": _ints(0, 40),
    "year": lambda rng: rng.choice([1900, 1996, 2000, 2023, 2024, 2100]),
    "percent": lambda rng: rng.choice([10, 20, 25, 50]),
    "rate": lambda rng: rng.choice([5, 10, 20]),
    "price": lambda rng: rng.choice([20, 40, 60, 80, 100]),
    "people": _ints(2, 5),
    "k": _ints(2, 5),
    "b": _ints(2, 7),
    "exp": _ints(2, 3),
    "n": _ints(1, 9),
    "seconds": _ints(1, 200),
    "low": _ints(1, 4),
    "high": _ints(6, 9),
    "x": _ints(1, 9),
}


def draw_args(template: FunctionTemplate, rng: random.Random) -> tuple:
    return tuple(ARG_GENERATORS.get(p, _ints(1, 12))(rng) for p in template.params)
