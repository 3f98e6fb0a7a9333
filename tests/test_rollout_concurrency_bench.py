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


def test_the_table_puts_each_run_against_the_ceiling():
    run = {"run": "threads ×8", "episodes": 10, "episodes_per_min": 30.0, "cores_busy": 1.5, "cpu_s_per_episode": 3.0,
           "cpu_s": {"server": 20.0, "this_process": 4.0, "other": 6.0}, "student_request_s": {"mean": 0.5},
           "sandbox_command_s": 0.1, "episode_s": 4.0}
    text = bench.table({"runs": [run], "cores": 2, "ceiling_cpu_s_per_episode": 2.0, "ceiling_episodes_per_min": 60.0})
    assert "| threads ×8 | 30.0 | 50% | 1.50 | 3.00 (2.00, 1.00) |" in text
    assert "2 cores ÷ 2.00 CPU s per episode (concurrency 1) = 60.0 episodes/min" in text
