"""The device lease on CPU: which index each concurrent lease gets, waiting, crash release,
CUDA_VISIBLE_DEVICES mapping and the timeout message. Processes are started with spawn."""

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from pathlib import Path

import pytest

from laionlab import devices
from laionlab.devices import device_string, lease_device, torch_device, visible_devices

SPAWN = mp.get_context("spawn")


def _hold(lock_dir: str, n_devices: int, ready, release) -> None:
    """Child process: lease a device, report (pid, index), hold it until told on `release`."""
    with lease_device(n_devices, lock_dir, timeout_s=10, owner="test child") as index:
        ready.put((os.getpid(), index))
        with contextlib.suppress(queue.Empty):
            release.get(timeout=30)


@pytest.fixture(autouse=True)
def no_visible_devices_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.fixture
def lock_dir(tmp_path):
    return str(tmp_path / "locks")


@pytest.fixture
def holders(lock_dir):
    """Start child processes that each hold a lease; all are released and joined at teardown.
    (A queue, not an Event, says "release": Event.set() blocks on a sleeper that was killed.)"""
    started = []

    def start(n_devices: int):
        ready, release = SPAWN.Queue(), SPAWN.Queue()
        proc = SPAWN.Process(target=_hold, args=(lock_dir, n_devices, ready, release), daemon=True)
        proc.start()
        pid, index = ready.get(timeout=30)
        started.append((proc, release))
        return proc, release, index

    yield start
    for proc, release in started:
        release.put(None)
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def test_device_strings():
    assert device_string(0) == "cuda:0" and device_string(3) == "cuda:3"
    assert torch_device(1) == "cuda:1" and torch_device(None) == "cpu"
    with pytest.raises(ValueError, match="index"):
        device_string(-1)


def test_two_threads_get_different_devices(lock_dir):
    got, both_in = [], threading.Barrier(2, timeout=10)

    def worker():
        with lease_device(2, lock_dir, timeout_s=5) as index:
            got.append(index)
            both_in.wait()  # both leases are held at once here

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(got) == [0, 1]


def test_two_processes_get_different_devices_and_a_third_waits_for_a_release(lock_dir, holders):
    first, release_first, i1 = holders(2)
    _, _, i2 = holders(2)
    assert {i1, i2} == {0, 1}

    acquired = []

    def third():
        with lease_device(2, lock_dir, timeout_s=15, poll_s=0.02) as index:
            acquired.append((index, time.monotonic()))

    waiter = threading.Thread(target=third)
    waiter.start()
    time.sleep(0.5)
    assert acquired == []  # both devices are held: the third lease waits
    released_at = time.monotonic()
    release_first.put(None)
    first.join(10)
    waiter.join(10)
    assert len(acquired) == 1
    index, at = acquired[0]
    assert index == i1 and at >= released_at


def test_a_killed_holder_frees_its_device(lock_dir, holders):
    proc, _, index = holders(1)
    assert index == 0
    with pytest.raises(TimeoutError, match=f"pid {proc.pid} "):
        with lease_device(1, lock_dir, timeout_s=0.2):
            pass
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup code runs: the kernel drops the flock
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    with lease_device(1, lock_dir, timeout_s=2) as index:
        assert index == 0


def test_cuda_visible_devices_names_the_physical_devices(lock_dir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_devices(2) == ["3", "5"]
    with lease_device(2, lock_dir, owner="a") as first, lease_device(2, lock_dir, owner="b") as second:
        assert (first, second) == (0, 1)  # torch ordinals: cuda:0 is GPU 3, cuda:1 is GPU 5
        held = {p.name: p.read_text() for p in Path(lock_dir).iterdir()}
    assert sorted(held) == ["cuda-3.lock", "cuda-5.lock"]
    assert held["cuda-3.lock"].startswith(f"pid {os.getpid()} ") and "(a)" in held["cuda-3.lock"]
    assert "(b)" in held["cuda-5.lock"]
    with pytest.raises(ValueError, match=r"n_devices=3 but CUDA_VISIBLE_DEVICES='3,5' lists 2"):
        visible_devices(3)


def test_default_device_count_comes_from_torch(lock_dir, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with lease_device(lock_dir=lock_dir) as index:
        assert index is None and torch_device(index) == "cpu"
    assert not os.path.exists(lock_dir)  # the no-op lease touches nothing

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert visible_devices() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aa, GPU-bb")
    assert visible_devices() == ["GPU-aa", "GPU-bb"]
    with lease_device(lock_dir=lock_dir) as index:
        assert index == 0 and os.path.exists(os.path.join(lock_dir, "cuda-GPU-aa.lock"))


def test_timeout_names_lock_dir_and_holder(lock_dir):
    with lease_device(1, lock_dir, owner="run r1 / step laion_embeddings") as index:
        assert index == 0
        started = time.monotonic()
        with pytest.raises(TimeoutError) as err:
            with lease_device(1, lock_dir, timeout_s=0.3, poll_s=0.05):
                pass
        assert 0.3 <= time.monotonic() - started < 3
    message = str(err.value)
    assert "no GPU free after 0.3 s" in message and repr(lock_dir) in message
    assert f"device 0: pid {os.getpid()} " in message and "(run r1 / step laion_embeddings)" in message
    assert "LAIONLAB_GPU_POOL_LIMIT" in message


def test_lease_is_released_when_the_block_raises(lock_dir):
    with pytest.raises(RuntimeError):
        with lease_device(1, lock_dir):
            raise RuntimeError("step failed")
    with lease_device(1, lock_dir, timeout_s=0) as index:
        assert index == 0
    assert open(os.path.join(lock_dir, "cuda-0.lock")).read() == ""  # holder text cleared


def test_default_lock_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(devices.LOCK_DIR_ENV, str(tmp_path / "shared"))
    assert devices.default_lock_dir() == str(tmp_path / "shared")
    with lease_device(1) as index:
        assert index == 0 and (tmp_path / "shared" / "cuda-0.lock").exists()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_devices": -1}, "n_devices"),
        ({"n_devices": 1.5}, "n_devices"),
        ({"n_devices": 1, "timeout_s": -1}, "timeout_s"),
        ({"n_devices": 1, "poll_s": 0}, "poll_s"),
    ],
)
def test_bad_arguments_are_named(kwargs, name, lock_dir):
    with pytest.raises(ValueError, match=name):
        with lease_device(lock_dir=lock_dir, **kwargs):
            pass
