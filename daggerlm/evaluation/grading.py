"""Grade a patch by running FAIL_TO_PASS and PASS_TO_PASS in a fresh sandbox.

The evaluation mirrors SWE-bench's eval script (apply the model patch, reset the test files the
test patch touches, apply the test patch, run the tests) and the verdict comes from swebench's own
code: `parse_log_pytest` reads the log, `get_eval_tests_report` and `get_resolution_status` decide.
"""

from __future__ import annotations

import re
import shlex

from swebench.harness.constants import FAIL_TO_PASS, PASS_TO_PASS, ResolvedStatus
from swebench.harness.grading import get_eval_tests_report, get_resolution_status
from swebench.harness.log_parsers.python import parse_log_pytest

from daggerlm.config import RuntimeConfig
from daggerlm.instances.schema import Instance
from daggerlm.runtime import open_sandbox

APPLY_FAIL = "DAGGERLM_APPLY_PATCH_FAIL"
_PATCHED_FILE = re.compile(r"^diff --git a/\S+ b/(\S+)$", re.M)


def patched_files(patch: str) -> list[str]:
    return _PATCHED_FILE.findall(patch)


def test_command(instance: Instance) -> str:
    """pytest with `-rA` (one status line per test) on the files that hold the instance's tests."""
    run_files = sorted({t.split("::")[0] for t in instance.FAIL_TO_PASS + instance.PASS_TO_PASS})
    return f"python -m pytest -rA -q -p no:cacheprovider {' '.join(shlex.quote(f) for f in run_files)}"


def eval_script(instance: Instance) -> str:
    """The bash script that applies both patches and runs the instance's tests with `-rA` output."""
    test_files = patched_files(instance.test_patch)
    lines = [
        f'if [ -s "$HOME/model.patch" ]; then git apply "$HOME/model.patch" || {{ echo {APPLY_FAIL}; exit 3; }}; fi',
    ]
    if test_files:
        files = " ".join(shlex.quote(f) for f in test_files)
        lines += [f"for f in {files}; do git checkout -q {instance.base_commit} -- \"$f\" 2>/dev/null || rm -f \"$f\"; done",
                  f'git apply "$HOME/test.patch" || {{ echo {APPLY_FAIL}; exit 3; }}']
    lines.append(test_command(instance))
    return "\n".join(lines)


def suite_runtime(runtime: RuntimeConfig, timeout_s: float) -> RuntimeConfig:
    """`runtime` for a whole test suite: its time limit, and room for every test's `-rA` line."""
    return runtime.model_copy(update={"timeout_s": timeout_s,
                                      "max_output_bytes": max(16 << 20, runtime.max_output_bytes)})


def grade(instance: Instance, patch: str, runtime: RuntimeConfig | None = None) -> dict:
    """Report for one patch: `resolved`, whether it applied, and the per-test outcome."""
    runtime = runtime or RuntimeConfig()
    runtime = suite_runtime(runtime, max(120.0, runtime.timeout_s))
    with open_sandbox(instance, runtime) as box:
        box.write_home_file("model.patch", patch or "")
        box.write_home_file("test.patch", instance.test_patch or "")
        result = box.run(eval_script(instance))
    log = result["output"]
    report = {"instance_id": instance.instance_id, "patch_exists": bool(patch and patch.strip()),
              "patch_successfully_applied": APPLY_FAIL not in log, "resolved": False, "tests_status": None}
    if not report["patch_successfully_applied"] or result.get("extra", {}).get("timed_out"):
        report["error"] = "timeout" if result.get("extra", {}).get("timed_out") else "patch did not apply"
        return report
    report["resolved"], report["tests_status"] = verdict(instance, parse_log_pytest(log, None))
    return report


def verdict(instance: Instance, status_map: dict[str, str]) -> tuple[bool, dict]:
    """swebench's decision from a test-status map; a run where no test ran never counts as resolved."""
    tests = get_eval_tests_report(status_map, {FAIL_TO_PASS: instance.FAIL_TO_PASS, PASS_TO_PASS: instance.PASS_TO_PASS})
    return bool(status_map) and get_resolution_status(tests) == ResolvedStatus.FULL.value, tests
