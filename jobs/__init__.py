"""Asset jobs, one per partition set (a Dagster job runs assets of one partitioning).

- ingest_job: per `laion_part`, metadata → images → embeddings;
- part_analysis_job: per `laion_part`, the analyses of one part (LAION-natural ...);
- reference_job: per `dataset`, the embeddings of a reference image set of the catalog;
- dataset_analysis_job: per `dataset`, the analyses of one dataset;
- target_job: per `target`, SWAT retrieval (synonyms → matches → images → samples);
- model_job: per model × dataset, features and linear probe (seed 002);
- export_job: per `subset`, a curated subset's exports (img2dataset, webdataset, DataComp ids);
- pool_export_job / swat_export_job: per `dataset` / `target`, a pruned pool's / SWAT samples' exports;
- analysis_job: the cross-partition assets (classifier, clusters, coverage...), unpartitioned;
- part_checks_job: only the includes_every_part checks (no asset is rebuilt);
- lance_maintenance_job (maintenance.py): compaction and index upkeep of the LanceDB tables.
"""

from dagster import AssetSelection, define_asset_job

from asset_defs import all_assets, all_checks
from asset_defs.ingest import laion_embeddings, laion_images, laion_metadata, reference_embeddings
from asset_defs.partitions import dataset, laion_part, subset, target
from asset_defs.representations import model_dataset


def _partitioned_by(partitions_def, exclude: frozenset[str] = frozenset()) -> AssetSelection:
    keys = [
        key
        for a in all_assets
        for key in a.keys
        if a.partitions_def == partitions_def and key.to_user_string() not in exclude
    ]
    return AssetSelection.assets(*keys)


# the ingest assets (laion_embeddings_import is in the graph only with an import root)
INGEST = frozenset({"laion_metadata", "laion_images", "laion_embeddings", "laion_embeddings_import"})
# the exports of a dataset's pool / a target's samples copy images: their own jobs, not the analyses'
EXPORTS = frozenset({"pool_export", "swat_export"})


ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets(laion_metadata, laion_images, laion_embeddings),
    partitions_def=laion_part,
    description="Metadata → images → embeddings for one LAION part.",
)

part_analysis_job = define_asset_job(
    "part_analysis_job",
    selection=_partitioned_by(laion_part, exclude=INGEST),
    partitions_def=laion_part,
    description="The per-part analyses (LAION-natural ...) for one part, once the cross-part inputs exist.",
)

reference_job = define_asset_job(
    "reference_job",
    selection=AssetSelection.assets(reference_embeddings),
    partitions_def=dataset,
    description="Embeddings of one reference dataset (what reference_datasets_sensor requests).",
)

dataset_analysis_job = define_asset_job(
    "dataset_analysis_job",
    selection=_partitioned_by(dataset, exclude=EXPORTS) - AssetSelection.assets(reference_embeddings),
    partitions_def=dataset,
    description="The per-dataset analyses (eval-to-LAION similarity, thresholds, pruned pools, their gallery) of one "
    "dataset.",
)

target_job = define_asset_job(
    "target_job",
    selection=_partitioned_by(target, exclude=EXPORTS),
    partitions_def=target,
    description="SWAT retrieval for one target: synonyms, string matches, missing images, samples per method.",
)

model_job = define_asset_job(
    "model_job",
    selection=_partitioned_by(model_dataset),
    partitions_def=model_dataset,
    description="Features and linear probe of one model on one dataset (seed 002).",
)

analysis_job = define_asset_job(
    "analysis_job",
    selection=AssetSelection.all()
    - _partitioned_by(laion_part)
    - _partitioned_by(dataset)
    - _partitioned_by(target)
    - _partitioned_by(subset)
    - _partitioned_by(model_dataset),
    description="The cross-partition assets over all parts and datasets.",
)

export_job = define_asset_job(
    "export_job",
    selection=_partitioned_by(subset),
    partitions_def=subset,
    description="One curated subset exported for training and for peers (img2dataset, webdataset, DataComp ids).",
)

pool_export_job = define_asset_job(
    "pool_export_job",
    selection=AssetSelection.assets("pool_export"),
    partitions_def=dataset,
    description="Seed 004's pruned pool of one eval dataset exported for training (img2dataset, webdataset, DataComp).",
)

swat_export_job = define_asset_job(
    "swat_export_job",
    selection=AssetSelection.assets("swat_export"),
    partitions_def=target,
    description="SWAT's samples of one target exported per sampling method (img2dataset, webdataset, DataComp).",
)

part_checks_job = define_asset_job(
    "part_checks_job",
    selection=AssetSelection.checks(*all_checks),
    description=(
        "The includes_every_part checks: which LAION parts each cross-partition result lacks "
        "(run by part_checks_sensor)."
    ),
)

from jobs.maintenance import lance_maintenance_job  # noqa: E402

all_jobs = [
    part_checks_job,
    ingest_job,
    part_analysis_job,
    reference_job,
    dataset_analysis_job,
    target_job,
    model_job,
    export_job,
    pool_export_job,
    swat_export_job,
    analysis_job,
    lance_maintenance_job,
]

__all__ = [
    "all_jobs",
    "analysis_job",
    "export_job",
    "lance_maintenance_job",
    "part_checks_job",
    "dataset_analysis_job",
    "ingest_job",
    "model_job",
    "part_analysis_job",
    "pool_export_job",
    "reference_job",
    "swat_export_job",
    "target_job",
]
