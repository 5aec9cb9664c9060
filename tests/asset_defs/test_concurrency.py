"""Concurrency at the asset level (hardening issue): four parts materialised at once by
separate processes leave the exact union, and the read that every cross-part asset makes of a
part (``laion_vectors(part=part)``) sees the old or the new part while it is rewritten,
never a mix. The library-level versions are in tests/laionlab/test_lance.py and test_faults.py."""

import multiprocessing as mp
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from asset_defs.ingest import laion_embeddings_import, laion_metadata
from laionlab.demo import DemoConfig, build_demo
from tests.conftest import instance_with_parts, make_resources, run, run_scripts_at_once

ROWS, DIM = 30, 12

IMPORT = textwrap.dedent(
    """
    import sys
    from dagster import materialize
    from asset_defs.ingest import laion_embeddings_import
    from tests.conftest import instance_with_parts, make_resources
    data_root, source, part, release = sys.argv[1:]
    config = {"ops": {"laion_embeddings_import": {"config": {"root": release, "batch_rows": 8}}}}
    result = materialize([laion_embeddings_import], resources=make_resources(data_root, source),
                         instance=instance_with_parts([part]), partition_key=part, run_config=config)
    sys.exit(0 if result.success else 1)
    """
)


def _release(root: Path, index: int, sign: float, seed: int) -> None:
    """A precomputed-embeddings release file for part ``index``: every row points along
    ``sign * e0`` (plus noise), so a reader can tell which release a row came from."""
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.normal(scale=0.1, size=(ROWS, DIM))
    img[:, 0] = sign
    np.save(root / "img_emb" / f"img_emb_{index:04d}.npy", img.astype(np.float16))
    np.save(root / "text_emb" / f"text_emb_{index:04d}.npy", rng.normal(size=(ROWS, DIM)).astype(np.float16))
    pl.DataFrame({"url": ["u"] * ROWS}).write_parquet(root / "metadata" / f"metadata_{index:04d}.parquet")


def _read_part_repeatedly(data_root: str, source: str, part: str, out, ready, stop) -> None:
    """What a cross-part asset does for each part, in a loop: sign of e0 per snapshot."""
    from asset_defs.readers import laion_vectors

    lance = make_resources(Path(data_root), source)["lance"]
    seen = []
    while not stop.is_set():
        uids, X = laion_vectors(lance, part=part, raw=True)
        seen.append((len(uids), sorted(set(np.sign(X[:, 0]).tolist()))))
        ready.set()
    out.put(seen)


@pytest.fixture(scope="module")
def four_parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo4")
    demo = build_demo(root, DemoConfig(n_parts=4, rows_per_part=ROWS, nsfw_per_part=0))
    return demo, str(Path(demo.root) / "laion_parts")


def test_four_parts_at_once_then_a_reader_during_a_rewrite(tmp_path, four_parts):
    demo, source = four_parts
    lab = tmp_path / "lab"
    resources = make_resources(lab, source)
    instance = instance_with_parts(demo.parts)
    for part in demo.parts:
        assert run([laion_metadata], resources, instance, part).success
    release_a, release_b = tmp_path / "release_a", tmp_path / "release_b"
    for i in range(4):
        _release(release_a, i, 1.0, seed=i)
        _release(release_b, i, -1.0, seed=10 + i)

    # four processes, one part each, all writing the one LanceDB table at the same time
    run_scripts_at_once(IMPORT, [[str(lab), source, part, str(release_a)] for part in demo.parts])
    expected = set()
    for part in demo.parts:
        expected |= set(resources["files"].read_parquet("laion_metadata", f"{part}.parquet")["uid"].to_list())
    table = resources["lance"].tables().open("laion_embeddings").to_arrow()
    uids = table.column("uid").to_pylist()
    assert len(uids) == len(set(uids)) == 4 * ROWS and set(uids) == expected

    # a cross-part read of part 0, in another process, while the asset rewrites part 0 from
    # release B, A, B: each snapshot is all one release, with every row
    ctx = mp.get_context("spawn")
    out, ready, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    reader = ctx.Process(target=_read_part_repeatedly, args=(str(lab), source, demo.parts[0], out, ready, stop))
    reader.start()
    try:
        assert ready.wait(120), "the reader never finished its first read"
        for release in (release_b, release_a, release_b):
            config = {"ops": {"laion_embeddings_import": {"config": {"root": str(release), "batch_rows": 8}}}}
            assert run([laion_embeddings_import], resources, instance, demo.parts[0], run_config=config).success
        stop.set()
        seen = out.get(timeout=120)
    finally:
        stop.set()
        reader.join(60)
    assert seen and all(n == ROWS for n, _ in seen)  # never a part with rows missing
    assert all(signs in ([-1.0], [1.0]) for _, signs in seen)  # never half old, half new
    assert seen[0][1] == [1.0]
    final = resources["lance"].tables().read_part("laion_embeddings", demo.parts[0], ["image_emb"])
    assert (np.stack(final.column("image_emb").to_numpy(zero_copy_only=False))[:, 0] < 0).all()
