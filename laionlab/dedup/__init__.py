"""Deduplication and pruning of embedding tables, for seed 004 (Mayilvahanan et al., "Does
CLIP's Generalization Performance Mainly Stem from High Train-Test Similarity?", ICLR 2024).

``semantic``: within-cluster semantic deduplication (seed 004's ``compute_dedup_paths`` rule,
and SemDeDup's keep-one-per-group rule), block by block so memory is bounded by
``block_rows**2`` floats; each row's maximum similarity to earlier rows of its cluster and
the removal fraction as a function of eps. Clusters come from :mod:`laionlab.cluster`.
``prune``: removing pool rows closer to an eval set than its train set is (the paper's
similarity-gap pruning), then subsampling. ``pools``: the tables between them (each LAION
row's max similarity, each eval sample's candidates, the pruned pool written part by part).
``semantic`` also orders each cluster by SemDeDup's keep order (hard / easy / random,
:func:`keep_order_keys`). ``dbp``: density-based pruning (Abbas et al., ICLR 2024): a
per-cluster budget from the clusters' complexity, then SemDeDup's order inside a cluster.
``exact``: exact duplicate images (issue 19): sha256 of the downloaded bytes and 64-bit pHash,
first occurrence kept, a part compared with the earlier parts' sorted hash indexes.
Numpy (and polars) in, numpy out; nothing here imports Dagster.
"""

from laionlab.dedup.dbp import DbpBudget, cluster_budgets, cluster_complexity, dbp_keep, dbp_select
from laionlab.dedup.pools import (
    CandidateMatrix,
    PoolSizes,
    candidate_matrix,
    candidate_table,
    candidate_uids,
    concat_parquets,
    max_sim_table,
    plot_sample,
    pool_parts,
    pool_picks,
    pruned_examples,
    pruned_uids,
    rows_in_parquets,
    write_pool,
)
from laionlab.dedup.prune import nearest_similarity, prune_mask, subsample_parts
from laionlab.dedup.semantic import (
    DEFAULT_BLOCK_ROWS,
    DEFAULT_EPS,
    DEFAULT_GROUP_ROWS,
    KEEP_ORDERS,
    ClusterShard,
    RemovalSummary,
    cluster_offsets,
    dedup_keep,
    dedup_shards,
    duplicate_partner,
    keep_from_max_sim,
    keep_order_keys,
    max_earlier_similarity,
    removal_curve,
    removal_curve_table,
    removal_summary,
)

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "DEFAULT_EPS",
    "DEFAULT_GROUP_ROWS",
    "KEEP_ORDERS",
    "CandidateMatrix",
    "DbpBudget",
    "ClusterShard",
    "PoolSizes",
    "RemovalSummary",
    "candidate_matrix",
    "candidate_table",
    "candidate_uids",
    "cluster_offsets",
    "cluster_budgets",
    "cluster_complexity",
    "concat_parquets",
    "dbp_keep",
    "dbp_select",
    "dedup_keep",
    "dedup_shards",
    "duplicate_partner",
    "keep_from_max_sim",
    "keep_order_keys",
    "max_earlier_similarity",
    "max_sim_table",
    "nearest_similarity",
    "plot_sample",
    "pool_parts",
    "pool_picks",
    "prune_mask",
    "pruned_examples",
    "pruned_uids",
    "removal_curve",
    "removal_curve_table",
    "removal_summary",
    "rows_in_parquets",
    "subsample_parts",
    "write_pool",
]
