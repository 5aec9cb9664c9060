"""What a run costs besides its work: `dagster job execute` of one cheap asset partition.

Headline: the median over ``--repeats`` runs of (wall seconds of the ``dagster job execute``
command) - (seconds of its steps' own compute), target <= 3 s. That difference is what every
run pays before and after its work: the interpreter, loading the code location
(``definitions.py``: Dagster, the assets, the resources and whatever they import), the run's
storage and event writes, and the exit.

The run: the embedded demo (``python -m laionlab.demo --parts 1``), a temporary DAGSTER_HOME
(the repository's ``dagster.yaml``) with that part registered in ``laion_part``, the
LAIONLAB_* locations (source, data root, catalog, allowed file roots) pointing into the
temporary folder, then ``dagster job execute -f definitions.py -a defs -j ingest_job -o
laion_metadata --tags '{"dagster/partition": "part-00000"}'`` (only ``laion_metadata``: one
Parquet file read and written), with the run config ``execution: {config: {in_process: {}}}``
when the job's executor offers that choice (none is needed when the code location's executor
already runs steps in the run's process). The step's compute time is read from the run's
event log in the instance (STEP_START -> STEP_SUCCESS); the run's own span (RUN_START ->
RUN_SUCCESS) is reported too. Also reported: ``import definitions`` alone and ``import
dagster`` alone (each in a fresh interpreter, median of ``--repeats``), and the host load.

Wall-clock figures are only meaningful on an otherwise idle host: the JSON records the load
average before and after. Prints progress, then exactly one JSON line on stdout as its last
line; always exits 0. Run from the repository root: ``python benchmarks/run_overhead.py [--help]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import host_load, run_benchmark, say  # noqa: E402

TARGET_S = 3.0
RUN_TAG = "laionlab/benchmark_run"
IN_PROCESS_RUN_CONFIG = "execution:\n  config:\n    in_process: {}\n"
# which executor the job has, and whether it takes the in_process/multiprocess choice
EXECUTOR_PROBE = """
import json, sys
from definitions import defs
executor = defs.resolve_job_def(sys.argv[1]).executor_def
fields = getattr(executor.config_schema.as_field().config_type, "fields", {}) or {}
print(json.dumps({"executor": executor.name, "takes_in_process": "in_process" in fields}))
"""


def dagster_cli() -> list[str]:
    exe = Path(sys.executable).parent / "dagster"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dagster"]


def run_env(tmp: Path, demo: Path) -> dict:
    """This process's environment without the LAIONLAB_* data locations, plus the temporary ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAIONLAB_") or k == "LAIONLAB_PROFILE"}
    env.pop("PYTHONPATH", None)
    env.update(
        DAGSTER_HOME=str(tmp / "dagster_home"),
        LAIONLAB_SOURCE_URI=str(demo / "laion_parts"),
        LAIONLAB_DEMO_ROOT=str(demo),
        LAIONLAB_DATASET_CATALOG=str(demo / "datasets.yaml"),
        LAIONLAB_ALLOWED_FILE_ROOTS=str(demo),
        LAIONLAB_DATA_ROOT=str(tmp / "lab"),
        LAIONLAB_LANCE_URI=str(tmp / "lab" / "lance"),
    )
    return env


def timed(cmd: list[str], env: dict, timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}: {(proc.stderr or proc.stdout)[-3000:]}")
    return seconds, proc


def import_seconds(statement: str, env: dict, repeats: int, timeout: float) -> list[float]:
    return [round(timed([sys.executable, "-c", statement], env, timeout)[0], 3) for _ in range(repeats)]


def run_timings(instance, tag: str) -> dict:
    """Step compute seconds (STEP_START -> STEP_SUCCESS, summed over steps) and the run's span
    (RUN_START -> RUN_SUCCESS) of the run tagged ``tag``, from the instance's event log."""
    from dagster import DagsterEventType, RunsFilter

    runs = instance.get_runs(RunsFilter(tags={RUN_TAG: tag}))
    if len(runs) != 1:
        raise RuntimeError(f"expected one run tagged {RUN_TAG}={tag}, found {len(runs)}")
    run = runs[0]
    types = {
        DagsterEventType.STEP_START,
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.RUN_START,
        DagsterEventType.RUN_SUCCESS,
    }
    starts, steps, run_span = {}, {}, {}
    for entry in instance.all_logs(run.run_id, of_type=types):
        kind = entry.dagster_event.event_type
        if kind == DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        elif kind == DagsterEventType.STEP_SUCCESS:
            steps[entry.step_key] = entry.timestamp - starts[entry.step_key]
        else:
            run_span[kind] = entry.timestamp
    if not steps or set(steps) != set(starts):
        raise RuntimeError(f"run {run.run_id}: steps started {sorted(starts)}, succeeded {sorted(steps)}")
    return {
        "run_id": run.run_id,
        "steps": {k: round(v, 3) for k, v in steps.items()},
        "step_s": sum(steps.values()),
        "run_span_s": run_span[DagsterEventType.RUN_SUCCESS] - run_span[DagsterEventType.RUN_START],
    }


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs (and imports) timed; the median is reported")
    p.add_argument("--job", default="ingest_job")
    p.add_argument("--op", default="laion_metadata", help="the op (asset) selected in the job")
    p.add_argument("--rows", type=int, default=40, help="rows of the demo part")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed per command")
    return p


def benchmark(args, result: dict) -> None:
    t_all = time.perf_counter()
    load_before = os.getloadavg()[0]
    if load_before > 0.5 * (os.cpu_count() or 1):
        say(
            f"!! host load average {load_before:.1f} on {os.cpu_count()} CPUs before starting: "
            "wall-clock figures will be noisy"
        )
    with tempfile.TemporaryDirectory(prefix="run_overhead_bench_") as tmpdir:
        tmp = Path(tmpdir)
        demo = tmp / "demo"
        env = run_env(tmp, demo)
        home = Path(env["DAGSTER_HOME"])
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        timed(
            [sys.executable, "-m", "laionlab.demo", "--root", str(demo), "--parts", "1", "--rows", str(args.rows)],
            env,
            args.timeout,
        )
        part = json.loads((demo / "manifest.json").read_text())["parts"][0]
        say(f"demo part {part} ({args.rows} rows) in {demo}; DAGSTER_HOME {home}")

        os.environ["DAGSTER_HOME"] = str(home)  # for DagsterInstance.get() here
        from dagster import DagsterInstance

        instance = DagsterInstance.get()
        instance.add_dynamic_partitions("laion_part", [part])

        probe = json.loads(
            timed([sys.executable, "-c", EXECUTOR_PROBE, args.job], env, args.timeout)[1]
            .stdout.strip()
            .splitlines()[-1]
        )
        cmd = [*dagster_cli(), "job", "execute", "-f", "definitions.py", "-a", "defs", "-j", args.job, "-o", args.op]
        if probe["takes_in_process"]:
            config = tmp / "run.yaml"
            config.write_text(IN_PROCESS_RUN_CONFIG)
            cmd += ["-c", str(config)]
        say(
            f"executor {probe['executor']}; run config: "
            f"{'in_process' if probe['takes_in_process'] else 'none (steps already in-process)'}"
        )

        runs = []
        for i in range(args.repeats):
            tag = f"{i}-{uuid.uuid4().hex[:8]}"
            wall, _ = timed([*cmd, "--tags", json.dumps({"dagster/partition": part, RUN_TAG: tag})], env, args.timeout)
            timings = run_timings(instance, tag)
            overhead = wall - timings["step_s"]
            runs.append(
                {
                    "wall_s": round(wall, 3),
                    "step_s": round(timings["step_s"], 3),
                    "overhead_s": round(overhead, 3),
                    "run_span_s": round(timings["run_span_s"], 3),
                    "steps": timings["steps"],
                    "run_id": timings["run_id"],
                }
            )
            say(
                f"[run {i + 1}/{args.repeats}] wall {wall:.2f} s, step {timings['step_s']:.3f} s, "
                f"overhead {overhead:.2f} s"
            )
        instance.dispose()

        imports = import_seconds("import definitions", env, args.repeats, args.timeout)
        dagster_imports = import_seconds("import dagster", env, args.repeats, args.timeout)
        say(f"import definitions: {imports} s; import dagster: {dagster_imports} s")

    value = statistics.median(r["overhead_s"] for r in runs)
    result.update(
        value=round(value, 3),
        meets_target=value <= TARGET_S,
        wall_s=round(statistics.median(r["wall_s"] for r in runs), 3),
        step_s=round(statistics.median(r["step_s"] for r in runs), 3),
        run_span_s=round(statistics.median(r["run_span_s"] for r in runs), 3),
        import_definitions_s=round(statistics.median(imports), 3),
        import_definitions_runs_s=imports,
        import_dagster_s=round(statistics.median(dagster_imports), 3),
        runs=runs,
        job=args.job,
        op=args.op,
        partition=part,
        rows=args.rows,
        executor=probe["executor"],
        run_config="in_process" if probe["takes_in_process"] else None,
        repeats=args.repeats,
        python=sys.version.split()[0],
        **host_load(load_before),
        total_seconds=round(time.perf_counter() - t_all, 1),
    )
    say(f"run overhead (median of {args.repeats}): {value:.2f} s (target <= {TARGET_S} s)")


def main(argv=None) -> None:
    run_benchmark("run_overhead", "s", TARGET_S, make_parser(), benchmark, argv=argv)


if __name__ == "__main__":
    main()
