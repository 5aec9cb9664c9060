"""Representational similarity (seed 002: Ciernik et al., "Objective drives the consistency of
representational similarity across datasets", ICML 2025; code lciernik/similarity_consistency,
built on thingsvision's CKA/RSA and CLIP_benchmark's linear probe).

* ``similarity``: linear CKA in feature space (biased and the unbiased HSIC estimator, no
  ``n × n`` matrices), RBF CKA (thingsvision's Gram form; the seed's absolute ``sigma`` or a
  multiple of the median width), RSA (correlation/cosine/euclidean RDMs, Spearman/Pearson),
  model × model similarity matrices and the consistency of two such matrices;
  ``l2_normalise``, the seed's feature normalisation.
* ``summary``: the consistency table across datasets (overall and per objective group) and
  the link between model-pair similarity and probe-accuracy gaps.
* ``probe``: seeded stratified splits and a logistic-regression linear probe with its L2
  strength chosen on a validation split.

Defaults are the seed's: features L2-normalised before every metric (``Featurizer(normalize=True)``),
unbiased CKA, RBF ``sigma = 0.4`` (``SEED_RBF_SIGMA``, the paper's "local" metric; an absolute
width in thingsvision 2.6.10), RSA with the correlation RDM and Spearman, a 20 % validation
split.
Nothing here imports Dagster.
"""

from laionlab.repsim.probe import (
    DEFAULT_CS,
    DEFAULT_MAX_ITER,
    DEFAULT_VAL_FRACTION,
    linear_probe,
    stratified_split,
)
from laionlab.repsim.similarity import (
    CORR_METHODS,
    DEFAULT_CACHE_BYTES,
    LINEAR_BLOCK_ROWS,
    LINEAR_COPY_BYTES,
    METRICS,
    RDM_METHODS,
    SEED_RBF_SIGMA,
    SEED_RBF_SIGMAS,
    compute_rdm,
    consistency,
    l2_normalise,
    linear_cka,
    rbf_cka,
    rsa,
    similarity_matrix,
)
from laionlab.repsim.summary import (
    ALL_MODELS,
    MIN_GROUP_MODELS,
    ConsistencyTable,
    consistency_matrix,
    consistency_table,
    similarity_behaviour_link,
)

__all__ = [
    "ALL_MODELS",
    "CORR_METHODS",
    "ConsistencyTable",
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_CS",
    "DEFAULT_MAX_ITER",
    "DEFAULT_VAL_FRACTION",
    "LINEAR_BLOCK_ROWS",
    "LINEAR_COPY_BYTES",
    "METRICS",
    "MIN_GROUP_MODELS",
    "RDM_METHODS",
    "SEED_RBF_SIGMA",
    "SEED_RBF_SIGMAS",
    "compute_rdm",
    "consistency",
    "consistency_matrix",
    "consistency_table",
    "l2_normalise",
    "linear_cka",
    "linear_probe",
    "rbf_cka",
    "rsa",
    "similarity_behaviour_link",
    "similarity_matrix",
    "stratified_split",
]
