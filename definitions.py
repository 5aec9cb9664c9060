"""The laionlab code location: one Definitions object assembled from the four packages.

Resource defaults come from environment variables so the same code serves the demo and real
data (see README, "Configuration"); every field can also be overridden per run in the UI, and a
run that overrides some fields keeps the others (``resources/defaults.py``).
"""

from __future__ import annotations

import os

from dagster import Definitions, in_process_executor

from asset_defs import all_assets, all_checks
from asset_defs.profile import active_profile, resource_default
from jobs import all_jobs
from laionlab import settings
from resources import ClipEncoder, DatasetCatalog, Downloader, FileStore, LaionSource, LanceStore
from resources.defaults import with_launch_defaults
from sensors import all_schedules, all_sensors


def _setting(name: str, resource: str | None, field: str | None, default, kind: type = int):
    """A resource field: the LAIONLAB_* variable, else the active profile's value, else
    ``default``, as ``kind``; a value that is not one names the variable (or profile field)."""
    value = os.environ.get(name) or (resource_default(resource, field, default) if resource else default)
    try:
        return kind(value)
    except (TypeError, ValueError):
        source = name if os.environ.get(name) else f"the profile's resources.{resource}.{field}"
        raise ValueError(f"{source} = {value!r} is not {'an integer' if kind is int else 'a number'}") from None


def _laionet_text_spec(clip: dict) -> dict:
    """The LAIONet text model (synset_similarity): LAIONLAB_LAIONET_TEXT_MODEL /
    _PRETRAINED / _CHECKPOINT, or the clip resource's model when none of them is set. The
    paper's 0.82 threshold is calibrated on OpenAI CLIP ViT-B/32's text tower
    (``ViT-B-32`` / ``openai``), whatever model embeds the images."""
    model = os.environ.get("LAIONLAB_LAIONET_TEXT_MODEL") or None
    pretrained = os.environ.get("LAIONLAB_LAIONET_TEXT_PRETRAINED") or None
    checkpoint = os.environ.get("LAIONLAB_LAIONET_TEXT_CHECKPOINT") or None
    if not (model or pretrained or checkpoint):
        return {}
    return {"model_name": model or clip["model_name"], "pretrained": pretrained, "checkpoint": checkpoint}


# the resource fields a profile may set (profiles/*.yaml, `resources:`)
PROFILE_RESOURCE_FIELDS = {
    "clip": {"batch_size", "num_workers"},
    "downloader": {"processes_count", "thread_count", "image_size"},
    "source": {"rows_per_partition"},
}


def build_resources(data_root: str | None = None, source_uri: str | None = None, catalog: str | None = None) -> dict:
    """The resources keyed as the assets expect, from arguments or LAIONLAB_* variables."""
    profile = active_profile()
    for resource, fields in profile["resources"].items():
        unknown = set(fields) - PROFILE_RESOURCE_FIELDS.get(resource, set())
        if unknown:
            raise ValueError(
                f"profile {profile['path']}: resources.{resource} cannot set {sorted(unknown)} "
                f"(settable: {PROFILE_RESOURCE_FIELDS})"
            )
    root = data_root or settings.data_root()
    clip = {
        **settings.clip_model(),
        "batch_size": _setting("LAIONLAB_BATCH_SIZE", "clip", "batch_size", 256),
        "num_workers": _setting("LAIONLAB_NUM_WORKERS", "clip", "num_workers", 2),
        "decode": settings.env("LAIONLAB_DECODE", "auto"),
    }
    resources = {
        "source": LaionSource(
            uri=source_uri or settings.env("LAIONLAB_SOURCE_URI", os.path.abspath("data/demo/laion_parts")),
            rows_per_partition=_setting("LAIONLAB_ROWS_PER_PARTITION", "source", "rows_per_partition", 1_000_000),
        ),
        "files": FileStore(root=root),
        "catalog": DatasetCatalog(
            path=catalog or settings.env("LAIONLAB_DATASET_CATALOG", os.path.abspath("data/demo/datasets.yaml"))
        ),
        "lance": LanceStore(
            uri=settings.lance_uri(root),
            storage_options=settings.lance_storage_options(),
        ),
        "clip": ClipEncoder(
            **clip,
            ray_address=os.environ.get("LAIONLAB_RAY_ADDRESS") or None,
            ray_actors=_setting("LAIONLAB_RAY_ACTORS", None, None, 2),
            ray_gpus_per_actor=_setting("LAIONLAB_RAY_GPUS_PER_ACTOR", None, None, 0, kind=float),
        ),
        # LAIONet's caption-to-synset text model; it only encodes texts, in the step's process
        "laionet_text_clip": ClipEncoder(**{**clip, **_laionet_text_spec(clip)}),
        "downloader": Downloader(
            processes_count=_setting("LAIONLAB_DOWNLOAD_PROCESSES", "downloader", "processes_count", 2),
            thread_count=_setting("LAIONLAB_DOWNLOAD_THREADS", "downloader", "thread_count", 16),
            image_size=_setting("LAIONLAB_IMAGE_SIZE", "downloader", "image_size", 256),
            # file:// URLs are refused outside these folders (the demo's images live in its root)
            allowed_file_roots=[
                p
                for p in settings.env("LAIONLAB_ALLOWED_FILE_ROOTS", os.path.abspath("data/demo")).split(os.pathsep)
                if p
            ],
            request_deadline_s=_setting("LAIONLAB_DOWNLOAD_DEADLINE_S", None, None, 60.0, kind=float),
            max_image_pixels=_setting("LAIONLAB_MAX_IMAGE_PIXELS", None, None, 89_478_485),
            process_timeout_s=_setting("LAIONLAB_DOWNLOAD_TIMEOUT_S", None, None, None, kind=float)
            if os.environ.get("LAIONLAB_DOWNLOAD_TIMEOUT_S")
            else None,
            ray_address=os.environ.get("LAIONLAB_RAY_ADDRESS") or None,
        ),
    }
    return {key: with_launch_defaults(resource) for key, resource in resources.items()}


# Steps run in their run's process (no process start-up per step); parallelism comes from runs:
# a backfill or "Materialize all" starts one run per partition, queued up to dagster.yaml's limit.
defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=all_jobs,
    sensors=all_sensors,
    schedules=all_schedules,
    resources=build_resources(),
    executor=in_process_executor,
)
