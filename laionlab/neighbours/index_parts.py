"""Growing the caption index part by part (seed 001: Shirali & Hardt, "What Makes ImageNet Look
Unlike LAION", TMLR 2025; public code alishiraliGit/eval-on-laion,
``calc_and_store_clip_text_embeddings_in_faiss_index.py``).

The seed trained its 413M-caption index once, on its first ~1M-vector chunk, and then added
every other LAION part with ``index.add``. Here the same, kept in a folder (local or fsspec)
as one faiss file per part, so that adding a part writes that part only:

    <folder>/state.json                    which parts the index holds (written last)
    <folder>/<v-build>/trained.faiss         the trained, empty index
    <folder>/<v-build>/shards/<part>.faiss   the trained index holding one part's captions
    <folder>/<v-build>/ids/<part>.parquet    that part's faiss ids → LAION uids

* the **state** is a JSON-ready dict ``{"build", "parts": {part: {"rows", "first_id"}},
  "next_id", "model", "key", "dim"}``; a part's captions get the ids
  ``first_id .. first_id + rows - 1``;
* :func:`plan_update` compares the state with the parts' current row counts and says whether
  the stored index can be kept and which parts to add;
* :func:`update_index` keeps the stored index and adds the new parts, or builds a new one when
  there is none, a part it holds changed, or the corpus **outgrew** it: the key
  :func:`laionlab.neighbours.caption_index.choose_index_key` gives for today's total (under the
  budget) is not the stored one. Keys change when the corpus passes ``flat_max_rows``, at
  every 4× growth below 1M rows (nlist ~ 4·sqrt(n)), at autofaiss's 1M/10M/300M list steps and
  when a smaller PQ code is needed to stay in budget, so rebuilds come at geometrically
  spaced sizes and their total cost stays within a constant factor of one build;
* :func:`load_index` merges the parts' files into one index to search, :func:`read_id_map`
  gives the id → uid map;
* :func:`parse_bytes` reads a budget such as ``16GB``.

Nothing here imports Dagster.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from laionlab.io import files
from laionlab.neighbours.caption_index import CaptionIndex, choose_index_key, estimate_index_memory, train_size
from laionlab.progress import Progress

__all__ = [
    "IndexPlan",
    "IndexUpdate",
    "empty_state",
    "load_index",
    "parse_bytes",
    "plan_update",
    "read_id_map",
    "update_index",
]

STATE = "state.json"
TRAINED = "trained.faiss"

_UNITS = {
    "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}  # fmt: skip


def parse_bytes(text: str, name: str = "max_memory") -> int:
    """'16GB', '40MB', '512KiB', '1000' → bytes (decimal units for kB/MB/GB/TB, binary for
    KiB/MiB/GiB/TiB). ValueError naming ``name`` for anything else."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKMGT]i?B|B)?\s*", str(text))
    if not m:
        raise ValueError(f"{name}: cannot read {text!r} as a size (e.g. 16GB, 512MiB)")
    unit = m.group(2) or "B"
    if unit not in _UNITS:
        raise ValueError(f"{name}: unknown unit {unit!r} in {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


def empty_state() -> dict:
    """The state of an index that holds nothing yet."""
    return {"build": None, "parts": {}, "next_id": 0, "model": None, "key": None, "dim": None}


@dataclass(frozen=True)
class IndexPlan:
    """What :func:`plan_update` decided.

    state: the state to continue from (the stored one, or :func:`empty_state`).
    keep_index: whether the stored index file is reused (False: build a new one).
    todo: the parts to add, in the order given, each with at least one row.
    stale: whether a part the index holds changed its row count or disappeared.
    """

    state: dict
    keep_index: bool
    todo: list[str]
    stale: bool


def plan_update(state: Mapping | None, counts: Mapping[str, int], rebuild: bool = False) -> IndexPlan:
    """Keep the stored index and add the new parts, or start over.

    Args:
        state: the stored state, or None when no index was built.
        counts: every current part → its number of caption embeddings, in part order.
        rebuild: start over whatever the state says.

    Returns:
        :class:`IndexPlan`. The index is rebuilt when there is none, when ``rebuild`` is set,
        or when a part it holds now has another row count or is gone (re-embedded or
        removed: its ids no longer match the rows).
    """
    stale = state is not None and any(counts.get(p) != info["rows"] for p, info in state["parts"].items())
    if state is None or rebuild or stale:
        state, keep = empty_state(), False
    else:
        state, keep = {**state, "parts": dict(state["parts"])}, True
    todo = [p for p, n in counts.items() if p not in state["parts"] and n > 0]
    return IndexPlan(state, keep, todo, stale)


@dataclass(frozen=True)
class IndexUpdate:
    """What :func:`update_index` did.

    state: the state now stored (``None`` when no part has a caption: nothing was written).
    added: the parts added, in order.
    rebuilt: whether a new index was trained (else the stored one was appended to).
    reason: why it was rebuilt (``None`` when appended to or up to date).
    """

    state: dict | None
    added: list[str]
    rebuilt: bool
    reason: str | None


def update_index(
    folder: str,
    counts: Mapping[str, int],
    read_part: Callable[[str], tuple[list[str], np.ndarray, set[str]]],
    *,
    budget: int,
    flat_max_rows: int,
    nprobe: int,
    ivf_flat_max_rows: int | None = None,
    seed: int = 0,
    rebuild: bool = False,
    log: logging.Logger | None = None,
) -> IndexUpdate:
    """Bring the index in ``folder`` up to date with the parts of ``counts``.

    Args:
        folder: where the index lives (a local path or fsspec URI).
        counts: every current part → its number of caption embeddings, in part order (the
            total decides the key).
        read_part: part → (uids, ``(n, d)`` unit float32 caption vectors, set of model ids).
        budget: index memory budget in bytes (:func:`choose_index_key`).
        flat_max_rows, ivf_flat_max_rows, nprobe, seed: as :func:`choose_index_key` and
            :meth:`CaptionIndex.trained`.
        rebuild: train a new index whatever the state says.
        log: progress lines (a Dagster step's ``context.log``).

    A new index is trained on the first parts' rows once :func:`train_size` of them are in
    hand (the seed: its first ~1M-vector chunk), the key being :func:`choose_index_key` for
    the total; memory is that sample plus one part. Adding a part reads and writes that part
    only. The state is written last: a run that dies leaves the previous index whole.

    Raises:
        ValueError: a part embedded with another text model than the index's.
    """
    log = log or logging.getLogger(__name__)
    stored = _read_state(folder)
    plan = plan_update(stored, counts, rebuild)
    total = sum(counts.values())
    if total == 0:
        return IndexUpdate(None, [], False, None)
    reason = (
        None
        if plan.keep_index
        else ("rebuild requested" if rebuild else "a part was re-embedded or removed" if plan.stale else "no index yet")
    )

    def key_for(dim: int) -> str:
        return choose_index_key(total, dim, budget, flat_max_rows=flat_max_rows, ivf_flat_max_rows=ivf_flat_max_rows)

    if plan.keep_index:
        wanted = key_for(plan.state["dim"])
        if wanted != plan.state["key"]:
            reason = f"the corpus outgrew {plan.state['key']} ({total:,} captions now want {wanted})"
            plan = plan_update(None, counts)
    if plan.keep_index and not plan.todo:
        return IndexUpdate(plan.state, [], False, None)
    if not plan.keep_index:
        log.info(f"caption_index: building a new index ({reason})")
    state = plan.state
    with files.writer_lock(folder):
        if not plan.keep_index:
            state["build"] = files.new_version_dir(folder).rstrip("/").rsplit("/", 1)[-1]
        trained = CaptionIndex.load(_path(folder, state, TRAINED)) if plan.keep_index else None
        pending: list[tuple[str, np.ndarray, np.ndarray]] = []  # (part, ids, vectors) until trained
        key = None  # of the new index, once the first part gives the dimension
        progress = Progress("caption_index: adding parts", sum(counts[p] for p in plan.todo), log=log, unit="captions")
        for part in plan.todo:
            uids, X, models = read_part(part)
            if state["model"] is None:
                state["model"], state["dim"] = next(iter(models)), int(X.shape[1])
            if models != {state["model"]}:
                raise ValueError(
                    f"laion_embeddings[{part}] holds text embeddings of {sorted(models)}, "
                    f"the index {state['model']}: rebuild"
                )
            ids = np.arange(state["next_id"], state["next_id"] + len(uids), dtype=np.int64)
            files.atomic_write_parquet(
                pl.DataFrame({"id": ids, "uid": uids}), _path(folder, state, "ids", f"{part}.parquet")
            )
            state["parts"][part] = {"rows": len(uids), "first_id": int(ids[0])}
            state["next_id"] += len(uids)
            pending.append((part, ids, X))
            if trained is None:
                key = key or key_for(state["dim"])
                if sum(len(i) for _, i, _ in pending) < train_size(total, key, state["dim"]) and part != plan.todo[-1]:
                    progress.update(len(uids))
                    continue
                # one copy of the held rows: the parts become views of the training sample
                sample = np.concatenate([x for _, _, x in pending]) if len(pending) > 1 else pending[0][2]
                ends = np.cumsum([len(i) for _, i, _ in pending])
                pending = [(name, i, sample[end - len(i) : end]) for (name, i, _), end in zip(pending, ends)]
                del X
                trained = CaptionIndex.trained(sample, key, seed=seed, nprobe=nprobe)
                del sample
                trained.save(_path(folder, state, TRAINED))
                state["key"] = key
                log.info(
                    f"caption_index: trained {key} on {sum(len(i) for _, i, _ in pending):,} captions "
                    f"(estimated {estimate_index_memory(key, total, state['dim']) / 1e9:.2f} GB for {total:,})"
                )
            for name, part_ids, vectors in pending:
                shard = trained.empty_copy()
                shard.append(vectors, part_ids)
                shard.save(_path(folder, state, "shards", f"{name}.faiss"))
            pending = []
            progress.update(len(uids))
        progress.close()
        files.atomic_write_json(files.join(folder, STATE), state, indent=1)
        if not plan.keep_index:
            _remove_other_builds(folder, state["build"])
    return IndexUpdate(state, list(plan.todo), not plan.keep_index, reason)


def load_index(folder: str, log: logging.Logger | None = None) -> tuple[CaptionIndex, dict]:
    """The index of ``folder`` to search (every part's file merged into one; memory is the
    index plus one part) and its state. FileNotFoundError when none was built."""
    state = _read_state(folder)
    if state is None or not state["parts"]:
        raise FileNotFoundError(f"{folder}: no caption index built yet (materialise caption_index first)")
    parts = list(state["parts"])
    progress = Progress(
        "caption_index: loading parts", len(parts), log=log or logging.getLogger(__name__), unit="parts"
    )
    index = CaptionIndex.load(_path(folder, state, "shards", f"{parts[0]}.faiss"))
    progress.update(1)
    for part in parts[1:]:
        index.merge_from(CaptionIndex.load(_path(folder, state, "shards", f"{part}.faiss")))
        progress.update(1)
    progress.close()
    if index.ntotal != state["next_id"]:
        raise ValueError(
            f"{folder}: the parts' files hold {index.ntotal:,} captions, "
            f"the state says {state['next_id']:,}: rebuild caption_index"
        )
    return index, state


def read_id_map(folder: str, state: Mapping) -> pl.DataFrame:
    """faiss id → LAION uid (columns ``id``, ``uid``) of every part the index holds."""
    return pl.concat([files.read_parquet(_path(folder, state, "ids", f"{p}.parquet")) for p in state["parts"]])


def _path(folder: str, state: Mapping, *parts: str) -> str:
    return files.join(folder, state["build"], *parts)


def _read_state(folder: str) -> dict | None:
    """The stored state, or None when there is none usable (never built, or written by an
    older layout without per-part files: then the index is rebuilt)."""
    uri = files.join(folder, STATE)
    if not files.exists(uri):
        return None
    state = files.read_json(uri)
    if not state.get("build") or state.get("dim") is None or not files.exists(_path(folder, state, TRAINED)):
        return None
    return state


def _remove_other_builds(folder: str, keep: str) -> None:
    """Delete every build but ``keep`` (and the single-file index of the older layout)."""
    for old in (
        files.list_entries(folder, "v-*")
        + files.list_entries(folder, "index.faiss")
        + files.list_entries(folder, "ids")
    ):
        if old.rsplit("/", 1)[-1] != keep:
            files.remove(old)
