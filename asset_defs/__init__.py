"""Thin Dagster assets. Two floors: the inputs and what every pipeline shares (ingest.py: LAION
parts and the reference datasets; readers.py; partitions, profile, lineage, metadata), then one
module per paper's pipeline (visual_world, train_test_similarity, laionet, retrieval,
representations) or curation step (duplicates: exact duplicate images; curation: DataComp's
filtering baselines; concept_balance: MetaCLIP's per-concept cap; density_pruning: DBP over the
dedup clusters; exports: curated subsets for training and peers, takedowns; query: the ANN
index the query API searches), which import the first floor and never each other."""

from asset_defs import (
    concept_balance,
    curation,
    density_pruning,
    duplicates,
    exports,
    ingest,
    laionet,
    query,
    representations,
    retrieval,
    train_test_similarity,
    visual_world,
)
from asset_defs.automation import automate
from asset_defs.lineage import part_checks, with_code_versions
from asset_defs.partitions import dataset, laion_part
from asset_defs.profile import check_profile_assets

check_profile_assets()  # a profile naming an asset that does not exist (a typo) fails the load
all_assets = with_code_versions(
    automate(
        [
            *ingest.assets,
            *visual_world.assets,
            *train_test_similarity.assets,
            *laionet.assets,
            *retrieval.assets,
            *representations.assets,
            *duplicates.assets,
            *concept_balance.assets,
            *curation.assets,
            *density_pruning.assets,
            *exports.assets,
            *query.assets,
        ]
    )
)
# includes_every_part: which LAION parts each cross-partition result lacks (asset_defs/lineage.py)
# plus dedup_parts_current: which parts' dedup flags predate an earlier part's change
all_checks = [*part_checks(all_assets), *train_test_similarity.checks]

__all__ = [
    "all_assets",
    "all_checks",
    "concept_balance",
    "curation",
    "dataset",
    "density_pruning",
    "duplicates",
    "exports",
    "ingest",
    "laion_part",
    "laionet",
    "query",
    "representations",
    "retrieval",
    "train_test_similarity",
    "visual_world",
]
