"""Concept synonyms of SWAT's string-matching retrieval (seed 003: Liu et al., "Few-Shot
Recognition via Stage-Wise Retrieval-Augmented Finetuning", CVPR 2025; public code
tian1327/SWAT, ``retrieval/laion_parser.py``, ``retrieval/format_metrics.py``; the synonym
files are REAL's, shubhamprshr27/NeglectedTailsVLM ``analysis/laion/*/metrics-LAION400M.json``,
copied to SWAT as ``data/{dataset}/{dataset}_metrics-LAION400M.json``).

The metrics file, as SWAT and REAL store it: one JSON object keyed by class id (``"0"``,
``"1"``, ...; ``format_metrics.py`` sorts them as integers), each value holding

* ``"name"``: the dataset's class name (e.g. ``"banded"``);
* ``"alternates"``: synonym → LAION-400M match count (``{"banded": 26507, "vertical
  striped": 4040}``); these keys are what ``laion_parser.py`` searches;
* ``"changed_name"`` (a few classes only): a hand-fixed name, searched as well;
* ``"most_common_name"``: the synonym with the most matches (``find_most_common_name``),
  which SWAT's default prompts use;
* REAL's bookkeeping: ``"freq"``, ``"max_freq"``, ``"actual_freq"`` (unique captions matched),
  ``"relevant_total"``, ``"llama_relevance_ratio"``; ignored here.

SWAT's GPT-synonym pipeline (``retrieval/query_synonyms/format_synonyms.py``) writes the same
shape with ``"synonyms_final"`` (synonym → 0) instead of ``"alternates"``; it is read when
``"alternates"`` is absent.

What is searched for a class (:attr:`ClassSynonyms.synonyms`) follows ``laion_parser.py``'s
``__get_text_worker__``: the ``alternates`` keys plus ``changed_name``; the plain ``name`` is
*not* added when it is missing from ``alternates`` (ImageNet's "slug" is searched only as
"garden slug" and "limax maximus"). :func:`from_class_names` builds the same structure from a
plain list of class names, each class searched by its own name.

Validation (``ValueError`` naming the input): a class with no synonyms, a synonym that is not
a non-empty string, a class key given twice (also ``"1"`` and ``"01"``, both class 1), class
keys mixing integers and strings. Nothing here imports Dagster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

__all__ = [
    "ClassKey",
    "ClassSynonyms",
    "from_class_names",
    "load_metrics_json",
    "synonyms_from_table",
    "synonyms_table",
]

ClassKey = int | str

# JSON object keys that are class ids: decimal integers become int keys (format_metrics.py's
# int(k)); anything else stays a str key.
_INT_KEY = re.compile(r"^-?[0-9]+$")


@dataclass(frozen=True)
class ClassSynonyms:
    """One class's search terms.

    ``name``: the class name (the metrics file's ``"name"``); ``synonyms``: the strings
    searched, in file order, unique (exact string), non-empty; ``most_common_name``: the
    metrics file's, or None.
    """

    name: str
    synonyms: tuple[str, ...]
    most_common_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"name: expected a str, got {type(self.name).__name__}")
        if isinstance(self.synonyms, str) or not isinstance(self.synonyms, Sequence):
            raise ValueError(
                f"synonyms: expected a sequence of str for class {self.name!r}, got {type(self.synonyms).__name__}"
            )
        if len(self.synonyms) == 0:
            raise ValueError(f"synonyms: expected at least one synonym for class {self.name!r}, got none")
        for i, s in enumerate(self.synonyms):
            if not isinstance(s, str) or not s.strip():
                raise ValueError(f"synonyms[{i}]: expected a non-empty str for class {self.name!r}, got {s!r}")
            if not any(ch.isalnum() for ch in s):
                raise ValueError(
                    f"synonyms[{i}]: {s!r} of class {self.name!r} has no letter or digit, so it can match no caption"
                )
        object.__setattr__(self, "synonyms", tuple(dict.fromkeys(self.synonyms)))
        if self.most_common_name is not None and not isinstance(self.most_common_name, str):
            raise ValueError(f"most_common_name: expected a str or None, got {type(self.most_common_name).__name__}")


def _class_key(name: str, key) -> ClassKey:
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise ValueError(f"{name}: expected int or str class keys, got {key!r}")
    if isinstance(key, str) and _INT_KEY.match(key.strip()):
        return int(key)
    return key


def _check_keys(name: str, keys: list) -> list[ClassKey]:
    out: list[ClassKey] = []
    seen: dict[ClassKey, object] = {}
    for raw in keys:
        key = _class_key(name, raw)
        if key in seen:
            raise ValueError(f"{name}: duplicate class {key!r} (given as {seen[key]!r} and {raw!r})")
        seen[key] = raw
        out.append(key)
    kinds = {type(k) for k in out}
    if len(kinds) > 1:
        raise ValueError(f"{name}: expected class keys all integers or all strings, got a mix")
    return out


class _JsonObject(dict):
    """A JSON object that remembers keys given more than once (json keeps the last)."""

    duplicates: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, object]]) -> _JsonObject:
    obj = _JsonObject(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


def load_metrics_json(path: str | Path) -> dict[ClassKey, ClassSynonyms]:
    """Class → :class:`ClassSynonyms` from a SWAT/REAL metrics JSON (see the module docstring).

    Keys that are decimal integers become ``int`` (``"0"`` → 0), others stay ``str``; the
    result is ordered as the file. A class's synonyms are its ``"alternates"`` keys (or
    ``"synonyms_final"``; either an object or a list), then ``"changed_name"`` if present and
    new; ``"name"`` defaults to ``"most_common_name"`` or the first synonym when absent.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"path: cannot read metrics file {str(path)!r} ({err})") from None
    try:
        raw = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as err:
        raise ValueError(f"path: {str(path)!r} is not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"path: expected a JSON object of class id -> metrics in {str(path)!r}")
    if raw.duplicates:
        raise ValueError(f"path: duplicate class {raw.duplicates[0]!r} in {str(path)!r}")
    if not raw:
        raise ValueError(f"path: {str(path)!r} holds no classes")
    keys = _check_keys("path", list(raw))
    out: dict[ClassKey, ClassSynonyms] = {}
    for key, (raw_key, entry) in zip(keys, raw.items()):
        where = f"path: class {raw_key!r}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
        field = "alternates" if "alternates" in entry else "synonyms_final"
        if field not in entry:
            raise ValueError(f"{where}: expected an 'alternates' (or 'synonyms_final') entry, found {sorted(entry)}")
        value = entry[field]
        if not isinstance(value, (dict, list)):
            raise ValueError(f"{where}: expected '{field}' to be an object or a list, got {type(value).__name__}")
        synonyms = list(value)
        changed = entry.get("changed_name")
        if isinstance(changed, str) and changed not in synonyms:
            synonyms.append(changed)
        most_common = entry.get("most_common_name")
        name = entry.get("name", most_common if most_common is not None else (synonyms[0] if synonyms else ""))
        try:
            out[key] = ClassSynonyms(name=name, synonyms=tuple(synonyms), most_common_name=most_common)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    return out


def from_class_names(
    names: Sequence[str] | Mapping[ClassKey, str | Sequence[str]],
) -> dict[ClassKey, ClassSynonyms]:
    """Class → :class:`ClassSynonyms` without a metrics file.

    ``names``: a list of class names (class ``i`` is searched by ``names[i]`` alone), or a
    mapping class → name, → list of synonyms (the first taken as the name) or →
    :class:`ClassSynonyms` (kept as it is; so any synonyms mapping can be passed through here
    to be checked). Class names in a
    list must be unique (compared lower-cased with surrounding whitespace stripped, as two such
    names would match the same captions); mapping keys as in :func:`load_metrics_json`.
    """
    if isinstance(names, Mapping):
        keys = _check_keys("names", list(names))
        out: dict[ClassKey, ClassSynonyms] = {}
        for key, value in zip(keys, names.values()):
            if isinstance(value, ClassSynonyms):
                out[key] = value
                continue
            synonyms = (value,) if isinstance(value, str) else value
            if not isinstance(synonyms, Sequence):
                raise ValueError(f"names[{key!r}]: expected a name or a list of synonyms, got {type(value).__name__}")
            name = synonyms[0] if len(synonyms) and isinstance(synonyms[0], str) else str(key)
            try:
                out[key] = ClassSynonyms(name=name, synonyms=tuple(synonyms))
            except ValueError as err:
                raise ValueError(f"names[{key!r}]: {err}") from None
        if not out:
            raise ValueError("names: expected at least one class")
        return out
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(f"names: expected a list of class names or a mapping, got {type(names).__name__}")
    if len(names) == 0:
        raise ValueError("names: expected at least one class")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"names[{i}]: expected a non-empty str, got {name!r}")
        folded = name.strip().lower()
        if folded in seen:
            raise ValueError(f"names: duplicate class name {name!r} at {seen[folded]} and {i}")
        seen[folded] = i
    out = {}
    for i, name in enumerate(names):
        try:
            out[i] = ClassSynonyms(name=name, synonyms=(name,))
        except ValueError as err:
            raise ValueError(f"names[{i}]: {err}") from None
    return out


def synonyms_table(synonyms: Mapping[ClassKey, ClassSynonyms], prefix: str | None = None) -> pl.DataFrame:
    """A target's synonyms as a table, one row per class in the mapping's order: ``class``
    (the key as a string), ``name``, ``synonyms`` (list), ``most_common_name`` (the name when
    the metrics file has none) and ``prefix`` (the target's prefix word, or null)."""
    if not isinstance(synonyms, Mapping) or not all(isinstance(s, ClassSynonyms) for s in synonyms.values()):
        raise ValueError("synonyms: expected a mapping class → ClassSynonyms (from_class_names / load_metrics_json)")
    if prefix is not None and not isinstance(prefix, str):
        raise ValueError(f"prefix: expected a word or None, got {type(prefix).__name__}")
    return pl.DataFrame(
        {
            "class": [str(k) for k in synonyms],
            "name": [s.name for s in synonyms.values()],
            "synonyms": [list(s.synonyms) for s in synonyms.values()],
            "most_common_name": [s.most_common_name or s.name for s in synonyms.values()],
        },
        schema={"class": pl.String, "name": pl.String, "synonyms": pl.List(pl.String), "most_common_name": pl.String},
    ).with_columns(prefix=pl.lit(prefix, dtype=pl.String))


def synonyms_from_table(frame: pl.DataFrame) -> tuple[dict[ClassKey, ClassSynonyms], str | None]:
    """What string matching searches, back from a :func:`synonyms_table` table: class →
    :class:`ClassSynonyms` through :func:`from_class_names` (a class of digits, optionally
    negative, is an int key again; each class is searched by its synonyms, the first taken as
    its name) and the prefix."""
    if not isinstance(frame, pl.DataFrame) or {"class", "synonyms", "prefix"} - set(frame.columns):
        raise ValueError("frame: expected a synonyms_table table with columns 'class', 'synonyms' and 'prefix'")
    if frame.height == 0:
        raise ValueError("frame: expected at least one class, got an empty synonyms table")
    keys = [int(k) if k.lstrip("-").isdigit() else k for k in frame["class"]]
    return from_class_names(dict(zip(keys, frame["synonyms"].to_list()))), frame["prefix"][0]
