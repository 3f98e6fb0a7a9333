"""Test-only policies: a seeded source of wrong actions, to make states a bad student would make."""

from __future__ import annotations

import random

from daggerlm.actions import render_response
from daggerlm.instances.schema import Instance
from daggerlm.policies.base import Completion, PolicyRequest


def wrong_actions(inst: Instance) -> list[str]:
    """Plausible mistakes in this repository: random edits, deletions, a wrong sed, a committed bad edit."""
    sources = sorted(p for p in inst.repo_files if p.endswith(".py") and not p.startswith("tests/")
                     and not p.endswith("__init__.py"))
    tests = sorted(p for p in inst.repo_files if p.startswith("tests/"))
    src, test = sources[0], tests[0]
    return [
        f"sed -i '5s/.*/    return None/' {src}",
        f"sed -i '6c\\    return 0' {sources[-1]}",
        f"rm {src}",
        f"rm {test}",
        f"echo 'oops(' >> {sources[-1]}",
        "echo notes > NOTES.txt",
        f"sed -i 's/return/return -/' {src}",
        f"sed -i '1d' {test}",
        f"echo 'x = 1' >> {src} && git add -A && git commit -qm wip",
        f"mv {src} {src}.bak",
        "ls -R",
        f"cat {src}",
    ]


class WrongActionPolicy:
    """Picks a random mistake each turn (never submits); seeded per instance and turn."""

    identity = "wrong-actions/v1"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        out = []
        for r in requests:
            rng = random.Random(f"{self.seed}|{r.instance.instance_id}|{len(r.messages)}")
            out.append(Completion(render_response("Try something.", rng.choice(wrong_actions(r.instance)))))
        return out


class ScriptedPolicy:
    """Answers with fixed responses in order (for scaffold tests)."""

    identity = "scripted/v1"

    def __init__(self, responses: list[str]):
        self.responses = list(responses)

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        return [Completion(self.responses.pop(0)) for _ in requests]


class CountingPolicy:
    """Wraps a policy and counts the requests it answered (to see what a resumed run recomputes)."""

    def __init__(self, policy):
        self.policy, self.identity, self.requests = policy, policy.identity, 0

    def complete(self, requests: list[PolicyRequest]) -> list[Completion]:
        self.requests += len(requests)
        return self.policy.complete(requests)


TEACHER_KEY_ENV = "DAGGERLM_TEST_TEACHER_KEY"
TEACHER_KEY = "sk-planted-0123456789abcdef"  # must never appear in anything the pipeline writes


def oracle_server(tmp_path, instances, *args, port: int | None = None):
    """Our OpenAI-compatible oracle server on 127.0.0.1, requiring the planted key (a context manager: base URL)."""
    import sys

    from daggerlm.instances import write_instances
    from daggerlm.serving.process import free_port, managed_server

    path = write_instances(tmp_path / "instances.jsonl", instances)
    port = port or free_port()
    argv = [sys.executable, "-m", "daggerlm.serving.oracle_server", "--instances", str(path), "--port", str(port),
            "--api-key-env", TEACHER_KEY_ENV, *args]
    return managed_server(argv, port, tmp_path / "server.log", timeout_s=60, env={TEACHER_KEY_ENV: TEACHER_KEY})


def files_containing(root, secret: str) -> list[str]:
    return [str(f) for f in root.rglob("*") if f.is_file() and secret.encode() in f.read_bytes()]


def oracle_aggregate(root, n_instances: int = 4, seed: int = 21) -> list[dict]:
    """Aggregate rows (teacher-labeled states) of the oracle's episodes on `n_instances` synthetic instances."""
    from daggerlm.agent.scaffold import run_episode
    from daggerlm.config import AgentConfig, RuntimeConfig
    from daggerlm.instances.synthetic import generate
    from daggerlm.policies import make_policy

    rows = []
    for inst in generate(n_instances, "train", seed=seed):
        traj = run_episode(inst, {"teacher": make_policy("oracle")}, lambda t: "teacher",
                           runtime=RuntimeConfig(workdir=str(root)), agent=AgentConfig())
        rows += [{"state_hash": f"{inst.instance_id}-{t.index}", "prompt": traj.messages[: t.prefix_len],
                  "completion": [{"role": "assistant", "content": t.label}], "iteration": 0, "actor": "teacher"}
                 for t in traj.turns]
    return rows
