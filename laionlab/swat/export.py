"""SWAT's sampled-image lists: ``<image path> <label>`` lines, one file per sampling method
(seed 003: Liu et al., "Few-Shot Recognition via Stage-Wise Retrieval-Augmented Finetuning",
CVPR 2025; public code tian1327/SWAT, ``retrieval/sample_retrieval.py``
``save_sample_file_list``, read back by ``utils/datasets/dataset_utils.py`` ``MyDataset``).

The seed writes ``f'{file_path} {label} {0}'`` per sampled image, classes in integer order and
each class's images in ranking order, to ``{prefix}.txt`` (``T2T500.txt``,
``T2T500+T2I0.25.txt``, ...; :func:`swat_txt_name`). The third field is the source flag,
0 = retrieved, 1 = few-shot, and SWAT's loader splits each line on single spaces into exactly
three fields. The issue asks for ``<image path> <label>`` lines, which is the default here;
``source=0`` adds the seed's third field so SWAT's own loader reads the file. Paths therefore
may not contain whitespace. :func:`read_swat_txt` reads both forms.

**Labels** (:func:`swat_labels`): the seed's label is the class id of the metrics file,
``int(cls)`` (``add_to_split``: ``label_list.append(int(cls))``), so a target holding a subset
of a dataset's classes (ids ``"0"``, ``"114"``, ``"27"``) keeps those ids. Targets given as
plain class names are numbered 0..n-1 in list order (their keys already are); a metrics file
keyed by non-integer strings has no id, so its classes are numbered 0..n-1 in file order.
Nothing here imports Dagster.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence

import fsspec
import polars as pl

from laionlab.io.files import atomic_write_bytes
from laionlab.swat.rank import _SPECS, DEFAULT_N_PER_CLASS, I2I_THRESHOLD, I2T_THRESHOLD, T2I_THRESHOLD

__all__ = ["read_swat_txt", "swat_labels", "swat_txt_name", "write_swat_lists", "write_swat_txt"]

# The seed README's --prefix of each method; {n} is N, {t} the threshold.
_FILE_STEMS = {
    "Random": "Random{n}",
    "T2T-rank": "T2T{n}",
    "T2I-rank": "T2I{n}",
    "I2T-rank": "I2T-rank{n}",
    "I2I-rank": "I2I{n}",
    "T2T-rank-T2I-tshd": "T2T{n}+T2I{t}",
    "T2T-rank-I2T-tshd": "T2T{n}+I2T{t}",
    "T2T-rank-I2I-tshd": "T2T{n}+I2I{t}",
}
_DEFAULT_THRESHOLDS = {
    "T2T-rank-T2I-tshd": T2I_THRESHOLD,
    "T2T-rank-I2T-tshd": I2T_THRESHOLD,
    "T2T-rank-I2I-tshd": I2I_THRESHOLD,
}


def swat_txt_name(method: str, n_per_class: int = DEFAULT_N_PER_CLASS, threshold: float | None = None) -> str:
    """The seed's file name for a method's list: ``T2T500.txt``, ``T2T500+T2I0.25.txt``,
    ``Random500.txt``, ``I2T-rank500.txt`` (the README's ``--prefix`` values). ``threshold``
    (the *-tshd methods only) defaults to the method's default threshold."""
    if method not in _FILE_STEMS:
        raise ValueError(f"method: expected one of {', '.join(_SPECS)}, got {method!r}")
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, numbers.Integral) or n_per_class < 1:
        raise ValueError(f"n_per_class: expected an integer >= 1, got {n_per_class!r}")
    if threshold is not None and method not in _DEFAULT_THRESHOLDS:
        raise ValueError(f"threshold: method {method!r} has no threshold, got {threshold!r}")
    t = _DEFAULT_THRESHOLDS.get(method) if threshold is None else threshold
    return _FILE_STEMS[method].format(n=int(n_per_class), t=f"{t:g}" if t is not None else "") + ".txt"


def swat_labels(classes: Iterable) -> dict:
    """Class key → the integer label SWAT's lists give it (module docstring): integer keys are
    their own label (a metrics file's class ids, gaps and file order kept); string keys are
    numbered 0..n-1 in the given order. Keys must be unique and all of one kind."""
    if isinstance(classes, (str, bytes)):
        raise ValueError(f"classes: expected class keys (a mapping or a list), got {classes!r}")
    keys = list(classes)
    if not keys:
        raise ValueError("classes: expected at least one class")
    if len(set(keys)) != len(keys):
        raise ValueError(f"classes: duplicate class {next(k for k in keys if keys.count(k) > 1)!r}")
    ints = [isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in keys]
    if all(ints):
        return {k: int(k) for k in keys}
    if any(ints) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"classes: expected keys all integers or all strings, got {keys[:5]!r}")
    return {k: i for i, k in enumerate(keys)}


def _lookup(name: str, source, keys: list, what: str) -> list:
    if isinstance(source, pl.Series):
        source = source.to_list()
    if isinstance(source, Mapping):
        missing = [k for k in keys if k not in source]
        if missing:
            raise ValueError(f"{name}: no {what} for {missing[0]!r}")
        return [source[k] for k in keys]
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        bad = [k for k in keys if not isinstance(k, int) or not 0 <= k < len(source)]
        if bad:
            raise ValueError(f"{name}: no {what} for {bad[0]!r} (a list of {len(source)} items)")
        return [source[k] for k in keys]
    raise ValueError(f"{name}: expected a mapping or a list, got {type(source).__name__}")


def write_swat_txt(
    frame: pl.DataFrame,
    paths: Mapping[int, str] | Sequence[str] | pl.Series,
    labels: Mapping | None,
    path: str,
    *,
    source: int | None = None,
) -> int:
    """Write one method's picks (:func:`~laionlab.swat.rank.rank_samples`' frame) as SWAT's
    list file.

    Args:
        frame: ``row``, ``class``, ``rank`` (and ``method``, which must be a single value).
        paths: the image path of each row: a mapping row → path or a list indexed by row.
            Paths must be non-empty and hold no whitespace (the format splits on spaces).
        labels: class → integer label; None when the class keys are the integer labels (as in
            SWAT's metrics files).
        path: the output file (local or fsspec URI), written atomically.
        source: None for ``<path> <label>`` lines (the issue's format), or 0/1 to append the
            seed's source field (0 = retrieved) that SWAT's loader requires.

    Lines are ordered by label, then rank. Returns the number of lines written.
    """
    if not isinstance(frame, pl.DataFrame):
        raise ValueError(f"frame: expected a polars DataFrame, got {type(frame).__name__}")
    missing = {"row", "class", "rank"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame: expected columns row, class, rank (rank_samples' frame), missing {sorted(missing)}")
    if "method" in frame.columns and frame["method"].n_unique() > 1:
        raise ValueError(f"frame: expected one method per file, got {sorted(frame['method'].unique().to_list())}")
    if source is not None and source not in (0, 1):
        raise ValueError(f"source: expected None, 0 (retrieved) or 1 (few-shot), got {source!r}")
    if not isinstance(path, str) or not path:
        raise ValueError(f"path: expected a file path or URI, got {path!r}")
    rows = frame["row"].to_list()
    classes = frame["class"].to_list()
    image_paths = _lookup("paths", paths, rows, "image path")
    bad = [p for p in image_paths if not isinstance(p, str) or not p or any(ch.isspace() for ch in p)]
    if bad:
        raise ValueError(f"paths: expected non-empty paths without whitespace, got {bad[0]!r}")
    if labels is None:
        label_list = classes
    else:
        label_list = _lookup("labels", labels, classes, "label")
    bad = [lab for lab in label_list if isinstance(lab, bool) or not isinstance(lab, numbers.Integral)]
    if bad:
        raise ValueError(f"labels: expected integer labels (pass labels= for non-integer classes), got {bad[0]!r}")
    out = pl.DataFrame(
        {"path": image_paths, "label": [int(x) for x in label_list], "rank": frame["rank"]},
        schema_overrides={"path": pl.String, "label": pl.Int64},
    ).sort("label", "rank", maintain_order=True)
    tail = "" if source is None else f" {source}"
    text = "".join(f"{p} {lab}{tail}\n" for p, lab in zip(out["path"].to_list(), out["label"].to_list()))
    atomic_write_bytes(path, text.encode("utf-8"))
    return out.height


def read_swat_txt(path: str) -> pl.DataFrame:
    """A SWAT list file as ``path`` (String), ``label`` (Int64) and ``source`` (Int64, null for
    two-field lines), in file order. Lines must hold two or three space-separated fields;
    blank lines are skipped."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"path: expected a file path or URI, got {path!r}")
    try:
        with fsspec.open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, FileNotFoundError) as err:
        raise ValueError(f"path: cannot read {path!r} ({err})") from None
    paths, labels, sources = [], [], []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split(" ")
        try:
            if len(fields) not in (2, 3) or not fields[0]:
                raise ValueError
            labels.append(int(fields[1]))
            sources.append(int(fields[2]) if len(fields) == 3 else None)
        except ValueError:
            raise ValueError(
                f"path: line {i} of {path!r}: expected '<image path> <label> [<source>]', got {line!r}"
            ) from None
        paths.append(fields[0])
    return pl.DataFrame(
        {"path": paths, "label": labels, "source": sources},
        schema={"path": pl.String, "label": pl.Int64, "source": pl.Int64},
    )


def write_swat_lists(
    picks: pl.DataFrame,
    paths: Mapping[int, str] | Sequence[str] | pl.Series,
    labels: Mapping | None,
    out_dir: str,
    *,
    methods: Sequence[str] | None = None,
    n_per_class: int = DEFAULT_N_PER_CLASS,
    t2i_threshold: float = T2I_THRESHOLD,
    i2t_threshold: float = I2T_THRESHOLD,
    i2i_threshold: float = I2I_THRESHOLD,
    source: int | None = None,
) -> dict[str, int]:
    """One :func:`write_swat_txt` list per method of ``picks``
    (:func:`~laionlab.swat.sample.sample_all_methods`' frame) in ``out_dir``, each named by
    :func:`swat_txt_name` from ``n_per_class`` and the method's threshold.

    ``methods``: the lists to write, in order (a method without picks gets an empty file);
    default: the methods present in ``picks``. ``paths``, ``labels``, ``source``: as
    :func:`write_swat_txt` (``paths`` needs only the picked rows). Returns method → lines.
    """
    if not isinstance(picks, pl.DataFrame) or "method" not in picks.columns:
        raise ValueError("picks: expected sample_all_methods' frame (row, class, score, rank, method)")
    if not isinstance(out_dir, str) or not out_dir:
        raise ValueError(f"out_dir: expected a folder path or URI, got {out_dir!r}")
    if methods is None:
        methods = picks["method"].unique(maintain_order=True).to_list()
    unknown = [m for m in methods if m not in _SPECS]
    if unknown:
        raise ValueError(f"methods: expected names of {', '.join(_SPECS)}, got {unknown}")
    threshold_of = {"T2I": t2i_threshold, "I2T": i2t_threshold, "I2I": i2i_threshold}
    out = {}
    for method in methods:
        threshold = threshold_of.get(_SPECS[method][1])
        name = swat_txt_name(method, n_per_class, threshold)
        out[method] = write_swat_txt(
            picks.filter(pl.col("method") == method), paths, labels, f"{out_dir.rstrip('/')}/{name}", source=source
        )
    return out
