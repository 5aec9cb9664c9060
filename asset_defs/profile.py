"""Parameter profiles: one set of asset and resource parameters that every launch path sees.

A profile is a YAML file under ``profiles/`` (or any path) chosen by ``LAIONLAB_PROFILE``
(``paper``, the default, or ``demo``). It becomes the *defaults* of the assets' Config classes
and of the resources when the code location is loaded, so the UI's Materialize and
"Materialize all", the launchpad, asset backfills, automation, sensors, schedules,
``dagster job execute`` and the demo runner all build a partition with the same parameters;
a run can still override any field. ``paper`` is empty: the code's defaults are the papers'
(each cited in its Config class). Results record the profile and parameters they used
(``params_metadata``).

    assets:      {asset name: {config field: value}}
    resources:   {resource key: {field: value}}   (LAIONLAB_* variables still win)
"""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path
from typing import Annotated

import yaml
from dagster import MetadataValue
from pydantic import TypeAdapter, ValidationError

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
DEFAULT_PROFILE = "paper"
SECTIONS = {"description", "assets", "resources"}

# asset name -> Config class, filled by @profiled (checked against the profile's asset names)
PROFILED: dict[str, type] = {}


def profile_path(name: str | None = None) -> Path:
    """The YAML file of profile ``name`` (LAIONLAB_PROFILE when None): a name under profiles/ or a path."""
    name = name or os.environ.get("LAIONLAB_PROFILE") or DEFAULT_PROFILE
    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ValueError(
            f"LAIONLAB_PROFILE={name!r}: no profile file {path} "
            f"(known profiles: {', '.join(known)}, or a path to a .yaml file)"
        )
    return path


@cache
def load_profile(name: str | None = None) -> dict:
    """The profile as a dict with ``name``, ``path``, ``assets`` and ``resources``."""
    path = profile_path(name)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) - SECTIONS:
        raise ValueError(
            f"profile {path}: top-level keys must be among {sorted(SECTIONS)}, "
            f"got {sorted(data) if isinstance(data, dict) else data!r}"
        )
    for section in ("assets", "resources"):
        value = data.get(section) or {}
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ValueError(f"profile {path}: '{section}' must map names to {{field: value}} mappings")
        data[section] = value
    return {**data, "name": path.stem, "path": str(path)}


def active_profile() -> dict:
    return load_profile(os.environ.get("LAIONLAB_PROFILE") or DEFAULT_PROFILE)


def profiled(asset_name: str):
    """Class decorator: the Config class of ``asset_name`` with the active profile's values as
    its defaults (a subclass that redeclares those fields; validators and descriptions kept).
    An unknown field or a value its field refuses fails at load time, naming the profile."""

    def decorate(cls: type) -> type:
        profile = active_profile()
        values = profile["assets"].get(asset_name, {})
        namespace = {
            "__annotations__": {},
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
        }
        for field, value in values.items():
            if field not in cls.model_fields:
                raise ValueError(
                    f"profile {profile['path']}: asset {asset_name!r} has no config field {field!r} "
                    f"(fields: {', '.join(cls.model_fields)})"
                )
            info = cls.model_fields[field]
            try:
                TypeAdapter(
                    Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
                ).validate_python(value)
            except ValidationError as err:
                raise ValueError(
                    f"profile {profile['path']}: {asset_name}.{field} = {value!r} is refused: {err.errors()[0]['msg']}"
                ) from None
            new = copy.copy(info)  # the plain YAML value: Dagster shows it as the field's default
            new.default, new.default_factory = value, None
            namespace["__annotations__"][field] = info.annotation
            namespace[field] = new
        PROFILED[asset_name] = type(cls)(cls.__name__, (cls,), namespace) if values else cls
        return PROFILED[asset_name]

    return decorate


def check_profile_assets() -> None:
    """Every asset the active profile names has a profiled Config class (a typo is an error)."""
    profile = active_profile()
    unknown = sorted(set(profile["assets"]) - set(PROFILED))
    if unknown:
        raise ValueError(
            f"profile {profile['path']}: no configurable asset named {', '.join(unknown)} "
            f"(assets: {', '.join(sorted(PROFILED))})"
        )


def resource_default(resource: str, field: str, default):
    """The active profile's value of a resource field, else ``default``."""
    return active_profile()["resources"].get(resource, {}).get(field, default)


def profile_run_config(name: str | None = None) -> dict:
    """A profile's asset values as run config (``ops: {asset: {config: ...}}``): the same
    parameters for a process whose own profile is another, e.g. the tests (paper) running the demo."""
    return {"ops": {asset: {"config": dict(values)} for asset, values in load_profile(name)["assets"].items()}}


def params_metadata(config) -> dict:
    """What a result records about how it was made: the profile and every config value."""
    return {"profile": active_profile()["name"], "params": MetadataValue.json(config.model_dump(mode="json"))}
