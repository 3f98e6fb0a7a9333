"""Lists every escape attempt and its outcome at the end of the run, whatever pytest's verbosity,
so a CI log shows what the sandbox was tried with."""

import os

_ATTEMPTS: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and "test_escape_attempt_is_contained[" in report.nodeid:
        _ATTEMPTS.append((report.nodeid.split("[", 1)[1].rstrip("]"), report.outcome))


def pytest_terminal_summary(terminalreporter):
    if not _ATTEMPTS:
        return
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    terminalreporter.section(f"escape attempts (as {who})")
    for attempt, outcome in _ATTEMPTS:
        terminalreporter.write_line(f"{'contained' if outcome == 'passed' else outcome.upper():>9}  {attempt}")
