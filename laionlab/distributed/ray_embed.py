"""The ingest on a Ray cluster: embeddings through a Ray Data actor pool, downloads through
img2dataset's ``distributor="ray"``.

Used when a Ray address is configured; without one the local path (``encode_shards``,
``download_part`` with img2dataset's multiprocessing) runs as before. Both functions hand back
what the local path hands back (``EmbeddedBatch`` batches, a ``DownloadResult``), so the caller
writes them through the same ``embeddings_batch`` + ``LanceTables.replace_part`` atomic write.

Embedding: a Ray Dataset of shard paths (one block per shard) is mapped by a fixed pool of
actors (``ActorPoolStrategy(size=concurrency)``, ``num_gpus`` each on GPU clusters). Each actor
loads the open_clip model once and runs the project's one embedding loop, ``encode_shards``, on
the shard it is handed, yielding numpy columns that stream back to the driver. So decoding, the
skip rule for undecodable samples and the L2-normalised float32 outputs are the local path's by
construction, and only embeddings travel through the object store, not image bytes. Parallelism
is one actor per shard at a time (as the local path has one DataLoader worker per shard); on a
GPU a fractional ``num_gpus_per_actor`` (0.25: four actors share a GPU) lets one actor decode
JPEGs while another runs its forward pass (not measured here: no GPU run yet).

Downloading: img2dataset (1.47) submits one Ray task per input shard of
``number_sample_per_shard`` rows from the process that calls ``img2dataset.download``, here the
child process of ``download_part``, which finds the cluster through ``RAY_ADDRESS`` (Ray's
auto-connect). What that distributor does and does not do is listed at ``ray_download_part``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from laionlab.embed.encode import EmbeddedBatch, EncodeStats, encode_shards
from laionlab.embed.model import ClipSpec, load_clip, validate_spec
from laionlab.embed.pipeline import DECODE_MODES
from laionlab.io.download import DownloadResult, DownloadSettings, download_part

log = logging.getLogger(__name__)

RAY_EXTRA_HINT = "install the ray extra (pip install -e '.[ray]')"
# the offline/quiet switches the Makefile and download_part set; the actors get the driver's values
FORWARDED_ENV = ("HF_HUB_OFFLINE", "NO_ALBUMENTATIONS_UPDATE", "TOKENIZERS_PARALLELISM", "WANDB_MODE")
_ENV_LOCK = threading.Lock()


def _import_ray():
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"Ray is not installed; {RAY_EXTRA_HINT}") from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` or ``ray://host:port``; None for ``auto``."""
    if address == "auto":
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"ray address must be 'auto', 'host:port' or 'ray://host:port', got {address!r}")
    return host.strip("[]"), int(port)


def _same_endpoint(a: str, b: str) -> bool:
    try:
        (ha, pa), (hb, pb) = _host_port(a), _host_port(b)
        return pa == pb and socket.gethostbyname(ha) == socket.gethostbyname(hb)
    except (TypeError, ValueError, OSError):
        return False


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raise ConnectionError naming ``address`` when nothing listens there (``auto`` is left to
    Ray, which looks for a cluster started on this machine)."""
    endpoint = _host_port(address)
    if endpoint is None:
        return
    try:
        with socket.create_connection(endpoint, timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConnectionError(
            f"no Ray cluster reachable at {address!r} ({type(exc).__name__}: {exc}); start one with "
            f"`ray start --head --port=PORT` or correct the address"
        ) from exc


def connect(address: str, runtime_env: dict | None = None, timeout_s: float = 5.0) -> str:
    """Connect this process to the Ray cluster at ``address`` (``host:port`` of its GCS,
    ``ray://host:port`` or ``auto``), or reuse the connection it already has to that cluster.

    runtime_env: the job's Ray runtime env when this call opens the connection (default
    ``default_runtime_env()``; ``{}`` relies on what the cluster has installed); an existing
    connection keeps its own. Returns the cluster's GCS address. The connection stays open for
    the next part.
    """
    ray = _import_ray()
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"address must be a Ray cluster address such as '127.0.0.1:6379', got {address!r}")
    address = address.strip()
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address == "auto" or address == current or _same_endpoint(address, current):
            return current
        raise RuntimeError(
            f"this process is already connected to the Ray cluster at {current!r}, not {address!r}; "
            f"call ray.shutdown() first"
        )
    _host_port(address)  # a malformed address is a ValueError, not a connection problem
    check_reachable(address, timeout_s)
    try:
        ray.init(
            address=address,
            ignore_reinit_error=True,
            logging_level=logging.WARNING,
            runtime_env=default_runtime_env() if runtime_env is None else runtime_env,
        )
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError or TimeoutError here
        raise ConnectionError(
            f"could not connect to the Ray cluster at {address!r}: {type(exc).__name__}: {exc}. The cluster must "
            f"run Ray {ray.__version__} like this process; under token authentication (Ray's default for a new "
            f"head) RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token) must be "
            f"set here before ray is imported"
        ) from exc
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # Ray Client connections have no GCS address on this side
        return address


def _actor_spec(spec: ClipSpec, num_gpus_per_actor: float) -> ClipSpec:
    """The spec the actors load: Ray decides which GPU an actor sees (CUDA_VISIBLE_DEVICES)."""
    if num_gpus_per_actor > 0:
        if spec.device not in ("auto", "cuda"):
            raise ValueError(
                f"num_gpus_per_actor={num_gpus_per_actor} lets Ray assign each actor its GPU; "
                f"spec.device must be 'auto' or 'cuda', got {spec.device!r}"
            )
        return replace(spec, device="cuda")
    if spec.device not in ("auto", "cpu"):
        raise ValueError(
            f"spec.device={spec.device!r} needs num_gpus_per_actor > 0 (actors that reserve no GPU must not use one)"
        )
    return replace(spec, device="cpu")


def _check_resources(address: str, num_cpus: float, num_gpus: float) -> None:
    ray = _import_ray()
    have = ray.cluster_resources()
    for name, need in (("CPU", num_cpus), ("GPU", num_gpus)):
        if need > have.get(name, 0):
            raise ValueError(
                f"each actor asks for {need} {name} but the Ray cluster at {address!r} has "
                f"{have.get(name, 0)} in all (an autoscaling cluster must have such a node up first)"
            )


def default_runtime_env() -> dict:
    """Ship the driver's laionlab to the workers (so the project's model configs and this
    module are the driver's version) and forward the offline switches the local path sets,
    and the driver's fsspec configuration (``FSSPEC_*``: endpoint, credentials) so actors open
    shards on the same object store.

    Ray uploads local folders only with the job's runtime env (``ray.init``), so this applies
    to connections that ``connect`` opens."""
    import laionlab
    from laionlab.io.files import fsspec_env

    env = {**fsspec_env(), **{k: v for k, v in os.environ.items() if k in FORWARDED_ENV or k.startswith("FSSPEC_")}}
    return {"py_modules": [str(Path(laionlab.__file__).parent)], "env_vars": env}


def count_samples(shard: str) -> int:
    """Samples in one webdataset tar (distinct keys, webdataset's rule), from the member headers."""
    import fsspec
    from webdataset.tariterators import base_plus_ext

    local = "://" not in shard or shard.startswith("file://")
    keys = set()
    with fsspec.open(shard, "rb") as f, tarfile.open(fileobj=f, mode="r:*" if local else "r|*") as tar:
        for member in tar:
            name = member.name
            if not member.isfile() or ("/" not in name and name.startswith("__") and name.endswith("__")):
                continue
            keys.add(base_plus_ext(name)[0])
    keys.discard(None)
    return len(keys)


class ShardEncoder:
    """Ray Data actor: loads the model once, then encodes each shard it is handed with
    ``encode_shards``. Output columns: uid, image_emb/text_emb ``(n, d)`` float32 unit-norm,
    image_norm/text_norm ``(n,)``, valid (False only on the one placeholder row of a shard with
    no decodable sample) and shard_samples (the shard's sample count on its first row, else 0)."""

    def __init__(self, spec: ClipSpec, batch_size: int, num_workers: int, loader_options: dict | None = None):
        self.clip = load_clip(spec)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.loader_options = loader_options or {}

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        for shard in batch["shard"]:
            shard = str(shard)
            samples, rows = count_samples(shard), 0
            for b in encode_shards(self.clip, [shard], self.batch_size, self.num_workers, **self.loader_options):
                yield self._columns(
                    b.uid, b.image_emb, b.text_emb, b.image_norm, b.text_norm, samples if rows == 0 else 0
                )
                rows += len(b)
            if rows == 0:  # the shard's sample count must still reach the driver
                zeros = np.zeros((1, self.clip.embed_dim), np.float32)
                yield self._columns([""], zeros, zeros, zeros[:, 0], zeros[:, 0], samples, valid=False)

    @staticmethod
    def _columns(uid, image_emb, text_emb, image_norm, text_norm, shard_samples: int, valid: bool = True) -> dict:
        n = len(uid)
        first = np.zeros(n, np.int64)
        first[0] = shard_samples
        return {
            "uid": np.asarray(uid, dtype=str),
            "image_emb": image_emb,
            "text_emb": text_emb,
            "image_norm": image_norm,
            "text_norm": text_norm,
            "valid": np.full(n, valid),
            "shard_samples": first,
        }


def ray_encode_shards(
    spec: ClipSpec,
    shards: Sequence[str | Path],
    address: str,
    batch_size: int = 256,
    concurrency: int = 2,
    num_gpus_per_actor: float = 0.0,
    num_cpus_per_actor: float = 1.0,
    num_workers: int = 0,
    stats: EncodeStats | None = None,
    runtime_env: dict | None = None,
    decode: str = "auto",
    jpeg_draft: bool = True,
) -> Iterator[EmbeddedBatch]:
    """Encode every (image, caption) sample of the shards on the Ray cluster at ``address``.

    The Ray counterpart of ``encode_shards``: same batches (uid, unit-norm ``(n, d)`` float32
    image/text embeddings, raw norms), in completion order rather than shard order; undecodable
    samples are skipped and counted in ``stats.skipped`` (samples in the shards minus rows).
    concurrency: actors in the pool (at most one per shard); each reserves ``num_cpus_per_actor``
    CPUs and ``num_gpus_per_actor`` GPUs (0: the model runs on the actor's CPU).
    num_workers: DataLoader workers inside an actor (an actor encodes one shard at a time, so
    more than 1 does not help). runtime_env: see ``connect`` (used when this call connects).
    decode, jpeg_draft: as ``encode_shards`` (each actor resolves ``auto`` on its own device).

    Arguments, the model name and the cluster's resources are checked before this returns; the
    model is loaded on the actors, not here.
    """
    shards = [str(s) for s in shards]
    if not shards:
        raise ValueError("no shards to encode")
    missing = [s for s in shards if "://" not in s and not Path(s).exists()]
    if missing:
        raise FileNotFoundError(f"shards not found: {missing[:5]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1 actor, got {concurrency}")
    if num_gpus_per_actor < 0 or num_cpus_per_actor <= 0:
        raise ValueError(
            "num_gpus_per_actor must be >= 0 and num_cpus_per_actor > 0, "
            f"got {num_gpus_per_actor} and {num_cpus_per_actor}"
        )
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {list(DECODE_MODES)}, got {decode!r}")
    actor_spec = _actor_spec(spec, num_gpus_per_actor)
    validate_spec(actor_spec)  # an unknown model fails here, not in every actor
    gcs = connect(address, runtime_env)
    _check_resources(gcs, num_cpus_per_actor, num_gpus_per_actor)
    import ray.data

    dataset = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards)).map_batches(
        ShardEncoder,
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(concurrency, len(shards))),
        fn_constructor_kwargs={
            "spec": actor_spec,
            "batch_size": batch_size,
            "num_workers": num_workers,
            "loader_options": {"decode": decode, "jpeg_draft": jpeg_draft},
        },
        num_cpus=num_cpus_per_actor,
        num_gpus=num_gpus_per_actor,
    )
    return _collect(dataset, batch_size, stats if stats is not None else EncodeStats())


def _collect(dataset, batch_size: int, stats: EncodeStats) -> Iterator[EmbeddedBatch]:
    start = time.perf_counter()
    samples = rows = 0
    for cols in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        samples += int(cols["shard_samples"].sum())
        valid = cols["valid"]
        if not valid.all():
            cols = {k: v[valid] for k, v in cols.items()}
        if len(cols["uid"]) == 0:
            continue
        rows += len(cols["uid"])
        stats.samples += len(cols["uid"])
        yield EmbeddedBatch(
            [str(u) for u in cols["uid"]],
            np.asarray(cols["image_emb"], np.float32),
            np.asarray(cols["text_emb"], np.float32),
            np.asarray(cols["image_norm"], np.float32),
            np.asarray(cols["text_norm"], np.float32),
        )
    stats.skipped += samples - rows
    if samples > rows:
        log.warning("%d of %d samples could not be decoded and were skipped", samples - rows, samples)
    stats.seconds += time.perf_counter() - start


def ray_download_settings(settings: DownloadSettings) -> DownloadSettings:
    """``settings`` with img2dataset's ``distributor="ray"``.

    Checked here because img2dataset's ray distributor is a silent no-op when ``import ray``
    fails: it would download nothing and every uid would come back ``not_attempted``.
    """
    _import_ray()
    return replace(settings, distributor="ray")


@contextmanager
def _environ(name: str, value: str):
    with _ENV_LOCK:
        old = os.environ.get(name)
        os.environ[name] = value
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def ray_download_part(
    metadata, output_folder: str, settings: DownloadSettings, address: str, timeout_s: float = 5.0
) -> DownloadResult:
    """``download_part`` with img2dataset's ray distributor on the cluster at ``address``.

    ``download_part`` runs img2dataset in a child process, which inherits ``RAY_ADDRESS`` (set
    here for the duration of the call) and is connected by Ray's auto-connect when img2dataset
    submits its first task. What img2dataset 1.47's ray distributor does:
    - one Ray task (1 CPU, ``thread_count`` download threads) per input shard of
      ``number_sample_per_shard`` rows: a part needs several shards to spread at all;
    - ``processes_count`` is ignored (the cluster's CPUs bound the parallelism);
    - a shard whose task fails is not retried (``max_shard_retry`` is not used; its uids come
      back ``not_attempted``);
    - tasks read their input and write the tars and status parquet files at the paths the
      child gives them, so on a cluster of several machines ``output_folder`` must be on storage
      every node mounts at the same path;
    - workers import img2dataset (and laionlab) from the cluster's own environment; the child
      connects with a runtime env that installs laionlab's network guard, request deadline and
      pixel cap in each worker (``laionlab.io.download._connect_ray_guarded``).
    """
    ray = _import_ray()
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"address must be a Ray cluster address such as '127.0.0.1:6379', got {address!r}")
    address = address.strip()
    settings = ray_download_settings(settings)
    if ray.is_initialized() and (address == "auto" or _same_endpoint(address, ray.get_runtime_context().gcs_address)):
        address = ray.get_runtime_context().gcs_address  # a cluster this process started has no 'auto'
    else:
        _host_port(address)
        check_reachable(address, timeout_s)
    with _environ("RAY_ADDRESS", address):
        return download_part(metadata, output_folder, settings)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session
            pids.append(int(entry))
    return pids


class LocalHead:
    """A single-node Ray head on 127.0.0.1 for tests, benchmarks and the demo (Linux).

    ``ray start --head --block`` runs in a session of its own; ``stop`` sends it SIGTERM and
    then SIGKILLs whatever is left of that session by process id (Ray Data's detached actors
    keep a head from stopping on SIGTERM alone). Every port that Ray would take at a fixed
    number is a free one, so two heads on one machine do not clash. Processes on this machine
    that connect to it need ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in their environment before
    ``import ray`` (Ray then keeps to loopback instead of the machine's outward address) and,
    under token authentication (Ray's default for a new head), the head's
    ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN``: both are read from ``os.environ`` when it starts.
    """

    def __init__(
        self, num_cpus: int = 2, num_gpus: int = 0, object_store_bytes: int = 200_000_000, start_timeout_s: float = 90
    ):
        if num_cpus < 1 or num_gpus < 0:
            raise ValueError(f"num_cpus must be >= 1 and num_gpus >= 0, got {num_cpus} and {num_gpus}")
        port, client, dashboard, agent = (_free_port() for _ in range(4))
        self.address = f"127.0.0.1:{port}"
        self.temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's unix sockets live in it
        self.log_path = Path(self.temp_dir) / "head.log"
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ray.scripts.scripts",
                    "start",
                    "--head",
                    "--block",
                    f"--port={port}",
                    "--node-ip-address=127.0.0.1",
                    f"--num-cpus={num_cpus}",
                    f"--num-gpus={num_gpus}",
                    "--include-dashboard=false",
                    "--disable-usage-stats",
                    f"--temp-dir={self.temp_dir}",
                    f"--object-store-memory={object_store_bytes}",
                    f"--ray-client-server-port={client}",
                    f"--dashboard-port={dashboard}",
                    f"--dashboard-agent-listen-port={agent}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        deadline = time.monotonic() + start_timeout_s
        while "Ray runtime started" not in self.log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text()[-3000:]
                self.stop()
                raise RuntimeError(f"the local Ray head at {self.address} did not start:\n{tail}")
            time.sleep(0.2)

    def stop(self, grace_s: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        deadline = time.monotonic() + grace_s
        while _session_pids(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in _session_pids(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalHead":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
