"""The DatasetCatalog resource: the YAML file listing reference datasets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from laionlab.swat.targets import TargetSpec, load_targets

if TYPE_CHECKING:  # both import torch: loaded on first use, not with the code location
    from laionlab.io.reference import DatasetSpec
    from laionlab.repsim.models import ModelSpec


class DatasetCatalog(ConfigurableResource):
    """Reference datasets (THINGS, NSD, ImageNet-val, the demo sets ...) by name; see
    laionlab/io/reference.py for the file format. Each name is one `dataset` partition."""

    path: str = Field(description="YAML catalog of reference datasets")

    def datasets(self) -> dict[str, DatasetSpec]:
        """Every entry, unchecked beyond the file's structure (``get`` checks the one asked for)."""
        from laionlab.io.reference import load_catalog

        return load_catalog(self.path, validate=False)

    def _entry(self, kind: str, entries: dict, name: str):
        if name not in entries:
            raise KeyError(f"{kind} {name!r} is not in the catalog {self.path} (has {sorted(entries)})")
        return entries[name]

    def get(self, name: str) -> DatasetSpec:
        """One dataset, checked: a bad entry fails the partitions that use it, not the others."""
        spec = self._entry("dataset", self.datasets(), name)
        spec.validate()
        return spec

    def targets(self) -> dict[str, TargetSpec]:
        """Retrieval targets (seed 003) listed under ``targets:``; each is one `target` partition."""
        return load_targets(self.path)

    def target(self, name: str) -> TargetSpec:
        return self._entry("target", self.targets(), name)

    def models(self) -> dict[str, ModelSpec]:
        """Models compared by seed 002, listed under ``models:``; each is one `model` partition."""
        from laionlab.repsim.models import load_models

        return load_models(self.path)

    def model(self, name: str) -> ModelSpec:
        return self._entry("model", self.models(), name)
