"""Shared fixtures: the embedded demo (small), resources pointing at temp folders, a Dagster
instance with the demo parts registered. No network, no GPU."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
# The tests load the code location with the papers' defaults (`make test` may export another
# profile); demo-profile runs pass its values as run config, or start a subprocess with it.
os.environ["LAIONLAB_PROFILE"] = "paper"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from dagster import DagsterInstance, materialize  # noqa: E402

from laionlab.demo import DemoConfig, build_demo  # noqa: E402

ROWS_PER_PART = 40


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run only where torch sees a CUDA device."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="no CUDA device (marker gpu)")
        for item in gpu:
            item.add_marker(skip)


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
    resources["downloader"] = Downloader(
        processes_count=1, thread_count=4, image_size=64, timeout=5, allowed_file_roots=[demo_root]
    )
    resources["clip"] = ClipEncoder(
        **{"model_name": "laionlab-tiny", "batch_size": 16, "num_workers": 0, **clip_overrides}
    )
    # LAIONet's text model falls back to the clip resource's settings, as in definitions.py
    resources["laionet_text_clip"] = ClipEncoder(
        **{"model_name": "laionlab-tiny", "batch_size": 16, "num_workers": 0, **clip_overrides}
    )
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


def cli_env(tmp_path: Path, demo, **extra: str) -> dict:
    """The environment of a `dagster` CLI run on the demo: a fresh DAGSTER_HOME under
    ``tmp_path`` holding the project's dagster.yaml, the demo profile and folders, plus ``extra``."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LAIONLAB_DATA_ROOT": str(tmp_path / "lab"),
        "LAIONLAB_SOURCE_URI": str(Path(demo.root) / "laion_parts"),
        "LAIONLAB_DATASET_CATALOG": str(Path(demo.root) / "datasets.yaml"),
        "LAIONLAB_ALLOWED_FILE_ROOTS": str(demo.root),
        "LAIONLAB_PROFILE": "demo",
        **extra,
    }


def run_scripts_at_once(script: str, argvs: list[list[str]], timeout: float = 600) -> None:
    """Run ``python -c script *argv`` for every argv at the same time, from the repository
    root; fail with the output of any that exits non-zero."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for argv in argvs
    ]
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, out.decode()[-3000:]


def run(assets, resources, instance, part, **kwargs):
    return materialize(assets, resources=resources, instance=instance, partition_key=part, **kwargs)


@pytest.fixture(scope="session")
def ingested(tmp_path_factory, demo):
    """All three demo parts through the three ingest assets, once per test session."""
    from asset_defs.ingest import laion_embeddings, laion_images, laion_metadata

    resources = make_resources(tmp_path_factory.mktemp("lab"), str(Path(demo.root) / "laion_parts"))
    instance = instance_with_parts(demo.parts)
    results = {
        part: run([laion_metadata, laion_images, laion_embeddings], resources, instance, part) for part in demo.parts
    }
    return resources, instance, results


DATASETS = ["demo_broad", "demo_narrow"]


@pytest.fixture(scope="session")
def world(ingested):
    """The ingested demo plus the reference embeddings of both demo datasets."""
    from asset_defs.ingest import reference_embeddings

    resources, instance, _ = ingested
    instance.add_dynamic_partitions("dataset", DATASETS)
    for name in DATASETS:
        assert run([reference_embeddings], resources, instance, name).success
    return resources, instance


# The whole graph on the demo (jobs.demo.run_all, what `make demo` runs after the ingest), with
# the reference datasets and models that some asset needs rather than the demo's full catalog:
# 4 models x 4 datasets of features and probes take minutes on 2 cores.
GRAPH_DATASETS = ["demo_broad", "demo_imagenet_val", "demo_imagenet_captions"]
GRAPH_MODELS = ["clip_tiny_vit", "clip_tiny_conv", "timm_test_vit"]  # consistency needs 3 models
GRAPH_PROBE_DATASET = "demo_imagenet_val"  # probe_similarity_link needs probes of one dataset


@pytest.fixture(scope="session")
def demo_graph(tmp_path_factory, ingested, demo):
    """Every asset downstream of the ingest materialised once, in dependency order, by
    ``jobs.demo.run_all`` with the demo profile's parameters, on a copy of the session's ingested
    parts (so nothing else of the session is overwritten). Returns (resources, instance)."""
    import shutil

    from asset_defs.partitions import dataset, model, target
    from asset_defs.profile import profile_run_config
    from jobs.demo import run_all

    resources, _, _ = ingested
    src, root = Path(resources["files"].root), tmp_path_factory.mktemp("graph")
    for name in ("laion_metadata", "laion_images"):
        shutil.copytree(src / name, root / "lab" / name)
    shutil.copytree(
        Path(resources["lance"].uri) / "laion_embeddings.lance", root / "lab" / "lance" / "laion_embeddings.lance"
    )
    resources = make_resources(root / "lab", str(Path(demo.root) / "laion_parts"))
    instance = instance_with_parts(demo.parts)
    instance.add_dynamic_partitions(dataset.name, GRAPH_DATASETS)
    instance.add_dynamic_partitions(model.name, GRAPH_MODELS)
    instance.add_dynamic_partitions(target.name, sorted(resources["catalog"].targets()))
    skip = {"probe_scores": [d for d in GRAPH_DATASETS if d != GRAPH_PROBE_DATASET]}
    run_all(instance, resources, run_config=profile_run_config("demo"), skip=skip)  # SystemExit naming a failed asset
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
