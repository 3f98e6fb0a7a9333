"""The HTML inspector, loaded in a real browser (headless Chromium): the pages a run writes hold its
iterations, its episodes and every turn, coloured by who acted, with the teacher's differing labels."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from daggerlm.dagger.loop import run_dagger
from daggerlm.dagger.rollout import read_trajectories
from daggerlm.dagger.inspect import Episode
from tests.conftest import tiny_params


def chromium(*args: str, timeout: float = 120) -> str:
    """Headless Chromium's stdout (as root it needs --no-sandbox; CI installs the Debian package)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed (.ci/run installs the Debian package)"
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


class Elements(HTMLParser):
    """Start tags with their attributes, from the DOM the browser built (after its scripts ran)."""

    def __init__(self, dom: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def having(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def with_class(self, tag: str, cls: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag and cls in (a.get("class") or "").split()]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny run where the (barely trained) student acts half the time: labels that differ from its actions."""
    root = tmp_path_factory.mktemp("run")
    run_dagger(tiny_params(root, **{"dagger.iterations": 1, "dagger.beta": {"kind": "constant", "value": 0.5}}),
               log=lambda msg: None)
    return root / "data"


def test_the_browser_shows_every_episode_and_turn_of_the_run(run_dir, tmp_path):
    inspector = run_dir / "report" / "inspect"
    index = Elements(chromium("--dump-dom", (inspector / "index.html").as_uri()))
    assert {"href": "iter_0.html"} in index.having("a") and index.having("svg")
    rows = json.loads((run_dir / "report" / "iterations.json").read_text())
    assert len(index.having("tr")) == 1 + len(rows)

    rollouts = read_trajectories(run_dir / "labels" / "iter_0" / "trajectories.jsonl")
    evaluated = list((run_dir / "eval" / "iter_0" / "results").glob("*.json"))
    page = Elements(chromium("--dump-dom", (inspector / "iter_0.html").as_uri()))
    episodes = page.with_class("tr", "episode")
    assert len(episodes) == len(rollouts) + len(evaluated)
    # filters in the link: only the eval episodes stay visible
    filtered = Elements(chromium("--dump-dom", (inspector / "iter_0.html").as_uri() + "#kind=eval"))
    visible = [a for a in filtered.with_class("tr", "episode") if "hidden" not in a]
    assert len(visible) == len(evaluated) and all(a["data-kind"] == "eval" for a in visible)

    mixed = [t for t in rollouts if {turn.actor for turn in t.turns} == {"teacher", "student"}]
    differing = [t for t in mixed if Episode("rollout", t, None).differing]
    assert differing, "the tiny student should disagree with the oracle somewhere"
    trajectory = differing[0]
    episode_page = inspector / "iter_0" / Episode("rollout", trajectory, None).page
    dom = Elements(chromium("--dump-dom", episode_page.as_uri()))
    for actor in ("teacher", "student"):
        assert len(dom.with_class("section", actor)) == sum(t.actor == actor for t in trajectory.turns)
    shown = [a for a in dom.having("section") if a.get("data-differs") == "yes"]
    assert len(shown) == Episode("rollout", trajectory, None).differing == len(dom.with_class("div", "label"))

    shot = tmp_path / "episode.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars", episode_page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_what_the_agent_printed_is_shown_as_text_never_as_markup(tmp_path):
    """Observations are untrusted output: a `<script>` in one is escaped, not run."""
    from daggerlm.agent.trajectory import Trajectory, Turn
    from daggerlm.dagger.inspect import write_inspector
    from daggerlm.io import atomic_write_json, atomic_write_jsonl

    data = tmp_path / "data"
    hostile = "</pre><script>alert(1)</script>"
    turn = Turn(index=0, prefix_len=2, snapshot={}, actor="student", response=f"echo '{hostile}'",
                action=f"echo '{hostile}'", label="ls", observation=hostile)
    trajectory = Trajectory(instance_id="x/y<1>", policies={"student": "s"}, turns=[turn], patch=f"+{hostile}")
    atomic_write_jsonl(data / "labels" / "iter_0" / "trajectories.jsonl", [trajectory.model_dump(mode="json")])
    atomic_write_json(data / "report" / "iterations.json", [{"iteration": 0, "beta": 0.5, "resolve_rate": 0.0}])
    write_inspector(data)
    pages = [p.read_text() for p in (data / "report" / "inspect").rglob("*.html")]
    assert len(pages) == 3 and all("<script>alert" not in page for page in pages)
    episode = next(page for page in pages if "teacher's label" in page)
    assert episode.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3  # the action, the observation, the patch
