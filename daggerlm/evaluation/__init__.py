"""Grading with swebench's code, predictions in the swebench format, metrics."""

from daggerlm.evaluation.evaluate import compute_metrics, evaluate
from daggerlm.evaluation.grading import grade

__all__ = ["compute_metrics", "evaluate", "grade"]
