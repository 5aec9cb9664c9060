"""Asset jobs (and, later, schedules)."""

from dagster import AssetSelection, define_asset_job

from asset_defs.ingest import laion_embeddings, laion_embeddings_import, laion_images, laion_metadata
from asset_defs.partitions import laion_part

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets(laion_metadata, laion_images, laion_embeddings),
    partitions_def=laion_part,
    description="Metadata → images → embeddings for one LAION part.",
)

# Everything that runs per laion_part on the demo data; the import asset is an alternative
# source for laion_embeddings and is left out.
demo_job = define_asset_job(
    "demo_job",
    selection=AssetSelection.all() - AssetSelection.assets(laion_embeddings_import),
    partitions_def=laion_part,
    description="The whole per-part graph on the embedded demo parts.",
)

all_jobs = [ingest_job, demo_job]

__all__ = ["all_jobs", "demo_job", "ingest_job"]
