"""dead_runs_sensor: fail the runs whose worker process died, and free the pool slots they held.

A run worker killed outright (kill -9, the OOM killer, a reboot) never writes its failure: the
run stays STARTED in Dagster's storage, keeps its place in ``max_concurrent_runs``, and keeps
the ``gpu`` pool slot of the step it was in, so every later run waits at its first GPU step
for ever. Dagster's run monitoring cannot see it with the default run launcher (that launcher
has no worker health check). Every run worker records its process id in its first engine
event ("Started process for run (pid: N)", "Executing steps in process (pid: N)"); this sensor
fails each STARTED run whose process is gone (or whose pid now belongs to a younger process)
and frees its slots, then frees the slots still held by runs that have ended (a run marked
canceled by hand, for one). Run monitoring in ``dagster.yaml`` does the latter too.

Process ids mean something on one host only: the sweep acts where runs are local (the default
SQLite storage). On a shared deployment (Postgres, runs on other hosts) it is off unless
``LAIONLAB_DEAD_RUN_SWEEP=on``; ``off`` turns it off everywhere.
"""

from __future__ import annotations

import os

import psutil
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
PID_SLACK_S = 5.0  # the worker starts before it records its pid


def sweep_enabled(instance: DagsterInstance) -> bool:
    setting = (os.environ.get("LAIONLAB_DEAD_RUN_SWEEP") or "auto").lower()
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"LAIONLAB_DEAD_RUN_SWEEP must be auto, on or off, got {setting!r}")
    if setting != "auto":
        return setting == "on"
    return "sqlite" in type(instance.run_storage).__name__.lower()


def worker_pid(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The run worker's process id and when it recorded it, or None (not recorded yet)."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data and data.metadata else None
        if pid is not None:
            return int(pid.value), entry.timestamp
    return None


def worker_alive(pid: int, recorded_at: float) -> bool:
    """Whether process ``pid`` is the one that recorded itself at ``recorded_at`` and still runs."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= recorded_at + PID_SLACK_S
    except psutil.NoSuchProcess:
        return False


def slots_held(instance: DagsterInstance, run_ids: set[str]) -> dict[str, list[str]]:
    """run id → the pools of the slots it holds (one entry per slot)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    held: dict[str, list[str]] = {}
    for pool, info in storage.get_concurrency_infos(list(storage.get_concurrency_keys())).items():
        for slot in info.claimed_slots:
            if slot.run_id in run_ids:
                held.setdefault(slot.run_id, []).append(pool)
    return held


def _free(instance: DagsterInstance, run_id: str, held: dict[str, list[str]]) -> str:
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    pools = held.get(run_id, [])
    return f"{len(pools)} slot(s) freed" + (f" ({', '.join(sorted(pools))})" if pools else "")


def sweep(instance: DagsterInstance) -> list[str]:
    """Fail the STARTED runs whose worker is gone, free their slots and those of ended runs;
    returns what was done, one line each."""
    done = []
    started = [r.dagster_run for r in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED]))]
    dead = {}
    for run in started:
        found = worker_pid(instance, run.run_id)
        if found is not None and not worker_alive(*found):
            dead[run.run_id] = (run, found[0])
    held = slots_held(instance, set(dead))
    for run_id, (run, pid) in dead.items():
        freed = _free(instance, run_id, held)
        instance.report_run_failed(
            run,
            f"the run worker (pid {pid}) is gone: it was killed or crashed without recording its end (kill -9, "
            f"out of memory, a reboot); marked failed by dead_runs_sensor, {freed}",
        )
        done.append(f"run {run_id} ({run.job_name}): worker pid {pid} gone; failed, {freed}")
    storage = instance.event_log_storage
    holders = set(storage.get_concurrency_run_ids()) if storage.supports_global_concurrency_limits else set()
    ended = (
        [r.dagster_run for r in instance.get_run_records(RunsFilter(run_ids=list(holders), statuses=FINISHED))]
        if holders
        else []
    )
    held = slots_held(instance, {r.run_id for r in ended})
    for run in ended:
        if run.run_id in held:
            done.append(
                f"run {run.run_id} ended ({run.status.value}) holding pool slots: {_free(instance, run.run_id, held)}"
            )
    return done


@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Fails runs whose worker process died (kill -9, OOM) and frees the pool slots they held.",
)
def dead_runs_sensor(context: SensorEvaluationContext):
    if not sweep_enabled(context.instance):
        return SkipReason("off: runs may be on other hosts (set LAIONLAB_DEAD_RUN_SWEEP=on to sweep anyway)")
    done = sweep(context.instance)
    for line in done:
        context.log.warning(line)
    return SkipReason("; ".join(done) if done else "no dead runs, no slots held by ended runs")
