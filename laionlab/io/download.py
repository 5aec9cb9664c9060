"""Downloading a part's images with img2dataset into webdataset shards.

img2dataset runs in a child Python process (``python -m laionlab.io.download settings.json``):
its multiprocessing pool then always starts from a ``__main__``-guarded entry point, whatever
process calls us (a Dagster step, a daemon thread, pytest), and a crash inside it cannot take
the caller down. Its per-shard parquet files (``status``, ``error_message`` per sample, with
our ``uid`` saved as an additional column) are read back into one status table joined to uid.

The output folder may be local, ``file://`` or an object store (img2dataset writes through
fsspec itself; the child gets this process's fsspec configuration as ``FSSPEC_*`` variables).
The URL list handed to img2dataset is staged in a local temporary folder. An in-process
filesystem (``memory://``) is refused: img2dataset writes from other processes.

Untrusted URLs (issue 16): ``url_policy.url_verdicts`` refuses rows before img2dataset sees
them (status ``blocked_by_policy``); in the child and its workers ``net_guard`` refuses
connections to non-public addresses (after DNS, on every redirect hop) and ends each request at
``request_deadline_s``; OpenCV refuses an image over ``max_image_pixels`` from its header,
before allocating it (``OPENCV_IO_MAX_IMAGE_PIXELS``; img2dataset decodes with ``cv2.imdecode``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from laionlab.io import files, net_guard
from laionlab.io.digest import frame_digest
from laionlab.io.url_policy import BLOCKED, parse_allowed_hosts, url_verdicts

log = logging.getLogger(__name__)

# width/height: the stored (resized) image; original_width/original_height: the image as
# served, before img2dataset resized it (what DataComp's basic filter measures)
STATUS_COLUMNS = (
    "uid",
    "key",
    "status",
    "error_message",
    "width",
    "height",
    "original_width",
    "original_height",
    "sha256",
)


@dataclass(frozen=True)
class DownloadSettings:
    """img2dataset options (names as in its README)."""

    image_size: int = 256
    resize_mode: str = "border"
    processes_count: int = 2
    thread_count: int = 16
    timeout: int = 10
    retries: int = 0
    number_sample_per_shard: int = 10_000
    encode_format: str = "jpg"
    distributor: str = "multiprocessing"
    user_agent_token: str | None = None
    allowed_file_roots: tuple[str, ...] = ()  # file:// URLs only under these folders
    allow_private_hosts: bool = False  # loopback/private/link-local hosts and addresses (tests only)
    allowed_hosts: tuple[str, ...] = ()  # "IP[:port]" fetchable even if private (a test's own server)
    max_image_pixels: int = 89_478_485  # refused before decoding; PIL's default cap (OpenCV's is 2**30)
    request_deadline_s: float = 60.0  # one request, connect to last byte, redirects included
    process_timeout_s: float | None = None  # kill a hung img2dataset child after this long

    def __post_init__(self) -> None:
        if self.resize_mode not in ("no", "keep_ratio", "center_crop", "border"):
            raise ValueError(f"resize_mode must be no/keep_ratio/center_crop/border, got {self.resize_mode!r}")
        if self.encode_format not in ("jpg", "png", "webp"):
            raise ValueError(f"encode_format must be jpg/png/webp, got {self.encode_format!r}")
        if self.distributor not in ("multiprocessing", "pyspark", "ray"):
            raise ValueError(f"distributor must be multiprocessing/pyspark/ray, got {self.distributor!r}")
        if self.max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1, got {self.max_image_pixels}")
        if not self.request_deadline_s > 0:
            raise ValueError(f"request_deadline_s must be > 0 seconds, got {self.request_deadline_s}")
        parse_allowed_hosts(tuple(self.allowed_hosts))


@dataclass
class DownloadResult:
    status: pl.DataFrame  # one row per input uid: uid, key, status, error_message, ...
    shards: list[str]
    seconds: float

    @property
    def successes(self) -> int:
        return count_successes(self.status)

    @property
    def success_rate(self) -> float:
        return self.successes / self.status.height if self.status.height else 0.0


def _img2dataset_kwargs(input_parquet: str, output_folder: str, s: DownloadSettings) -> dict:
    return dict(
        url_list=input_parquet,
        input_format="parquet",
        url_col="URL",
        caption_col="TEXT",
        save_additional_columns=["uid"],
        output_format="webdataset",
        output_folder=output_folder,
        image_size=s.image_size,
        resize_mode=s.resize_mode,
        processes_count=s.processes_count,
        thread_count=s.thread_count,
        timeout=s.timeout,
        retries=s.retries,
        number_sample_per_shard=s.number_sample_per_shard,
        encode_format=s.encode_format,
        distributor=s.distributor,
        user_agent_token=s.user_agent_token,
        compute_hash="sha256",  # of the bytes as downloaded: exact duplicates (laionlab.dedup.exact)
        enable_wandb=False,
    )


def failure_table(status: pl.DataFrame) -> pl.DataFrame:
    """Failed samples grouped by reason: columns reason, count (most frequent first)."""
    failed = status.filter(pl.col("status") != "success")
    return (
        failed.with_columns(pl.col("error_message").fill_null(pl.col("status")).str.slice(0, 120).alias("reason"))
        .group_by("reason")
        .agg(pl.len().alias("count"))
        .sort(["count", "reason"], descending=[True, False])
    )


# (cause, pattern on the lower-cased error message), first match wins; the status column
# decides "policy" (blocked_by_policy) and "decode" (failed_to_resize: fetched, not an image)
FAILURE_CAUSES: tuple[tuple[str, str], ...] = (
    ("policy", r"blocked by url policy"),
    ("dns", r"name or service not known|nodename nor servname|getaddrinfo|name resolution|errno -[235]\]"),
    ("timeout", r"timed? ?out|deadline"),
    ("http_4xx", r"http error 4\d\d|\b4\d\d client error"),
    ("http_5xx", r"http error 5\d\d|\b5\d\d server error"),
    ("tls", r"ssl|certificate|tls"),
    ("redirect", r"redirect"),
    ("connection", r"connection|reset by peer|remote end closed|eof occurred|broken pipe|errno 1(04|11|13)\]"),
    ("decode", r"cannot identify image|truncated|decompression|too many pixels|image file|not an image"),
)


def failure_causes(status: pl.DataFrame, urls: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Why downloads failed, by class and by domain: ``(causes, domains)``.

    causes: ``cause`` (policy, dns, timeout, http_4xx, http_5xx, tls, redirect, connection,
    decode, other — :data:`FAILURE_CAUSES` on img2dataset's ``error_message``; a
    ``failed_to_resize`` row is ``decode``, a ``blocked_by_policy`` row ``policy``), ``count``,
    ``share`` of the failed rows, ``example`` (one message). domains: with ``urls`` (uid, URL:
    the part's metadata), the 20 hosts with most failures: ``domain``, ``failed``, ``rows``,
    ``failed_share`` and their most common ``cause``.
    """
    if not isinstance(status, pl.DataFrame) or {"uid", "status"} - set(status.columns):
        raise ValueError("status: expected a download status table with columns 'uid' and 'status'")
    message = (
        pl.col("error_message").fill_null("").str.to_lowercase() if "error_message" in status.columns else pl.lit("")
    )
    cause = pl.when(pl.col("status") == BLOCKED).then(pl.lit("policy"))
    cause = cause.when(pl.col("status") == "failed_to_resize").then(pl.lit("decode"))
    for name, pattern in FAILURE_CAUSES:
        cause = cause.when(message.str.contains(pattern)).then(pl.lit(name))
    labelled = status.with_columns(cause.otherwise(pl.lit("other")).alias("cause"))
    failed = labelled.filter(pl.col("status") != "success")
    example = pl.col("error_message").drop_nulls().first() if "error_message" in status.columns else pl.lit(None)
    causes = (
        failed.group_by("cause")
        .agg(pl.len().alias("count"), example.str.slice(0, 100).alias("example"))
        .with_columns((pl.col("count") / max(failed.height, 1)).round(4).alias("share"))
        .sort(["count", "cause"], descending=[True, False])
        .select("cause", "count", "share", "example")
    )
    if urls is None:
        return causes, pl.DataFrame(schema={"domain": pl.String, "failed": pl.UInt32, "rows": pl.UInt32})
    host = pl.col("URL").str.extract(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/]*@)?([^:/?#]+)", 1).str.to_lowercase()
    joined = labelled.join(urls.select("uid", "URL"), on="uid", how="left").with_columns(host.alias("domain"))
    domains = (
        joined.group_by("domain")
        .agg(
            (pl.col("status") != "success").sum().alias("failed"),
            pl.len().alias("rows"),
            pl.col("cause").filter(pl.col("status") != "success").mode().sort().first().alias("cause"),
        )
        .filter(pl.col("failed") > 0)
        .with_columns((pl.col("failed") / pl.col("rows")).round(4).alias("failed_share"))
        .sort(["failed", "domain"], descending=[True, False])
        .head(20)
        .select("domain", "failed", "rows", "failed_share", "cause")
    )
    return causes, domains


def count_successes(status: pl.DataFrame) -> int:
    """Rows of a status table (:func:`download_part`'s, or the ``status.parquet`` kept beside a
    part's shards) whose image was downloaded (status ``success``)."""
    if not isinstance(status, pl.DataFrame) or "status" not in status.columns:
        raise ValueError("status: expected a download status table with a 'status' column")
    return int((status["status"] == "success").sum())


def checked_failures(result: DownloadResult, what: str) -> pl.DataFrame:
    """:func:`failure_table` of a download; ValueError naming ``what`` (e.g. "part 'p-1'") and
    the three most common errors when not one image was downloaded (nothing to keep)."""
    failures = failure_table(result.status)
    if result.successes == 0:
        raise ValueError(
            f"no image of {what} could be downloaded ({result.status.height} rows); "
            f"most common errors: {failures.head(3).rows()}"
        )
    return failures


def fetched_contents(status: pl.DataFrame, shards: list[str]) -> list:
    """What a download fetched, to version its output by (the web is not versioned): the
    digest of the downloaded uids (sorted), then ``[name, size in bytes]`` of every shard
    (local paths or URIs)."""
    if not isinstance(status, pl.DataFrame) or {"uid", "status"} - set(status.columns):
        raise ValueError("status: expected a download status table with columns 'uid' and 'status'")
    fetched: list = [frame_digest(status.filter(pl.col("status") == "success").select("uid").sort("uid"))]
    return fetched + [[s.rsplit("/", 1)[-1], files.size(s)] for s in shards]


def lost_by_shard(status: pl.DataFrame, shards: list[str], uids: list[str]) -> dict[str, list[str]]:
    """shard file name → the given ``uids`` that img2dataset stored in it, from the part's
    status table (columns uid, key, status: a sample's key starts with its shard's name);
    uids not downloaded this time are listed under ``"(not in the current download)"``, a
    downloaded uid whose key names no shard of ``shards`` under ``"(unknown shard)"``."""
    if not isinstance(status, pl.DataFrame) or {"uid", "key", "status"} - set(status.columns):
        raise ValueError("status: expected a download status table with columns 'uid', 'key' and 'status'")
    keys = status.filter(pl.col("uid").is_in(uids) & (pl.col("status") == "success"))
    stems = {s.rsplit("/", 1)[-1].removesuffix(".tar"): s.rsplit("/", 1)[-1] for s in shards}
    out: dict[str, list[str]] = {}
    found = set()
    for uid, key in keys.select("uid", "key").iter_rows():
        shard = next((name for stem, name in stems.items() if key and key.startswith(stem)), "(unknown shard)")
        out.setdefault(shard, []).append(uid)
        found.add(uid)
    if rest := sorted(set(uids) - found):
        out["(not in the current download)"] = rest
    return out


def describe_lost(lost: dict[str, list[str]], examples: int = 3) -> str:
    """:func:`lost_by_shard`'s result as one line: ``shard: count (first uids, ...); ...``."""
    if examples < 0:
        raise ValueError(f"examples must be >= 0, got {examples}")
    return "; ".join(
        f"{shard}: {len(uids)} ({', '.join(uids[:examples])}{', ...' if len(uids) > examples else ''})"
        for shard, uids in lost.items()
    )


def read_status(output_folder: str, uids: pl.Series) -> pl.DataFrame:
    """img2dataset's per-shard parquet files joined back to every input uid.

    A uid img2dataset never reported on gets status ``not_attempted`` rather than vanishing.
    """
    frames = [files.read_parquet(f) for f in files.list_files(output_folder, "[0-9]*.parquet")]  # shards 00000...
    if frames:
        reported = pl.concat(
            [
                f.select(
                    [
                        pl.col(c).cast(pl.String)
                        if c in ("uid", "key", "status", "error_message", "sha256")
                        else pl.col(c)
                        for c in STATUS_COLUMNS
                        if c in f.columns
                    ]
                )
                for f in frames
            ],
            how="diagonal_relaxed",
        )
    else:
        reported = pl.DataFrame(schema={"uid": pl.String, "status": pl.String, "error_message": pl.String})
    duplicated = reported.filter(pl.col("uid").is_duplicated())
    if duplicated.height:
        raise RuntimeError(f"img2dataset reported {duplicated.height} duplicate uids in {output_folder}")
    status = pl.DataFrame({"uid": uids}).join(reported, on="uid", how="left")
    return status.with_columns(pl.col("status").fill_null("not_attempted"))


def download_part(metadata: pl.DataFrame, output_folder: str, settings: DownloadSettings) -> DownloadResult:
    """Download the images of ``metadata`` (columns uid, URL, TEXT) into ``output_folder``.

    Returns the status of every row and the shard paths. Sample json files in the shards carry
    ``uid``; failures are rows in ``status`` with img2dataset's error message.
    """
    missing = [c for c in ("uid", "URL", "TEXT") if c not in metadata.columns]
    if missing:
        raise ValueError(f"download_part needs columns uid, URL, TEXT; missing {missing}")
    if files.protocol(output_folder) == "memory":
        raise ValueError(
            f"output_folder {output_folder!r}: img2dataset writes from child processes, which cannot see this "
            "process's memory:// filesystem; use a local folder, file:// or an object store (s3://, gs://...)"
        )
    out = files.local_path(output_folder) or output_folder  # img2dataset opens URIs through fsspec
    files.makedirs(out)
    # the URL policy runs before img2dataset sees anything (laionlab/io/url_policy.py)
    reasons = url_verdicts(
        metadata["URL"], settings.allowed_file_roots, settings.allow_private_hosts, settings.allowed_hosts
    )
    blocked = (
        metadata.select("uid")
        .with_columns(reasons.alias("error_message"))
        .filter(pl.col("error_message").is_not_null())
    )
    if blocked.height:
        log.warning("%d of %d URLs refused by the URL policy, e.g. %s", blocked.height, metadata.height, blocked.row(0))
    blocked = blocked.with_columns(pl.lit(BLOCKED).alias("status"))
    all_uids, metadata = metadata["uid"], metadata.filter(reasons.is_null())
    if metadata.height == 0:
        return DownloadResult(
            status=pl.DataFrame({"uid": all_uids}).join(blocked, on="uid", how="left"), shards=[], seconds=0.0
        )
    with tempfile.TemporaryDirectory(prefix="laionlab-download-") as work:
        return _run_img2dataset(metadata, out, settings, Path(work), all_uids, blocked)


def redownload_failed(
    metadata: pl.DataFrame,
    previous_status: pl.DataFrame,
    previous_shards: list[str],
    output_folder: str,
    settings: DownloadSettings,
) -> DownloadResult:
    """Fetch again only the rows a part's earlier download did not get; keep the rest as it was.

    ``previous_status``/``previous_shards``: the committed download of the part (its
    ``status.parquet`` and ``*.tar``). Its shards are copied into ``output_folder`` unchanged
    (no image is fetched twice); the rows whose status is not ``success`` (and rows of
    ``metadata`` it lacks) go through :func:`download_part` into a sub-folder whose shards then
    join the others as ``retry<n>-<shard>.tar``, their keys prefixed alike (so a key still starts
    with its shard's name). The returned status has every row of ``metadata``: the earlier
    successes as they were, the retried rows with their new status, and ``attempts`` (how many
    downloads each row has been through: 1 before the first retry).
    """
    if {"uid", "status"} - set(previous_status.columns):
        raise ValueError("previous_status: expected the part's status table (uid, status, ...)")
    attempts = pl.col("attempts") if "attempts" in previous_status.columns else pl.lit(1)
    previous = previous_status.with_columns(attempts.cast(pl.Int32).alias("attempts"))
    kept = previous.filter(pl.col("status") == "success")
    retry = metadata.filter(~pl.col("uid").is_in(kept["uid"].implode()))
    attempt = int(previous["attempts"].max() or 1) + 1
    prefix = f"retry{attempt}-"
    out = files.local_path(output_folder) or output_folder
    files.makedirs(out)
    for shard in previous_shards:
        files.copy(shard, files.join(out, shard.rsplit("/", 1)[-1]))
    log.info("re-downloading %d of %d rows (attempt %d); %d kept", retry.height, metadata.height, attempt, kept.height)
    sub = files.join(out, f"_{prefix.rstrip('-')}")
    result = download_part(retry, sub, settings) if retry.height else DownloadResult(retry.select("uid"), [], 0.0)
    for shard in result.shards:
        files.move(shard, files.join(out, prefix + shard.rsplit("/", 1)[-1]))
    files.remove(sub)
    fresh = result.status.with_columns(pl.lit(attempt, pl.Int32).alias("attempts"))
    if "key" in fresh.columns:
        fresh = fresh.with_columns((pl.lit(prefix) + pl.col("key")).alias("key"))
    status = pl.concat([kept, fresh], how="diagonal_relaxed")
    status = metadata.select("uid").join(status, on="uid", how="left")  # the part's row order
    return DownloadResult(status=status, shards=files.list_files(out, "*.tar"), seconds=result.seconds)


# img2dataset was seen (once, on a 2-core host at load 8) to write every shard and its stats and
# then hang in its process pool's shutdown: give it this long after the last stats file
STUCK_AFTER_DONE_S = 60.0


def _wait_img2dataset(proc: subprocess.Popen, out: str, shards: int, timeout_s: float | None) -> bool:
    """Wait for the img2dataset process: True when it exits by itself; False when every input
    shard's ``*_stats.json`` (written after the shard's tar and parquet are complete) has been
    there for :data:`STUCK_AFTER_DONE_S` seconds and it still runs (the caller kills it and uses
    the outputs). ``subprocess.TimeoutExpired`` after ``timeout_s`` (None: no limit)."""
    start, done_since = time.monotonic(), None
    while True:
        try:
            proc.wait(timeout=1.0)
            return True
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if timeout_s is not None and now - start > timeout_s:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        if done_since is None and len(files.list_files(out, "*_stats.json")) >= shards:
            done_since = now
        if done_since is not None and now - done_since > STUCK_AFTER_DONE_S:
            return False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run_img2dataset(
    metadata: pl.DataFrame, out: str, settings: DownloadSettings, work: Path, all_uids: pl.Series, blocked: pl.DataFrame
) -> DownloadResult:
    input_parquet = work / "urls.parquet"
    metadata.select("uid", "URL", pl.col("TEXT").fill_null("")).write_parquet(input_parquet)
    settings_file = work / "settings.json"
    settings_file.write_text(json.dumps(_img2dataset_kwargs(str(input_parquet), out, settings)))
    env = {
        **files.fsspec_env(),
        **os.environ,
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "OPENCV_IO_MAX_IMAGE_PIXELS": str(settings.max_image_pixels),  # read by every worker's OpenCV
        **net_guard.child_env(settings.allowed_hosts, settings.allow_private_hosts, settings.request_deadline_s),
    }
    start = time.perf_counter()
    # its own session, so a timeout kills img2dataset's pool workers with it; output to files,
    # not pipes: a helper it leaves behind (multiprocessing's resource tracker was seen to) would
    # hold a pipe open after img2dataset exited, and reading to EOF would wait for ever
    out_path, err_path = work / "stdout.txt", work / "stderr.txt"
    with open(out_path, "w") as out_file, open(err_path, "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "laionlab.io.download", str(settings_file)],
            env=env,
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,
        )
        shards = -(-metadata.height // settings.number_sample_per_shard)
        try:
            exited = _wait_img2dataset(proc, out, shards, settings.process_timeout_s)
            if not exited:
                log.warning(
                    "img2dataset wrote all %d shard(s) of %s but did not exit within %.0f s; killed it and its "
                    "workers (its outputs are complete)",
                    shards,
                    out,
                    STUCK_AFTER_DONE_S,
                )
                _kill_group(proc.pid)
                proc.wait()
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            raise TimeoutError(
                f"img2dataset did not finish within {settings.process_timeout_s:.0f} s for {metadata.height} rows into "
                f"{out} (process_timeout_s); killed with its workers; last output: {err_path.read_text()[-1000:]!r}"
            ) from None
        finally:
            _kill_group(proc.pid)  # whatever it left running
    stdout, stderr = out_path.read_text(), err_path.read_text()
    seconds = time.perf_counter() - start
    for line in stdout.splitlines()[-20:]:
        log.info("img2dataset: %s", line)
    if exited and proc.returncode != 0:
        raise RuntimeError(
            f"img2dataset failed (exit {proc.returncode}) for {metadata.height} rows into {out}:\n" + stderr[-3000:]
        )
    status = read_status(out, metadata["uid"])
    over_cap = pl.col("error_message").str.contains(
        "CV_IO_MAX_IMAGE_PIXELS", literal=True
    )  # OpenCV names its own variable
    status = status.with_columns(
        pl.when(over_cap)
        .then(
            pl.lit(f"image has more than max_image_pixels={settings.max_image_pixels} pixels (refused before decoding)")
        )
        .otherwise(pl.col("error_message"))
        .alias("error_message")
    )
    status = pl.concat([status, blocked], how="diagonal_relaxed")
    status = pl.DataFrame({"uid": all_uids}).join(status, on="uid", how="left")  # input order
    return DownloadResult(status=status, shards=files.list_files(out, "*.tar"), seconds=seconds)


def _main(settings_file: str) -> None:
    if not net_guard.installed():  # _guard_site's sitecustomize did not run: never download unguarded
        raise RuntimeError(
            f"the network guard is not installed in this process "
            f"({net_guard.ENV} and PYTHONPATH come from download_part)"
        )
    from img2dataset import download

    kwargs = json.loads(Path(settings_file).read_text())
    if kwargs.get("distributor") == "ray":
        _connect_ray_guarded()
    download(**kwargs)


def _connect_ray_guarded() -> None:
    """img2dataset's ray tasks run in the cluster's worker processes, which this process's
    ``sitecustomize`` does not reach: connect (``RAY_ADDRESS``) with a runtime env that installs
    the same guard, deadline and pixel cap in every worker before it runs a task (laionlab must
    be importable on the cluster, as for the embedding actors)."""
    import ray

    keep = (net_guard.ENV, "OPENCV_IO_MAX_IMAGE_PIXELS")
    ray.init(
        address=os.environ.get("RAY_ADDRESS") or "auto",
        runtime_env={
            "env_vars": {k: os.environ[k] for k in keep if k in os.environ},
            "worker_process_setup_hook": "laionlab.io.net_guard.install_from_env",
        },
        log_to_driver=False,
    )


if __name__ == "__main__":
    _main(sys.argv[1])
