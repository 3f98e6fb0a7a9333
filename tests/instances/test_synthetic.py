import ast
from collections import Counter

from daggerlm.instances.mutations import BUG_KINDS, mutations
from daggerlm.instances.synthetic import generate, split_of
from daggerlm.instances.templates import DOMAINS


def test_deterministic_for_a_seed():
    a = generate(10, "train", seed=5)
    b = generate(10, "train", seed=5)
    assert [i.model_dump() for i in a] == [i.model_dump() for i in b]
    assert [i.instance_id for i in generate(10, "train", seed=6)] != [i.instance_id for i in a]


def test_splits_are_disjoint_by_construction():
    train = generate(150, "train", seed=1)
    evals = generate(40, "eval", seed=1) + generate(40, "eval", seed=2)
    assert not {i.instance_id for i in train} & {i.instance_id for i in evals}
    assert {i.split for i in train} == {"train"} and {i.split for i in evals} == {"eval"}


def test_one_bug_per_instance_with_regular_layout_and_schema():
    items = generate(60, "train", seed=3)
    assert set(Counter(i.bug_kind for i in items)) == set(BUG_KINDS)
    for inst in items:
        assert inst.patch.count("\n-    return ") == 1 and inst.patch.count("\n+    return ") == 1
        assert len(inst.FAIL_TO_PASS) == 2 and inst.FAIL_TO_PASS[1].endswith("_more")
        assert inst.PASS_TO_PASS and not set(inst.PASS_TO_PASS) & set(inst.FAIL_TO_PASS)
        assert "tests/" in inst.test_patch and len(inst.base_commit) == 40
        fn = inst.FAIL_TO_PASS[0].split("::test_")[1]
        assert f"`{fn}(" in inst.problem_statement
        for path, text in inst.repo_files.items():
            if path.endswith(".py"):
                ast.parse(text)


def test_mutation_kinds():
    kinds = {m.kind: m.source for m in mutations("low <= x < high")}
    assert kinds["flipped_comparison"] in ("low >= x < high", "low <= x > high")
    assert kinds["off_by_one"] in ("low < x < high", "low <= x <= high")
    assert {m.source for m in mutations("a - b")} == {"a + b", "b - a"}
    assert "sum(range(n))" in {m.source for m in mutations("sum(range(n + 1))")}
    assert "items[:n + 1]" in {m.source for m in mutations("items[:n]")}
    assert {"wrong_constant"} <= {m.kind for m in mutations("age >= 18")}


def test_every_template_has_an_observable_bug():
    from daggerlm.instances.synthetic import _pick_bug
    import random

    for fns in DOMAINS.values():
        for fn in fns:
            assert _pick_bug(fn, random.Random(0)) is not None, fn.name


def test_split_function_is_stable():
    assert split_of("abc") == split_of("abc")
    share = sum(split_of(str(i)) == "eval" for i in range(2000)) / 2000
    assert 0.15 < share < 0.25
