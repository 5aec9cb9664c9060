"""Backfill policies, declarative automation and the nightly schedule (scale-out issue)."""

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    BackfillPolicy,
    DagsterInstance,
    Definitions,
    evaluate_automation_conditions,
)

from asset_defs import all_assets
from asset_defs.automation import automate
from asset_defs.partitions import laion_part
from sensors.nightly import parts_to_refresh


def _requested(result) -> set[tuple[str, str | None]]:
    out = set()
    for r in result.results:
        for key in r.true_subset.expensively_compute_asset_partitions():
            out.add((key.asset_key.to_user_string(), key.partition_key))
    return out


def test_per_part_assets_backfill_one_run_per_part_and_run_eagerly():
    for a in all_assets:
        name = a.key.to_user_string()
        condition = a.automation_conditions_by_key.get(a.key)
        if a.partitions_def == laion_part and name != "laion_embeddings_import":
            assert a.backfill_policy == BackfillPolicy.multi_run(1) and condition is not None, name
        elif a.partitions_def is None:
            assert condition is None, name  # cross-part: stale in the UI, not automatic


def test_cross_part_automation_is_opt_in(monkeypatch):
    monkeypatch.setenv("LAIONLAB_CROSS_PART_AUTOMATION", "eager")
    eager = automate([a for a in all_assets if a.partitions_def is None][:3])
    assert all(a.automation_conditions_by_key.get(a.key) is not None for a in eager)
    monkeypatch.setenv("LAIONLAB_CROSS_PART_AUTOMATION", "sometimes")
    with pytest.raises(ValueError, match="LAIONLAB_CROSS_PART_AUTOMATION"):
        automate(all_assets)


def test_a_new_part_requests_its_ingest_and_only_that():
    from definitions import build_resources

    ingest = Definitions(
        assets=[
            a for a in all_assets if a.key.to_user_string() in ("laion_metadata", "laion_images", "laion_embeddings")
        ],
        resources=build_resources(),
    )
    instance = DagsterInstance.ephemeral()
    start = evaluate_automation_conditions(defs=ingest, instance=instance)
    assert _requested(start) == set()
    instance.add_dynamic_partitions("laion_part", ["part-00000"])  # what laion_parts_sensor does
    first = evaluate_automation_conditions(defs=ingest, instance=instance, cursor=start.cursor)
    # the whole chain of the new part in one request (an upstream that will be requested in
    # the same tick does not count as missing)
    chain = {"laion_metadata", "laion_images", "laion_embeddings"}
    assert _requested(first) == {(k, "part-00000") for k in chain}
    instance.add_dynamic_partitions("laion_part", ["part-00001"])
    second = evaluate_automation_conditions(defs=ingest, instance=instance, cursor=first.cursor)
    assert _requested(second) == {(k, "part-00001") for k in chain}  # part-00000 is not requested twice
    instance.report_runless_asset_event(AssetMaterialization("laion_metadata", partition="part-00000"))
    third = evaluate_automation_conditions(defs=ingest, instance=instance, cursor=second.cursor)
    assert _requested(third) == {("laion_images", "part-00000"), ("laion_embeddings", "part-00000")}  # upstream updated


def test_nightly_backfill_picks_missing_and_stale_parts():
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("laion_part", ["a", "b", "c"])
    report = lambda key, part: instance.report_runless_asset_event(AssetMaterialization(key, partition=part))  # noqa: E731
    report("laion_metadata", "a")
    report("laion_embeddings", "a")  # up to date
    report("laion_metadata", "b")  # never embedded
    report("laion_embeddings", "c")
    report("laion_metadata", "c")  # metadata re-read after embedding: stale
    assert parts_to_refresh(instance) == ["b", "c"]
    assert AssetKey("laion_embeddings") in {k for a in all_assets for k in a.keys}


def test_cli_backfill_submits_one_run_per_part(tmp_path):
    """The README's command: `dagster job backfill -f definitions.py -a defs -j ingest_job --all all`."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    instance = DagsterInstance.from_config(str(tmp_path))
    instance.add_dynamic_partitions("laion_part", ["part-00000", "part-00001"])
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [
        str(dagster),
        "job",
        "backfill",
        "-f",
        "definitions.py",
        "-a",
        "defs",
        "-j",
        "ingest_job",
        "--all",
        "all",
        "--noprompt",
    ]
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = DagsterInstance.from_config(str(tmp_path)).get_runs()
    assert sorted(r.tags.get("dagster/partition") for r in runs) == ["part-00000", "part-00001"]
    assert {r.job_name for r in runs} == {"ingest_job"}
