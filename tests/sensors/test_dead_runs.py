"""A run worker killed mid-embedding (kill -9) must not wedge the instance: the dead run holds
the only `gpu` pool slot until dead_runs_sensor fails it and frees the slot; then a new run of
the step completes. Runs go through the `dagster` CLI on an instance built from the project's
dagster.yaml, as a user's would."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, SkipReason, build_sensor_context

from sensors.dead_runs import dead_runs_sensor, sweep_enabled, worker_alive
from tests.conftest import cli_env

ROOT = Path(__file__).resolve().parents[2]
PART = "part-00000"


def _materialize(env: dict, select: str, **kwargs) -> subprocess.Popen:
    dagster = str(Path(sys.executable).parent / "dagster")
    argv = [dagster, "asset", "materialize", "-f", "definitions.py", "--select", select, "--partition", PART]
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
    )


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the run did not finish within {timeout} s (a wedged pool slot?):\n{out.decode()[-3000:]}")
    assert proc.returncode == 0, out.decode()[-3000:]
    return out.decode()


def test_a_run_killed_mid_embedding_frees_the_gpu_slot_and_the_next_run_completes(tmp_path, demo):
    # the project's dagster.yaml: a gpu pool of 1, as on a 1-GPU host; a slow step, to be killed in
    env = cli_env(
        tmp_path, demo, LAIONLAB_CLIP_MODEL="laionlab-tiny", LAIONLAB_BATCH_SIZE="1", LAIONLAB_NUM_WORKERS="0"
    )
    instance = DagsterInstance.from_config(str(tmp_path / "home"))
    instance.add_dynamic_partitions("laion_part", demo.parts)
    assert sweep_enabled(instance)  # local SQLite storage
    _finish(_materialize(env, "laion_metadata,laion_images"), 300)

    victim = _materialize(env, "laion_embeddings")
    deadline = time.monotonic() + 120
    while not instance.event_log_storage.get_concurrency_info("gpu").active_run_ids:
        assert victim.poll() is None, (
            f"the run ended before it could be killed:\n{victim.communicate()[0].decode()[-2000:]}"
        )
        assert time.monotonic() < deadline, "the embedding step never took the gpu slot"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()

    (run,) = [r for r in instance.get_runs() if r.status == DagsterRunStatus.STARTED]
    assert instance.event_log_storage.get_concurrency_info("gpu").active_run_ids == {run.run_id}  # the wedge

    result = dead_runs_sensor(build_sensor_context(instance=instance))
    assert (
        isinstance(result, SkipReason)
        and run.run_id in result.skip_message
        and "1 slot(s) freed" in result.skip_message
    )
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    assert not instance.event_log_storage.get_concurrency_info("gpu").active_run_ids
    failure = [
        e
        for e in instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
    ]
    assert failure and "is gone" in failure[-1].dagster_event.message

    _finish(_materialize(env, "laion_embeddings"), 300)  # no manual step between
    assert instance.get_runs(limit=1)[0].status == DagsterRunStatus.SUCCESS
    assert "no dead runs" in dead_runs_sensor(build_sensor_context(instance=instance)).skip_message


def test_the_sweep_runs_by_default_under_the_daemon():
    from dagster import DefaultSensorStatus

    from definitions import defs

    sensor = defs.get_sensor_def("dead_runs_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 60


def test_live_and_recycled_process_ids():
    me = os.getpid()
    assert worker_alive(me, time.time())
    assert not worker_alive(me, 0.0)  # the pid was recorded long before this process started: reused
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not worker_alive(child.pid, time.time())


def test_the_sweep_is_off_on_shared_storage_unless_asked(monkeypatch):
    instance = DagsterInstance.ephemeral()  # in-memory storage: not SQLite
    assert not sweep_enabled(instance)
    monkeypatch.setenv("LAIONLAB_DEAD_RUN_SWEEP", "on")
    assert sweep_enabled(instance)
    monkeypatch.setenv("LAIONLAB_DEAD_RUN_SWEEP", "maybe")
    with pytest.raises(ValueError, match="LAIONLAB_DEAD_RUN_SWEEP"):
        sweep_enabled(instance)
