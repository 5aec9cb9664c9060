"""The DatasetCatalog resource: the YAML file listing reference datasets."""

from dagster import ConfigurableResource
from pydantic import Field

from laionlab.io.reference import DatasetSpec, load_catalog
from laionlab.repsim.models import ModelSpec, load_models
from laionlab.swat.targets import TargetSpec, load_targets


class DatasetCatalog(ConfigurableResource):
    """Reference datasets (THINGS, NSD, ImageNet-val, the demo sets ...) by name; see
    laionlab/io/reference.py for the file format. Each name is one `dataset` partition."""

    path: str = Field(description="YAML catalog of reference datasets")

    def datasets(self) -> dict[str, DatasetSpec]:
        return load_catalog(self.path)

    def get(self, name: str) -> DatasetSpec:
        specs = self.datasets()
        if name not in specs:
            raise KeyError(f"dataset {name!r} is not in the catalog {self.path} (has {sorted(specs)})")
        return specs[name]

    def targets(self) -> dict[str, TargetSpec]:
        """Retrieval targets (seed 003) listed under ``targets:``; each is one `target` partition."""
        return load_targets(self.path)

    def target(self, name: str) -> TargetSpec:
        targets = self.targets()
        if name not in targets:
            raise KeyError(f"target {name!r} is not in the catalog {self.path} (has {sorted(targets)})")
        return targets[name]

    def models(self) -> dict[str, ModelSpec]:
        """Models compared by seed 002, listed under ``models:``; each is one `model` partition."""
        return load_models(self.path)

    def model(self, name: str) -> ModelSpec:
        models = self.models()
        if name not in models:
            raise KeyError(f"model {name!r} is not in the catalog {self.path} (has {sorted(models)})")
        return models[name]
