"""The LAIONLAB_* environment variables that say where the data lives and which CLIP model
embeds it, read in one place: ``definitions.py`` builds the Dagster resources from them and
the command-line tools (``python -m laionlab.query``) use the same values without loading the
code location. No Dagster import.
"""

from __future__ import annotations

import json
import os

from laionlab.io.files import join


def env(name: str, default: str) -> str:
    """``name``'s value, or ``default`` when it is unset or empty."""
    return os.environ.get(name) or default


def env_json(name: str) -> dict[str, str]:
    """``name``'s value read as a JSON object of strings (``{}`` when unset); a value that is
    not one names the variable."""
    text = os.environ.get(name) or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f'{name} must be a JSON object such as \'{{"aws_endpoint": "http://minio:9000"}}\': {err}'
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object, got {text!r}")
    return {str(k): str(v) for k, v in value.items()}


def data_root() -> str:
    """LAIONLAB_DATA_ROOT, default ``data/lab`` under the working directory."""
    return env("LAIONLAB_DATA_ROOT", os.path.abspath("data/lab"))


def lance_uri(root: str | None = None) -> str:
    """LAIONLAB_LANCE_URI, default ``<data root>/lance``."""
    return env("LAIONLAB_LANCE_URI", join(root or data_root(), "lance"))


def lance_storage_options() -> dict[str, str]:
    """LAIONLAB_LANCE_STORAGE_OPTIONS (JSON object of LanceDB object-store options)."""
    return env_json("LAIONLAB_LANCE_STORAGE_OPTIONS")


def clip_model() -> dict:
    """The CLIP model fields: LAIONLAB_CLIP_MODEL (default ``laionlab-tiny``), _PRETRAINED,
    _CHECKPOINT, LAIONLAB_DEVICE (``auto``), LAIONLAB_PRECISION (``fp32``)."""
    return {
        "model_name": env("LAIONLAB_CLIP_MODEL", "laionlab-tiny"),
        "pretrained": os.environ.get("LAIONLAB_CLIP_PRETRAINED") or None,
        "checkpoint": os.environ.get("LAIONLAB_CLIP_CHECKPOINT") or None,
        "device": env("LAIONLAB_DEVICE", "auto"),
        "precision": env("LAIONLAB_PRECISION", "fp32"),
    }
