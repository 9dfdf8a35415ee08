"""Evaluation: log-likelihood estimates and dataset-level means."""

from genjax.eval.likelihood import evaluate_dataset, iw_log_likelihood

__all__ = ["evaluate_dataset", "iw_log_likelihood"]
