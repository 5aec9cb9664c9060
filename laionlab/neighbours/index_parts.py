"""Growing the caption index part by part (seed 001: Shirali & Hardt, "What Makes ImageNet Look
Unlike LAION", TMLR 2025; public code alishiraliGit/eval-on-laion,
``calc_and_store_clip_text_embeddings_in_faiss_index.py``).

The seed trained its 413M-caption index once, on its first ~1M-vector chunk, and then added
every other LAION part with ``index.add``. Here the same, with a state that says which parts
the index holds, so a new part is appended and a changed part triggers a rebuild:

* the **state** is a JSON-ready dict ``{"parts": {part: {"rows", "first_id"}}, "next_id",
  "model", "key"}``; a part's captions get the ids ``first_id .. first_id + rows - 1``;
* :func:`plan_update` compares the state with the parts' current row counts and says whether
  the stored index can be kept and which parts to add;
* :func:`add_parts` reads those parts, trains the index once enough rows are in hand
  (:func:`laionlab.neighbours.caption_index.train_size` under the memory budget of
  :func:`laionlab.neighbours.caption_index.choose_index_key`) and appends the rest;
* :func:`parse_bytes` reads a budget such as ``16GB``.

Nothing here imports Dagster.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from laionlab.progress import Progress
from laionlab.neighbours.caption_index import CaptionIndex, choose_index_key, estimate_index_memory, train_size

__all__ = ["IndexPlan", "add_parts", "empty_state", "parse_bytes", "plan_update"]

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
    return {"parts": {}, "next_id": 0, "model": None, "key": None}


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


def add_parts(
    index: CaptionIndex | None,
    state: dict,
    todo: Sequence[str],
    counts: Mapping[str, int],
    read_part: Callable[[str], tuple[list[str], np.ndarray, set[str]]],
    *,
    budget: int,
    flat_max_rows: int,
    nprobe: int,
    seed: int = 0,
    on_ids: Callable[[str, np.ndarray, list[str]], None] | None = None,
    log: logging.Logger | None = None,
) -> CaptionIndex | None:
    """Add the captions of ``todo`` to ``index`` (or to a new index trained on the way).

    Args:
        index: the index to append to, or None to build one: rows are held until
            :func:`train_size` of them are in hand (or the last part is read), the key being
            :func:`choose_index_key` for the total of ``counts`` under ``budget``.
        state: updated in place: the parts added, ``next_id``, ``model`` (the text model of
            the first part; every part must have the same) and ``key``.
        todo: parts to add, from :func:`plan_update`.
        counts: part → rows (the total sizes the key is chosen for).
        read_part: part → (uids, ``(n, d)`` unit float32 caption vectors, set of model ids).
        budget: index memory budget in bytes.
        flat_max_rows, nprobe, seed: as :func:`choose_index_key` and :meth:`CaptionIndex.build`.
        on_ids: called as ``on_ids(part, ids, uids)`` when a part's ids are assigned (to store
            the id → uid map).
        log: progress lines (a Dagster step's ``context.log``).

    Returns:
        The index holding every part of ``state``, or ``index`` unchanged when ``todo`` is
        empty (None if there was none).

    Raises:
        ValueError: a part embedded with another text model than the index's.
    """
    pending: list[tuple[np.ndarray, np.ndarray]] = []  # (ids, vectors) held until the index is trained
    total = sum(counts.values())
    progress = Progress("caption_index: adding parts", sum(counts[p] for p in todo), log=log, unit="captions")
    for part in todo:
        uids, X, models = read_part(part)
        if state["model"] is None:
            state["model"] = next(iter(models))
        if models != {state["model"]}:
            raise ValueError(f"laion_embeddings[{part}] holds text embeddings of {sorted(models)}, the index {state['model']}: rebuild")
        ids = np.arange(state["next_id"], state["next_id"] + len(uids), dtype=np.int64)
        if on_ids is not None:
            on_ids(part, ids, uids)
        state["parts"][part] = {"rows": len(uids), "first_id": int(ids[0])}
        state["next_id"] += len(uids)
        if index is not None:
            index.append(X, ids)
        else:
            # train once enough rows are in hand (the seed: on its first ~1M-vector chunk)
            pending.append((ids, X))
            key = choose_index_key(total, X.shape[1], budget, flat_max_rows=flat_max_rows)
            if sum(len(i) for i, _ in pending) >= train_size(total, key, X.shape[1]) or part == todo[-1]:
                all_ids = np.concatenate([i for i, _ in pending])
                index = CaptionIndex.build(np.concatenate([x for _, x in pending]), all_ids, key, seed=seed, nprobe=nprobe)
                state["key"] = key
                (log or logging.getLogger(__name__)).info(
                    f"caption_index: trained {key} on {len(all_ids)} captions "
                    f"(estimated {estimate_index_memory(key, total, X.shape[1]) / 1e9:.2f} GB for {total})"
                )
                pending = []
        progress.update(len(uids))
    progress.close()
    return index
