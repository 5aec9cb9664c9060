"""Retrieval targets of SWAT (seed 003): the downstream datasets whose classes are retrieved
from LAION, listed under ``targets:`` in the dataset catalog YAML::

    targets:
      eurosat:
        metrics: eurosat_metrics-LAION400M.json   # REAL/SWAT metrics file (synonyms)
        prefix: satellite                          # optional: captions must also say this
        fewshot_dataset: eurosat_fewshot           # optional: labelled catalog dataset (I2T/I2I)
      flowers:
        classes: [pink primrose, hard-leaved pocket orchid, ...]  # or plain class names
        fewshot_labels: {"001": 0, "002": 1}       # optional: dataset label -> class key or name

Relative paths are relative to the catalog file. Each name is one ``target`` partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from laionlab.swat.synonyms import ClassKey, ClassSynonyms, from_class_names, load_metrics_json

__all__ = ["TargetSpec", "load_targets"]


@dataclass(frozen=True)
class TargetSpec:
    name: str
    metrics: str | None = None
    classes: tuple[str, ...] | None = None
    prefix: str | None = None
    fewshot_dataset: str | None = None
    fewshot_labels: dict = field(default_factory=dict)
    description: str = ""

    def synonyms(self) -> dict[ClassKey, ClassSynonyms]:
        """Class → synonyms, from the metrics file or the class names (validated)."""
        if self.metrics is not None:
            return load_metrics_json(self.metrics)
        return from_class_names(list(self.classes))


def load_targets(path: str | Path) -> dict[str, TargetSpec]:
    """The ``targets:`` section of a catalog file ({} when there is none)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"catalog not found: {path}")
    raw = (yaml.safe_load(path.read_text()) or {}).get("targets") or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: 'targets' must map a target name to its entry")
    out = {}
    for name, entry in raw.items():
        where = f"{path}: target {name!r}"
        if not isinstance(entry, dict) or ("metrics" in entry) == ("classes" in entry):
            raise ValueError(f"{where} needs exactly one of 'metrics' (a metrics JSON) or 'classes' (a list of names)")
        unknown = set(entry) - {"metrics", "classes", "prefix", "fewshot_dataset", "fewshot_labels", "description"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        metrics = entry.get("metrics")
        if metrics is not None:
            metrics = str(Path(metrics) if Path(metrics).is_absolute() else (path.parent / metrics).resolve())
            if not Path(metrics).exists():
                raise ValueError(f"{where}: metrics file does not exist: {metrics}")
        classes = entry.get("classes")
        if classes is not None and (not isinstance(classes, list) or not classes):
            raise ValueError(f"{where}: 'classes' must be a non-empty list of names")
        labels = {str(k): v for k, v in (entry.get("fewshot_labels") or {}).items()}
        out[str(name)] = TargetSpec(
            str(name),
            metrics,
            tuple(classes) if classes else None,
            entry.get("prefix"),
            entry.get("fewshot_dataset"),
            labels,
            entry.get("description", ""),
        )
    return out
