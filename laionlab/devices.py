"""One GPU per concurrent step: a crash-safe device lease over one lock file per device.

Serves every GPU-bound asset (``pool="gpu"``: embedding, k-means, similarity search). Dagster's
``gpu`` concurrency pool caps how many such steps run at once (``LAIONLAB_GPU_POOL_LIMIT`` = the
number of GPUs; README, "Scaling out"), but it does not say *which* slot a step holds: every step
would otherwise pick ``cuda`` = ``cuda:0`` and N steps would share the first GPU. A step that
runs inside ``lease_device()`` gets a device no other lease on the host holds::

    with lease_device() as index:          # None on a machine without CUDA
        spec = ClipSpec(..., device=torch_device(index))

Why ``fcntl.flock`` on one file per device:

- the kernel drops an flock when the last file descriptor of the lock's open file is closed,
  which happens when its process exits, however it exits: SIGKILL, the OOM killer, a segfault
  in a CUDA kernel. There is no stale lock to clean up and no pid file to trust. (Children
  forked inside the lease, e.g. DataLoader workers, share that open file: a killed step's
  device is free once they have exited too. Programs it execs do not inherit it.);
- an flock belongs to the open file, not to the process (unlike ``fcntl.lockf``/POSIX locks),
  so two threads of one process that each open the file also exclude each other;
- locks are taken non-blocking over the devices in turn, so a step takes the first free one.

The lock file of the device a lease holds contains the holder's pid and ``owner`` text (e.g. a
run id and step key), only to name it in the error when every device stays taken. The lock files
must be on a local filesystem shared by every process that uses the GPUs of the host (flock over
NFS is not reliable); the default is ``$LAIONLAB_DEVICE_LOCK_DIR`` or ``<tmp>/laionlab-devices``.

Devices are named by the entries of ``CUDA_VISIBLE_DEVICES`` when it is set (``"3,5"`` → lock
files ``cuda-3.lock`` and ``cuda-5.lock``), so processes that see different subsets of the GPUs
still agree on which physical device is taken, as long as they all name GPUs the same way
(indices, or UUIDs); the index a lease yields is the device's position in that list, i.e. the
ordinal torch uses (``cuda:0`` is physical GPU 3 above).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from laionlab import validate

LOCK_DIR_ENV = "LAIONLAB_DEVICE_LOCK_DIR"
# Long enough to ride out a step that outlives the pool's view of it (a GPU held by a process
# outside Dagster, or a pool limit above the GPU count), short enough that a stuck lease fails
# a run instead of hanging it for the night.
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_POLL_S = 0.1


def default_lock_dir() -> str:
    """``$LAIONLAB_DEVICE_LOCK_DIR``, else ``<tmp>/laionlab-devices``."""
    return os.environ.get(LOCK_DIR_ENV) or os.path.join(tempfile.gettempdir(), "laionlab-devices")


def device_string(index: int) -> str:
    """The torch device of CUDA ordinal ``index``: ``"cuda:<index>"``."""
    return f"cuda:{validate.int_at_least('index', index, 0)}"


def torch_device(index: int | None) -> str:
    """The torch device a lease stands for: ``"cuda:<index>"``, or ``"cpu"`` for the no-op
    lease (``None``) of a machine without GPU."""
    return "cpu" if index is None else device_string(index)


def visible_devices(n_devices: int | None = None) -> list[str]:
    """The physical ids of the devices this process may lease, in CUDA ordinal order.

    ``CUDA_VISIBLE_DEVICES`` set: its entries (indices, ``GPU-<uuid>`` or ``MIG-<uuid>``), the
    first ``n_devices`` of them; unset: ``"0" … "n_devices-1"``. ``n_devices=None`` counts the
    devices torch sees (``torch.cuda.device_count()``, which itself honours the variable), so a
    machine without CUDA has none.
    """
    if n_devices is not None:
        n_devices = validate.int_at_least("n_devices", n_devices, 0)
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = None if listed is None else [e.strip() for e in listed.split(",") if e.strip()]
    if n_devices is None:
        import torch

        n_devices = torch.cuda.device_count()
        if entries is not None:
            n_devices = min(n_devices, len(entries))
    if entries is None:
        return [str(i) for i in range(n_devices)]
    if n_devices > len(entries):
        raise ValueError(
            f"n_devices={n_devices} but CUDA_VISIBLE_DEVICES={listed!r} lists {len(entries)} device(s); "
            "lease at most the listed devices"
        )
    return entries[:n_devices]


def _lock_path(lock_dir: Path, physical_id: str) -> Path:
    return lock_dir / f"cuda-{re.sub(r'[^A-Za-z0-9_.-]', '_', physical_id)}.lock"


def _open_lock_dir(lock_dir: str) -> Path:
    path = Path(lock_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create the device lock dir {lock_dir!r} (set {LOCK_DIR_ENV}): {exc}") from exc
    return path


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when another lease holds it."""
    try:
        # O_CLOEXEC (Python's default): a program the step execs does not keep the lease alive.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError as exc:
        raise PermissionError(
            f"cannot open the device lock file {str(path)!r}: {exc}; every process sharing the GPUs "
            f"needs write access to the lock dir (set {LOCK_DIR_ENV})"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def _write_holder(fd: int, owner: str | None) -> None:
    text = f"pid {os.getpid()} on {socket.gethostname()}" + (f" ({owner})" if owner else "") + "\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _holders(paths: list[tuple[str, Path]]) -> str:
    described = []
    for physical_id, path in paths:
        try:
            holder = path.read_text().strip() or "holder not recorded"
        except OSError:
            holder = "holder not recorded"
        described.append(f"device {physical_id}: {holder}")
    return "; ".join(described)


def _acquire(paths: list[tuple[str, Path]], directory: Path, timeout_s: float, poll_s: float) -> tuple[int, int]:
    """(ordinal, locked fd) of the first free device, trying all of them every ``poll_s`` s."""
    deadline = time.monotonic() + timeout_s
    while True:
        for index, (_, path) in enumerate(paths):
            fd = _try_lock(path)
            if fd is not None:
                return index, fd
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"no GPU free after {timeout_s:g} s: all {len(paths)} device lock(s) in {str(directory)!r} "
                f"are held ({_holders(paths)}). Each concurrent GPU step leases one device: set the "
                "`gpu` pool limit (LAIONLAB_GPU_POOL_LIMIT) to at most the GPU count, or stop the "
                "processes named here"
            )
        time.sleep(poll_s)


@contextlib.contextmanager
def lease_device(
    n_devices: int | None = None,
    lock_dir: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    poll_s: float = DEFAULT_POLL_S,
    owner: str | None = None,
) -> Iterator[int | None]:
    """Hold one device exclusively for the ``with`` block; yield its CUDA ordinal.

    n_devices: devices to lease among (default: those torch sees; see ``visible_devices``).
        With none (a CPU machine) the lease is a no-op that yields None.
    lock_dir: where the per-device lock files live (default: ``default_lock_dir()``); every
        process sharing the host's GPUs must use the same one.
    timeout_s: how long to wait while every device is leased, polling every ``poll_s`` s, before
        raising TimeoutError naming the lock dir and the holders' pids.
    owner: free text recorded in the lock file for that message (e.g. ``"run abc / step x"``).

    The lease ends when the block exits, or when the process dies, whatever kills it.
    """
    timeout_s = validate.real("timeout_s", timeout_s, lo=0)
    poll_s = validate.real("poll_s", poll_s, lo=0, lo_open=True)
    devices = visible_devices(n_devices)
    if not devices:
        yield None
        return
    directory = _open_lock_dir(lock_dir or default_lock_dir())
    paths = [(physical_id, _lock_path(directory, physical_id)) for physical_id in devices]
    index, fd = _acquire(paths, directory, timeout_s, poll_s)
    try:
        _write_holder(fd, owner)
        yield index
    finally:
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
