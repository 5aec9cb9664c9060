"""lance_maintenance_job through the dagster CLI: a table written part by part (a fragment per
write, rows after the first write outside its indexes) comes out compacted and fully indexed,
with the same rows."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from jobs.maintenance import _unindexed
from laionlab.io.lance import LanceTables, embeddings_batch, embeddings_schema
from tests.conftest import cli_env

ROOT = Path(__file__).resolve().parents[1]


def test_the_maintenance_job_compacts_and_indexes_every_table(tmp_path, demo):
    rng = np.random.default_rng(0)
    tables = LanceTables(str(tmp_path / "lance"))
    for p in range(6):
        part = f"part-{p:05d}"
        x = rng.normal(size=(20, 8)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        tables.replace_part(
            "laion_embeddings",
            part,
            [embeddings_batch([f"{part}:{i:09d}" for i in range(20)], part, "m", x, x)],
            embeddings_schema(8),
        )
    tbl = tables.open("laion_embeddings")
    fragments, unindexed = tbl.stats()["fragment_stats"]["num_fragments"], _unindexed(tbl)
    assert fragments == 6 and unindexed > 0
    rows = sorted(tbl.search().limit(None).select(["uid"]).to_arrow()["uid"].to_pylist())

    env = cli_env(tmp_path, demo, LAIONLAB_LANCE_URI=str(tmp_path / "lance"))
    dagster = str(Path(sys.executable).with_name("dagster"))
    run = subprocess.run(
        [dagster, "job", "execute", "-f", "definitions.py", "-j", "lance_maintenance_job"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "laion_embeddings: fragments 6 → " in run.stdout + run.stderr

    tbl = LanceTables(str(tmp_path / "lance")).open("laion_embeddings")
    assert tbl.stats()["fragment_stats"]["num_fragments"] < fragments and _unindexed(tbl) == 0
    assert sorted(tbl.search().limit(None).select(["uid"]).to_arrow()["uid"].to_pylist()) == rows


def test_the_schedule_is_on_by_default():
    from dagster import DefaultScheduleStatus

    from definitions import defs

    schedule = defs.get_schedule_def("lance_maintenance")
    assert schedule.default_status == DefaultScheduleStatus.RUNNING and schedule.job_name == "lance_maintenance_job"
