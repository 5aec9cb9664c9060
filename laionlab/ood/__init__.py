"""Out-of-distribution generalisation experiments of seed 000 (Roth & Hebart, "How to
sample the world for understanding the visual system", CCN 2025).

``gmm``: the Gaussian-mixture simulation (ridge decoder, zero-shot cluster identification,
effective dimensionality) and its sweeps over clusters, samples and cluster fraction.
``laion``: the same question on real CLIP features: simulated fMRI, Ward groups of k-means
centroids held out in turn, RidgeCV decoding, nearest-centroid identification.
``neural``: the NSD fMRI pipeline: per-session z-scored, repeat-averaged responses, per-subject
clusters held out in turn (RidgeCV encoders and decoders), sampling strategies scored by
encoding accuracy, and a synthetic NSD-like subject.
``neural_targets``: that pipeline chained for one dataset with a responses file (int16 betas
scaled back, noise ceiling, clusters, OOD and sampling rows) and the result tables.
``concepts``: concept (keyword) distributions of an image subset against its pool: entropy,
KL, Jensen-Shannon distance, coverage, over-/under-represented concepts.
Numpy in, dicts out; nothing here imports Dagster.
"""

from laionlab.ood.concepts import (
    caption_concepts,
    compare_distributions,
    concept_counts,
    concept_distribution,
    strategy_concept_table,
)
from laionlab.ood.gmm import (
    effective_dim,
    gmm_identification,
    participation_ratio,
    pearson_identify,
    ridge_decoder,
    sweep_cluster_fraction,
    sweep_clusters,
    sweep_samples,
    sweep_table,
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
from laionlab.ood.neural import (
    neural_ood,
    neural_sampling,
    noise_ceiling_from_ncsnr,
    prepare_responses,
    subject_clusters,
    synthetic_subject,
    voxel_pearson,
)
from laionlab.ood.neural_targets import (
    NSD_BETAS_SCALE,
    NeuralTables,
    NeuralTargets,
    dataset_responses,
    neural_tables,
    neural_targets,
    strategy_curves,
)

__all__ = [
    "NSD_BETAS_SCALE",
    "NeuralTables",
    "NeuralTargets",
    "caption_concepts",
    "dataset_responses",
    "neural_tables",
    "neural_targets",
    "strategy_concept_table",
    "strategy_curves",
    "LaionOODSetup",
    "compare_distributions",
    "concept_counts",
    "concept_distribution",
    "effective_dim",
    "identification_accuracy",
    "laion_identification",
    "laion_ood_setup",
    "normalise_within_group",
    "train_set_identification",
    "ward_groups",
    "gmm_identification",
    "neural_ood",
    "neural_sampling",
    "noise_ceiling_from_ncsnr",
    "prepare_responses",
    "subject_clusters",
    "synthetic_subject",
    "voxel_pearson",
    "participation_ratio",
    "pearson_identify",
    "ridge_decoder",
    "sweep_cluster_fraction",
    "sweep_clusters",
    "sweep_samples",
    "sweep_table",
]
