"""The oracle teacher: a scripted privileged expert.

It sees the gold patch and the environment snapshot and returns the right next action from any
state, including states a bad student made. It is a pure function of (instance, message history,
snapshot), so any recorded state can be labeled after the fact. The procedure:

    worktree differs from base and from base+gold  -> run the tests if not run since the last edit,
                                                      else rewrite the fix line if only that line is
                                                      wrong (one step to the fix; not with reshow),
                                                      else undo the changes
    tests never run (retest: since the undo)        -> run the tests
    buggy code never seen (reshow: since the undo)  -> show the buggy function
    worktree at base                                -> apply the fix
    worktree at base+gold, last test run not green  -> run the tests
    otherwise                                       -> submit
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath

from unidiff import PatchSet

from daggerlm.actions import (SUBMIT_MARKER, UNDO_COMMAND, last_test_since_edit, observation_returncode,
                                   render_response, turns_of)
from daggerlm.instances.schema import Instance
from daggerlm.policies.base import Completion, PolicyRequest, register

_DIFF_HEADER = re.compile(r"^diff --git a/(.*) b/(.*)$")
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)\s*\(")


def normalize_diff(diff: str) -> str:
    """A diff without its `index` lines and trailing blank lines, so equal changes compare equal."""
    return "\n".join(line for line in diff.strip().splitlines() if not line.startswith("index "))


@dataclass(frozen=True)
class GoldFix:
    """What the oracle knows about the gold patch."""

    file: str
    line: int | None
    """Line number of the single line to rewrite, when the patch is a one-line change."""
    old: str
    new: str
    function: str | None
    def_line: int | None


@cache
def gold_fix(patch: str) -> GoldFix:
    hunks = [(pf, h) for pf in PatchSet(patch) for h in pf]
    pf, hunk = hunks[0]
    removed = [ln for ln in hunk if ln.is_removed]
    added = [ln for ln in hunk if ln.is_added]
    function = def_line = None
    for ln in hunk:
        if ln.is_added:
            continue
        if removed and ln.source_line_no and ln.source_line_no >= removed[0].source_line_no:
            break
        if m := _DEF.match(ln.value):
            function, def_line = m.group(1), ln.source_line_no
    one_line = len(hunks) == 1 and len(removed) == 1 and len(added) == 1
    new = added[0].value.rstrip("\n") if added else ""
    if one_line and ("'" in new or "\\" in new):
        one_line = False  # not expressible in a single-quoted sed script
    return GoldFix(file=pf.path, line=removed[0].source_line_no if one_line else None,
                   old=removed[0].value.strip() if removed else "", new=new, function=function, def_line=def_line)


def changed_paths(diff: str) -> tuple[list[str], list[str]]:
    """(tracked paths to restore, untracked paths to delete) of a `git diff` from base."""
    restore, delete = [], []
    blocks = re.split(r"(?m)^(?=diff --git )", diff)
    for block in blocks:
        lines = block.splitlines()
        if not lines or not (m := _DIFF_HEADER.match(lines[0])):
            continue
        a, b = m.groups()
        if any(ln.startswith("new file mode") for ln in lines[1:6]):
            delete.append(b)
        elif any(ln.startswith("rename from") for ln in lines[1:6]):
            restore.append(a)
            delete.append(b)
        else:
            restore.append(a)
    return restore, delete


def only_fix_line_changed(diff: str, fix: GoldFix) -> bool:
    """Whether `diff` (from base) rewrites the fix's line and nothing else, so that the fix command
    applied on top of it gives exactly base+gold."""
    if fix.line is None or not diff.strip():
        return False
    try:
        files = PatchSet(diff)
    except Exception:  # noqa: BLE001 - unidiff raises several types on diffs it cannot parse
        return False
    if len(files) != 1 or files[0].path != fix.file or len(files[0]) != 1:
        return False
    hunk = files[0][0]
    removed = [ln for ln in hunk if ln.is_removed]
    return len(removed) == 1 and len([ln for ln in hunk if ln.is_added]) == 1 and removed[0].source_line_no == fix.line


def _after_last_undo(turns: list[tuple[str, str]]) -> int:
    """Index of the first turn after the last undo (0 if none)."""
    return max((n + 1 for n, (action, _) in enumerate(turns) if UNDO_COMMAND.search(action)), default=0)


def _quote(path: str) -> str:
    return path if re.fullmatch(r"[\w./-]+", path) else "'" + path.replace("'", "'\\''") + "'"


UNDO_KINDS = ("paths", "all")


class Oracle:
    """Privileged scripted expert; deterministic, so its identity needs no sampling parameters.

    `undo` is how it takes back a wrong change: `paths` names each changed file (`git checkout --
    ./a.py`: a student must copy the path from the history), `all` resets the whole worktree with
    one constant command (`git reset -q --hard && git clean -fdq`: nothing to copy). With `reshow`
    it shows the buggy function again after an undo, so the fix that follows copies from the last
    observation, as in a clean episode, not from one turns back; for the same reason it then undoes
    a wrong fix line too, rather than rewriting it from the code shown before the failing run."""

    version = "oracle/v6"  # v6: with reshow, a wrong fix line is undone; the version keys cached labels

    def __init__(self, undo: str = "paths", reshow: bool = False, retest: bool = False) -> None:
        if undo not in UNDO_KINDS:
            raise ValueError(f"oracle undo: expected one of {', '.join(UNDO_KINDS)}, got {undo!r}")
        self.undo, self.reshow, self.retest = undo, reshow, retest
        self.identity = (self.version + (f"+undo-{undo}" if undo != "paths" else "")
                         + ("+reshow" if reshow else "") + ("+retest" if retest else ""))

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        return [Completion(self.decide(r.instance, r.messages, r.snapshot), {"policy": self.identity})
                for r in requests]

    # --- commands ----------------------------------------------------------------------------
    @staticmethod
    def test_command(inst: Instance) -> str:
        files = sorted({t.split("::")[0] for t in inst.FAIL_TO_PASS if "::" in t})
        dirs = sorted({str(PurePosixPath(f).parent) for f in files})
        target = dirs[0] if len(dirs) == 1 else " ".join(files)
        return f"python -m pytest -q {target}".rstrip()

    @staticmethod
    def locate_command(fix: GoldFix) -> str:
        if fix.function and fix.def_line and fix.line:  # the whole repository: a student knows no more
            return f'grep -rn --include="*.py" -A {fix.line - fix.def_line} "def {fix.function}(" .'
        first = max(1, (fix.line or 1) - 5)
        return f"nl -ba {_quote(fix.file)} | sed -n '{first},{first + 15}p'"

    @staticmethod
    def fix_command(inst: Instance, fix: GoldFix) -> str:
        if fix.line is not None:
            return f"sed -i '{fix.line}c\\{fix.new}' {_quote('./' + fix.file)}"  # the path as grep printed it
        patch = inst.patch.rstrip("\n")  # not rstrip(): a last context line that is blank is " "
        return f"git apply - <<'DAGGERLM_PATCH'\n{patch}\nDAGGERLM_PATCH"

    def revert_command(self, inst: Instance, snapshot: dict[str, str]) -> str:
        moved = bool(snapshot.get("head")) and snapshot["head"] != inst.base_commit
        if self.undo == "all":
            return f"git reset -q --hard{' ' + inst.base_commit if moved else ''} && git clean -fdq"
        restore, delete = changed_paths(snapshot.get("diff", ""))
        parts = []
        if moved:
            parts.append(f"git reset -q --hard {inst.base_commit}")
        elif restore:
            parts.append("git checkout -- " + " ".join(_quote("./" + p) for p in restore))  # as grep prints it
        if delete:
            parts.append("rm -f " + " ".join(_quote("./" + p) for p in delete))
        return " && ".join(parts) or f"git reset -q --hard {inst.base_commit}"

    # --- the policy ---------------------------------------------------------------------------
    def decide(self, inst: Instance, messages: list[dict[str, str]], snapshot: dict[str, str]) -> str:
        fix = gold_fix(inst.patch)
        diff, gold = normalize_diff(snapshot.get("diff", "")), normalize_diff(inst.patch)
        turns = turns_of(messages)
        test_cmd = self.test_command(inst)
        if diff not in ("", gold):  # a change that is not the fix: act on what the tests show, as a student can
            if last_test_since_edit(turns) is None:
                return render_response("Run the tests to check the change.", test_cmd)
            # failing tests (or passing ones with a change that is not the fix: tests edited or deleted)
            at_base = snapshot.get("head") in (None, "", inst.base_commit)
            if not self.reshow and at_base and only_fix_line_changed(snapshot.get("diff", ""), fix):  # shortest
                return self.fix_response(inst, fix)
            return render_response("The change did not fix the tests. Undo it.", self.revert_command(inst, snapshot))
        if diff == gold:
            action, observation = turns[-1] if turns else ("", "")
            if "pytest" in action and observation_returncode(observation) == 0:
                return render_response("The tests pass. Submit.", f"echo {SUBMIT_MARKER}")
            return render_response("Run the tests to check the fix.", test_cmd)
        since_undo = turns[_after_last_undo(turns):]
        if not any("pytest" in action for action, _ in (since_undo if self.retest else turns)):
            return render_response("Run the tests to see what fails.", test_cmd)
        locate = self.locate_command(fix)
        shown = since_undo if self.reshow else turns
        if not any(action == locate or (fix.old and fix.old in obs) for action, obs in shown):
            return render_response(f"Find the code of {fix.function or fix.file}.", locate)
        return self.fix_response(inst, fix)

    def fix_response(self, inst: Instance, fix: GoldFix) -> str:
        return render_response(f"Fix the bug in {fix.function or fix.file}.", self.fix_command(inst, fix))


@register("oracle")
def make_oracle(undo: str = "paths", reshow: bool = False, retest: bool = False) -> Oracle:
    return Oracle(undo, reshow, retest)
