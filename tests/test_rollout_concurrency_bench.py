"""bench/rollout_concurrency.py's CPU accounting: the server's seconds apart from the rest, and the seconds of
processes that ended (the sandboxes' commands) still counted once they are waited for."""

import importlib.util
import subprocess
import sys
import time

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("rollout_concurrency", REPO / "bench" / "rollout_concurrency.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n{after}"


def test_cpu_of_a_live_server_and_of_finished_children_is_counted_where_it_belongs():
    before = bench.tree_cpu(server_pid=-1)
    server = subprocess.Popen([sys.executable, "-c", BURN.format(s=0.6, after="import time; time.sleep(60)")])
    try:
        subprocess.run([sys.executable, "-c", BURN.format(s=0.8, after="")], check=True)  # a sandbox's command
        for _ in range(100):  # until the server has burnt its share
            if bench.tree_cpu(server.pid)["server"] >= 0.6:
                break
            time.sleep(0.1)
        after = bench.tree_cpu(server.pid)
    finally:
        server.kill()
        server.wait()
    gained = {k: after[k] - before[k] for k in after}
    assert 0.5 <= gained["server"] < 1.0, gained  # the live server's own burn, not the finished child's
    assert 0.7 <= gained["other"] < 1.2, gained  # the finished child, counted once
    assert gained["this_process"] < 0.5, gained


def test_the_ceiling_is_the_cheapest_episode_on_every_core_and_each_run_is_put_against_it():
    def run(name, per_min, cpu_per_episode):
        return {"run": name, "episodes": 10, "episodes_per_min": per_min, "cores_busy": 1.5,
                "cpu_s_per_episode": cpu_per_episode, "cpu_s": {"server": 20.0, "this_process": 4.0, "other": 6.0},
                "student_request_s": {"mean": 0.5}, "sandbox_command_s": 0.1, "episode_s": 4.0, "episodes_hash": name}

    report = {"cores": 2, "runs": [run("threads ×1", 20.0, 4.0), run("threads ×8", 30.0, 2.0)], "server_alone": []}
    bench.derive(report)
    assert (report["ceiling_run"], report["ceiling_episodes_per_min"]) == ("threads ×8", 60.0)
    assert report["ceiling_at_concurrency_1"] == 30.0
    assert [r["of_ceiling"] for r in report["runs"]] == [0.333, 0.5]
    assert "| threads ×8 | 30.0 | 50% | 1.50 | 2.00 (2.00, 1.00) |" in report["table"]
    assert "2 cores ÷ 2.00 CPU s per episode (threads ×8, the cheapest) = 60.0 episodes/min" in report["table"]
