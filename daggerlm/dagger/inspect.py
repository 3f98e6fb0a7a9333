"""A static HTML inspector of a run: read trajectories as a person debugging DAgger would.

`index.html`: the per-iteration table and the resolve rate per iteration (inline SVG). One page per
iteration lists its episodes: the rollout episodes (teacher and student turns, every state labeled)
and the evaluation episodes (the student alone, graded), with who acted, the exit status, whether a
test run failed after a fix was tried (a setback), resolved or not; filterable in the page. One page
per episode shows every turn: the actor (by colour), the action, the observation (long ones folded),
and at the student's states the teacher's label beside it where they differ; then the final patch
and the test results that graded it. Plain files: it opens from disk, no server.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from jinja2 import Environment, PackageLoader

from daggerlm.agent.trajectory import Trajectory
from daggerlm.dagger.layout import Layout
from daggerlm.dagger.rollout import read_trajectories
from daggerlm.errors import InputError
from daggerlm.evaluation.recovery import setback_turn
from daggerlm.io import ResultStore, atomic_write_text
from daggerlm.report.table import SHORT, shown_columns

FOLD_LINES = 12
"""Observations longer than this are folded (`<details>`)."""


@dataclass
class Episode:
    kind: str  # rollout | eval
    trajectory: Trajectory
    report: dict | None  # the grading of an eval episode

    @property
    def page(self) -> str:
        return f"{self.kind}-{re.sub(r'[^A-Za-z0-9._-]', '_', self.trajectory.instance_id)}.html"

    @property
    def actors(self) -> str:
        acted = {t.actor for t in self.trajectory.turns}
        return "mixed" if len(acted) > 1 else next(iter(acted), "none")

    @property
    def resolved(self) -> bool | None:
        return None if self.report is None else bool(self.report.get("resolved"))

    @cached_property
    def setback(self) -> int | None:
        return setback_turn(self.trajectory)

    def turns_of(self, actor: str) -> int:
        return sum(t.actor == actor for t in self.trajectory.turns)

    @property
    def differing(self) -> int:
        return sum(map(self.differs, self.trajectory.turns))

    def differs(self, turn) -> bool:
        """A student state whose teacher label is not what the student did."""
        return turn.actor == "student" and turn.label is not None and turn.label.strip() != turn.response.strip()


def episodes(lay: Layout, k: int) -> list[Episode]:
    """Iteration k's rollout episodes (labeled, when the label stage ran) and evaluation episodes."""
    labeled, rolled = lay.labels(k) / "trajectories.jsonl", lay.rollouts(k) / "trajectories.jsonl"
    source = labeled if labeled.is_file() else rolled
    out = [Episode("rollout", t, None) for t in read_trajectories(source)] if source.is_file() else []
    results = lay.eval(k) / "results"
    if results.is_dir():
        out += [Episode("eval", Trajectory.model_validate(v["trajectory"]), v["report"])
                for v in ResultStore(results).values()]
    return out


def resolve_rate_svg(rows: list[dict], width: int = 480, height: int = 200, pad: int = 44) -> str:
    """Resolve rate per iteration as an inline SVG line (0–100 %)."""
    if not rows:
        return ""
    n = max(len(rows) - 1, 1)
    x = lambda i: pad + (width - 2 * pad) * i / n  # noqa: E731
    y = lambda r: height - pad - (height - 2 * pad) * r  # noqa: E731
    points = " ".join(f"{x(i):.1f},{y(r['resolve_rate']):.1f}" for i, r in enumerate(rows))
    dots = "".join(f'<circle cx="{x(i):.1f}" cy="{y(r["resolve_rate"]):.1f}" r="3"><title>iteration {r["iteration"]}: '
                   f'{100 * r["resolve_rate"]:.0f} %</title></circle>' for i, r in enumerate(rows))
    ticks = "".join(f'<text x="{x(i):.1f}" y="{height - pad + 16}" text-anchor="middle">{r["iteration"]}</text>'
                    for i, r in enumerate(rows))
    grid = "".join(f'<line x1="{pad}" x2="{width - pad}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                   f'<text x="{pad - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{int(100 * v)} %</text>'
                   for v in (0, 0.5, 1))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="resolve rate per iteration">{grid}<polyline points="{points}" fill="none" stroke="#1f6feb" '
            f'stroke-width="2"/>{dots}{ticks}<text x="{width / 2}" y="{height - 4}" text-anchor="middle">'
            f'iteration</text></svg>')


def write_inspector(data: Path, out: Path | None = None) -> Path:
    """Write the inspector of the run under `data` to `out` (default: `Layout.inspector`); return index.html."""
    lay = Layout(Path(data))
    table = lay.report() / "iterations.json"
    if not table.is_file():
        raise InputError(f"{table}: not found (run the report stage, or `daggerlm run`, first)")
    rows = json.loads(table.read_text())
    out = Path(out) if out else lay.inspector()
    env = Environment(loader=PackageLoader("daggerlm.dagger", "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    columns = shown_columns(rows)
    index = out / "index.html"
    atomic_write_text(index, env.get_template("index.html.j2").render(
        rows=rows, columns=columns, short=SHORT, plot=resolve_rate_svg(rows), data=str(data)))
    for row in rows:
        k = row["iteration"]
        found = episodes(lay, k)
        atomic_write_text(out / f"iter_{k}.html", env.get_template("iteration.html.j2").render(
            k=k, row=row, episodes=found))
        for ep in found:
            atomic_write_text(out / f"iter_{k}" / ep.page, env.get_template("episode.html.j2").render(
                k=k, ep=ep, fold=FOLD_LINES))
    return index
