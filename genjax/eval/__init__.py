"""Evaluation: log-likelihood estimates, sample quality, anomaly scores, latent metrics.

The heavier modules (`sample_quality`, which trains a classifier) and the recommenders'
ranking metrics are imported by name: ``from genjax.eval import sample_quality, ranking``.
"""

from genjax.eval import anomaly, gan_toy, latent
from genjax.eval.auroc import auroc
from genjax.eval.frechet import frechet_distance, frechet_distance_from_stats, gaussian_stats
from genjax.eval.likelihood import (evaluate_dataset, evaluate_dataset_stacked,
                                    iw_log_likelihood, map_dataset, map_dataset_stacked)

__all__ = ["anomaly", "auroc", "evaluate_dataset", "evaluate_dataset_stacked",
           "frechet_distance", "gan_toy", "frechet_distance_from_stats", "gaussian_stats",
           "iw_log_likelihood", "latent", "map_dataset", "map_dataset_stacked"]
