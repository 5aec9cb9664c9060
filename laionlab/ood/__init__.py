"""Out-of-distribution generalisation experiments of seed 000 (Roth & Hebart, "How to
sample the world for understanding the visual system", CCN 2025).

``gmm``: the Gaussian-mixture simulation (ridge decoder, zero-shot cluster identification,
effective dimensionality) and its sweeps over clusters, samples and cluster fraction.
``laion``: the same question on real CLIP features: simulated fMRI, Ward groups of k-means
centroids held out in turn, RidgeCV decoding, nearest-centroid identification.
Numpy in, dicts out; nothing here imports Dagster.
"""

from laionlab.ood.gmm import (
    effective_dim,
    gmm_identification,
    participation_ratio,
    pearson_identify,
    ridge_decoder,
    sweep_cluster_fraction,
    sweep_clusters,
    sweep_samples,
)
from laionlab.ood.laion import (
    LaionOODSetup,
    identification_accuracy,
    laion_identification,
    laion_ood_setup,
    normalise_within_group,
    train_set_identification,
    ward_groups,
)

__all__ = [
    "LaionOODSetup",
    "effective_dim",
    "identification_accuracy",
    "laion_identification",
    "laion_ood_setup",
    "normalise_within_group",
    "train_set_identification",
    "ward_groups",
    "gmm_identification",
    "participation_ratio",
    "pearson_identify",
    "ridge_decoder",
    "sweep_cluster_fraction",
    "sweep_clusters",
    "sweep_samples",
]
