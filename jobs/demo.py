"""`python -m jobs.demo register|parts|run|summary`: the steps of `make demo`.

register: add a partition per demo part, per catalog dataset, retrieval target and model (what the sensors do when
    the daemon runs);
parts:    print the part keys (the Makefile runs `dagster job execute -j ingest_job` per part);
run:      materialise every other asset of the graph, in dependency order, one run of the
          asset's named job per partition (or one run for the cross-partition assets), in this
          process, recorded in the instance under DAGSTER_HOME — what "Materialize all" does
          through the daemon. No run config: the parameters are the active profile's
          (LAIONLAB_PROFILE, asset_defs/profile.py), the same as the UI's and the daemon's;
summary:  print what the graph holds afterwards.
"""

import sys
import time

from dagster import AssetKey, AssetSelection, DagsterInstance, Definitions

from asset_defs import all_assets
from asset_defs.ingest import EMBEDDINGS_TABLE
from asset_defs.partitions import dataset, laion_part, model, target
from definitions import build_resources, defs
from jobs import all_jobs, ingest_job
from laionlab.io.lance import quote_literal
from sensors.laion_parts import new_parts
from sensors.reference_datasets import catalog_changes, model_changes, target_changes


def job_of(key: AssetKey) -> str:
    """The named job (jobs/__init__.py) that runs ``key``: its page lists the run."""
    for job in all_jobs:
        if key in defs.resolve_job_def(job.name).asset_layer.executable_asset_keys:
            return job.name
    raise ValueError(f"no job runs {key.to_user_string()}")


def stages(keys: set[AssetKey]) -> list[tuple[str, list[AssetKey]]]:
    """Runs of ``keys`` in dependency order, as a backfill waves them: each wave takes every
    asset whose upstream (within ``keys``) is done and runs it with the others of its job (one
    partitions_def) in one run per partition."""
    graph = defs.resolve_asset_graph()
    todo = [k for k in graph.toposorted_asset_keys if k in keys]
    out: list[tuple[str, list[AssetKey]]] = []
    while todo:
        ready = [k for k in todo if not graph.get(k).parent_keys & set(todo)]
        by_job: dict[str, list[AssetKey]] = {}
        for key in ready:
            by_job.setdefault(job_of(key), []).append(key)
        out += list(by_job.items())
        todo = [k for k in todo if k not in ready]
    return out


def after_ingest() -> set[AssetKey]:
    """Every asset but the ingest's (what `make demo` runs after `dagster job execute -j ingest_job`)."""
    ingest = set(defs.resolve_job_def(ingest_job.name).asset_layer.executable_asset_keys)
    return set(defs.resolve_asset_graph().materializable_asset_keys) - ingest


def needed_by_new_part() -> set[AssetKey]:
    """What a new LAION part makes out of date: the per-part assets (for that part only) and
    every asset that reads the parts, directly or through another (the cross-part results)."""
    graph = defs.resolve_asset_graph()
    roots = [k for k in graph.materializable_asset_keys if graph.get(k).partitions_def == laion_part]
    return set(AssetSelection.assets(*roots).downstream().resolve(graph))


def run_all(
    instance: DagsterInstance,
    resources: dict | None = None,
    run_config: dict | None = None,
    skip: dict[str, list[str]] | None = None,
    keys: set[AssetKey] | None = None,
    laion_parts: list[str] | None = None,
) -> None:
    """``keys`` (default: everything after the ingest), one run per stage and partition;
    ``laion_parts`` limits the per-part runs to those parts (a new part). ``run_config``
    (``ops: {asset: {config: ...}}``) and ``skip`` ({asset: [partition substrings]}) are for
    tests that run the demo profile from a process loaded with another one, on fewer partitions."""
    ops, skip = (run_config or {}).get("ops", {}), skip or {}
    jobs = Definitions(assets=all_assets, jobs=all_jobs, resources=resources or build_resources())
    for name, stage in stages(after_ingest() if keys is None else keys):
        job = jobs.resolve_job_def(name)
        pdef = job.partitions_def
        partitions = pdef.get_partition_keys(dynamic_partitions_store=instance) if pdef is not None else [None]
        if pdef == laion_part and laion_parts is not None:
            partitions = [p for p in partitions if p in laion_parts]
        for partition in partitions:
            here = [
                k
                for k in stage
                if partition is None or not any(s in str(partition) for s in skip.get(k.to_user_string(), []))
            ]
            if not here:
                continue
            start = time.perf_counter()
            config = {
                "ops": {k.to_python_identifier(): ops[k.to_user_string()] for k in here if k.to_user_string() in ops}
            }
            result = job.execute_in_process(
                run_config=config,
                instance=instance,
                partition_key=partition,
                asset_selection=here,
                raise_on_error=False,
            )
            names = ", ".join(k.to_user_string() for k in here)
            print(
                f"== {job.name}: {names} [{partition or 'all'}]: {'ok' if result.success else 'FAILED'} "
                f"in {time.perf_counter() - start:.1f} s"
            )
            if not result.success:
                raise SystemExit(1)


def main(command: str) -> None:
    resources = build_resources()
    source, catalog = resources["source"], resources["catalog"]
    if command == "register":
        instance = DagsterInstance.get()
        added = new_parts(source, instance)
        if added:
            instance.add_dynamic_partitions(laion_part.name, added)
        new_sets, _ = catalog_changes(catalog, instance)
        if new_sets:
            instance.add_dynamic_partitions(dataset.name, new_sets)
        new_targets, _ = target_changes(catalog, instance)
        if new_targets:
            instance.add_dynamic_partitions(target.name, new_targets)
        new_models, _ = model_changes(catalog, instance)
        if new_models:
            instance.add_dynamic_partitions(model.name, new_models)
        print(
            f"laion_part: {len(added)} added; dataset: {len(new_sets)} added; "
            f"target: {len(new_targets)} added; model: {len(new_models)} added"
        )
    elif command == "parts":
        print("\n".join(sorted(source.parts())))
    elif command == "run":
        run_all(DagsterInstance.get(), resources)
    elif command == "summary":
        tables = resources["lance"].tables()
        for part in sorted(source.parts()):
            rows = (
                tables.count(EMBEDDINGS_TABLE, f"part = {quote_literal(part)}")
                if tables.exists(EMBEDDINGS_TABLE)
                else 0
            )
            print(f"{part}: {rows} rows in {EMBEDDINGS_TABLE}")
    else:
        raise SystemExit(f"unknown command {command!r}; use register, parts, run or summary")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "parts")
