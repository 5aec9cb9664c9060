"""`python -m jobs.demo register|parts|run|summary`: the steps of `make demo`.

register: add a partition per demo part, per catalog dataset, retrieval target and model (what the sensors do when
    the daemon runs);
parts:    print the part keys (the Makefile runs `dagster job execute -j ingest_job` per part);
run:      materialise every other asset of the graph, in dependency order, one run per
          partition (or one run for a cross-partition asset), in this process, recorded in
          the instance under DAGSTER_HOME — what a backfill of everything does with the daemon;
summary:  print what the graph holds afterwards.
"""

import sys
import time
from pathlib import Path

import yaml

from dagster import AssetKey, DagsterInstance, materialize

from asset_defs import all_assets
from asset_defs.ingest import EMBEDDINGS_TABLE
from asset_defs.partitions import dataset, laion_part, model, target
from definitions import build_resources, defs
from jobs import ingest_job
from sensors.laion_parts import new_parts
from sensors.reference_datasets import catalog_changes, model_changes, target_changes


def stages(skip: set[AssetKey]) -> list[tuple[object, list]]:
    """Assets in topological order, grouped into consecutive runs of one partitions_def."""
    graph = defs.resolve_asset_graph()
    by_key = {key: a for a in all_assets for key in a.keys}
    out: list[tuple[object, list]] = []
    for key in graph.toposorted_asset_keys:
        if key in skip or key not in by_key:
            continue
        pdef = by_key[key].partitions_def
        if out and out[-1][0] == pdef:
            out[-1][1].append(key)
        else:
            out.append((pdef, [key]))
    return out


DEMO_CONFIG = Path(__file__).with_name("demo_config.yaml")


def run_all(instance: DagsterInstance, resources: dict, config_path: Path = DEMO_CONFIG) -> None:
    config = yaml.safe_load(config_path.read_text()) or {}
    ops, skips = config.get("ops", {}), config.get("skip", {})
    skip = set(defs.resolve_job_def(ingest_job.name).asset_layer.executable_asset_keys)
    skip.add(AssetKey("laion_embeddings_import"))
    for pdef, keys in stages(skip):
        partitions = pdef.get_partition_keys(dynamic_partitions_store=instance) if pdef is not None else [None]
        for partition in partitions:
            skipped = [k for k in keys if partition is not None and any(s in str(partition) for s in skips.get(k.to_python_identifier(), []))]
            if skipped:
                print(f"== {', '.join(k.to_user_string() for k in skipped)} [{partition}]: skipped (demo_config.yaml)")
                keys_here = [k for k in keys if k not in skipped]
            else:
                keys_here = keys
            if not keys_here:
                continue
            start = time.perf_counter()
            run_config = {"ops": {k.to_python_identifier(): ops[k.to_python_identifier()] for k in keys_here if k.to_python_identifier() in ops}}
            result = materialize(
                all_assets, selection=keys_here, resources=resources, instance=instance, partition_key=partition, run_config=run_config
            )
            names = ", ".join(k.to_user_string() for k in keys_here)
            print(f"== {names} [{partition or 'all'}]: {'ok' if result.success else 'FAILED'} in {time.perf_counter() - start:.1f} s")
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
        print(f"laion_part: {len(added)} added; dataset: {len(new_sets)} added; target: {len(new_targets)} added; model: {len(new_models)} added")
    elif command == "parts":
        print("\n".join(sorted(source.parts())))
    elif command == "run":
        run_all(DagsterInstance.get(), resources)
    elif command == "summary":
        tables = resources["lance"].tables()
        for part in sorted(source.parts()):
            rows = tables.count(EMBEDDINGS_TABLE, f"part = '{part}'") if tables.exists(EMBEDDINGS_TABLE) else 0
            print(f"{part}: {rows} rows in {EMBEDDINGS_TABLE}")
    else:
        raise SystemExit(f"unknown command {command!r}; use register, parts, run or summary")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "parts")
