"""Shared fixtures: the embedded demo (small), resources pointing at temp folders, a Dagster
instance with the demo parts registered. No network, no GPU."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from dagster import DagsterInstance, materialize  # noqa: E402

from laionlab.demo import DemoConfig, build_demo  # noqa: E402

ROWS_PER_PART = 40


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """Three demo parts of 40 rows (each with the broken rows and NSFW flags)."""
    root = tmp_path_factory.mktemp("demo")
    return build_demo(root, DemoConfig(n_parts=3, rows_per_part=ROWS_PER_PART, nsfw_per_part=2))


def make_resources(data_root: Path, source_uri: str, **clip_overrides) -> dict:
    from definitions import build_resources
    from resources import ClipEncoder, Downloader

    catalog = str(Path(source_uri).parent / "datasets.yaml")
    resources = build_resources(data_root=str(data_root), source_uri=source_uri, catalog=catalog)
    demo_root = str(Path(source_uri).parent)
    resources["downloader"] = Downloader(processes_count=1, thread_count=4, image_size=64, timeout=5, allowed_file_roots=[demo_root])
    resources["clip"] = ClipEncoder(**{"model_name": "laionlab-tiny", "batch_size": 16, "num_workers": 0, **clip_overrides})
    return resources


@pytest.fixture
def lab(tmp_path, demo):
    """Resources writing under a fresh temp data root, reading the demo parts."""
    return make_resources(tmp_path / "lab", str(Path(demo.root) / "laion_parts"))


def instance_with_parts(parts) -> DagsterInstance:
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("laion_part", list(parts))
    return instance


@pytest.fixture
def instance(demo):
    return instance_with_parts(demo.parts)


def run(assets, resources, instance, part, **kwargs):
    return materialize(assets, resources=resources, instance=instance, partition_key=part, **kwargs)


@pytest.fixture(scope="session")
def ingested(tmp_path_factory, demo):
    """All three demo parts through the three ingest assets, once per test session."""
    from asset_defs.ingest import laion_embeddings, laion_images, laion_metadata

    resources = make_resources(tmp_path_factory.mktemp("lab"), str(Path(demo.root) / "laion_parts"))
    instance = instance_with_parts(demo.parts)
    results = {part: run([laion_metadata, laion_images, laion_embeddings], resources, instance, part) for part in demo.parts}
    return resources, instance, results


DATASETS = ["demo_broad", "demo_narrow"]


@pytest.fixture(scope="session")
def world(ingested):
    """The ingested demo plus the reference embeddings of both demo datasets."""
    from asset_defs.visual_world import reference_embeddings

    resources, instance, _ = ingested
    instance.add_dynamic_partitions("dataset", DATASETS)
    for name in DATASETS:
        assert run([reference_embeddings], resources, instance, name).success
    return resources, instance


@pytest.fixture(scope="session")
def s3():
    """An S3 bucket on moto's server at 127.0.0.1 (no network, no Docker): fsspec is configured
    for it (``fsspec.config.conf``; download_part hands that to img2dataset's child as
    FSSPEC_S3), and ``lance_options`` are the LanceStore storage options. Skipped when moto or
    s3fs is not installed."""
    import types
    import uuid

    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import fsspec.config

    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in creds.items():
            mp.setenv(k, v)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        mp.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint, "key": "testing", "secret": "testing"})
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        bucket = f"laionlab-{uuid.uuid4().hex[:8]}"
        fs.mkdir(bucket)
        lance_options = {
            "aws_endpoint": endpoint, "allow_http": "true", "aws_region": "us-east-1",
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
        }  # fmt: skip
        try:
            yield types.SimpleNamespace(endpoint=endpoint, bucket=bucket, fs=fs, lance_options=lance_options)
        finally:
            server.stop()
            type(fs).clear_instance_cache()
