"""What a new LAION part costs: the incremental update against a full rebuild.

Headline: (seconds to bring the graph up to date after a fourth part is added to a 3-part
graph) / (seconds to build the whole graph from scratch on the 4 parts), target <= 0.3 (the
graph issue's "recomputes only that part's per-part rows plus the cross-part summaries").

Both sides run the same named jobs in this process, one run per stage and partition
(``jobs.demo.run_all``), with the demo profile (``LAIONLAB_PROFILE=demo``) on the embedded
demo built with ``--rows`` rows per part:

- update: the new part's ingest and per-part analyses, then every asset that reads the parts
  (``jobs.demo.needed_by_new_part``: the cross-part results, eval-to-LAION search, SWAT
  retrieval ...), on top of a 3-part graph built first (not timed);
- full: ingest of all 4 parts and every asset, into a fresh data root and instance.

The JSON line also lists the update's slowest runs, so what keeps the ratio up is visible.
Wall-clock figures are only meaningful on an otherwise idle host (the load is recorded).
Prints progress, then exactly one JSON line; always exits 0. ``python benchmarks/new_part.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["LAIONLAB_PROFILE"] = "demo"  # before the code location is imported: its defaults

from benchmarks._common import host_load, run_benchmark, say  # noqa: E402

TARGET = 0.3


def _graph(folder: Path, demo_root: Path, parts: list[str]):
    """Resources on ``folder`` and an ephemeral instance with ``parts`` and the catalog registered."""
    from dagster import DagsterInstance

    from asset_defs.partitions import dataset, laion_part, model, target
    from definitions import build_resources

    resources = build_resources(
        data_root=str(folder), source_uri=str(demo_root / "laion_parts"), catalog=str(demo_root / "datasets.yaml")
    )
    catalog = resources["catalog"]
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(laion_part.name, parts)
    instance.add_dynamic_partitions(dataset.name, sorted(catalog.datasets()))
    instance.add_dynamic_partitions(target.name, sorted(catalog.targets()))
    instance.add_dynamic_partitions(model.name, sorted(catalog.models()))
    return resources, instance


def _timed(label: str, fn) -> tuple[float, list[tuple[float, str]]]:
    """Seconds of ``fn()``, and its runs' ``(seconds, what)`` from the runner's lines."""
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        fn()
    seconds = time.perf_counter() - start
    runs = [(float(m.group(2)), m.group(1)) for m in re.finditer(r"^== (.*): ok in ([\d.]+) s$", out.getvalue(), re.M)]
    say(f"{label}: {seconds:.1f} s, {len(runs)} runs")
    return seconds, runs


def body(args: argparse.Namespace, result: dict) -> dict:
    from jobs.demo import after_ingest, needed_by_new_part, run_all
    from laionlab.demo import DemoConfig, build_demo

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="new-part-") as tmp:
        tmp = Path(tmp)
        demo = build_demo(tmp / "demo", DemoConfig(n_parts=4, rows_per_part=args.rows))
        os.environ["LAIONLAB_ALLOWED_FILE_ROOTS"] = demo.root
        parts, new = demo.parts[:3], demo.parts[3]
        everything = after_ingest() | needed_by_new_part()  # the ingest too

        resources, instance = _graph(tmp / "lab3", Path(demo.root), parts)
        say(f"building the 3-part graph ({args.rows} rows per part; not timed)")
        _timed("3-part graph", lambda: run_all(instance, resources, keys=everything))
        instance.add_dynamic_partitions("laion_part", [new])
        update_s, update_runs = _timed(
            f"update after {new}", lambda: run_all(instance, resources, keys=needed_by_new_part(), laion_parts=[new])
        )

        resources, instance = _graph(tmp / "lab4", Path(demo.root), demo.parts)
        full_s, full_runs = _timed("full rebuild on 4 parts", lambda: run_all(instance, resources, keys=everything))
    ratio = update_s / full_s
    slowest = sorted(update_runs, reverse=True)[:5]
    return {
        "value": round(ratio, 3),
        "meets_target": ratio <= TARGET,
        "update_s": round(update_s, 1),
        "update_runs": len(update_runs),
        "full_s": round(full_s, 1),
        "full_runs": len(full_runs),
        "rows_per_part": args.rows,
        "update_slowest_runs": [f"{s:.1f} s {what}" for s, what in slowest],
        **host_load(load),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="rows per demo part (default 200, as make demo)")
    run_benchmark("new_part", "ratio", TARGET, parser, body, argv=argv)


if __name__ == "__main__":
    main()
