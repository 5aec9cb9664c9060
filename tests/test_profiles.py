"""Parameter profiles (asset_defs/profile.py): one set of parameters every launch path sees."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import Config
from pydantic import Field

from asset_defs.profile import load_profile, profile_run_config, profiled

ROOT = Path(__file__).resolve().parents[1]


def _load_in_subprocess(profile: str, code: str) -> dict:
    env = {**os.environ, "LAIONLAB_PROFILE": profile}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


DEFAULTS = """
import json
import definitions
from dagster import AssetKey
defs = definitions.defs
out = {}
for a in definitions.all_assets:
    schema = a.op.config_schema
    if schema is None or not hasattr(schema.config_type, "fields"):
        continue
    out[a.key.to_user_string()] = {
        k: f.default_value for k, f in schema.config_type.fields.items() if f.default_provided
    }
res = definitions.build_resources()
out["_resources"] = {"num_workers": res["clip"].num_workers, "processes_count": res["downloader"].processes_count}
out["_code_versions"] = {a.key.to_user_string(): a.specs_by_key[a.key].code_version for a in definitions.all_assets}
print(json.dumps(out, default=str))
"""


def test_the_demo_profile_is_the_default_config_of_every_launch_path():
    """The code location loaded with LAIONLAB_PROFILE=demo (what the UI, the daemon and the CLI
    load) shows the profile's values as the assets' config defaults and the resources' fields."""
    demo, paper = _load_in_subprocess("demo", DEFAULTS), _load_in_subprocess("paper", DEFAULTS)
    profile = load_profile("demo")
    for asset, values in profile["assets"].items():
        for field, value in values.items():
            assert demo[asset][field] == value, (asset, field)
    assert paper["laion_natural"]["threshold"] == 0.75 and demo["laion_natural"]["threshold"] == 0.5
    assert paper["laion_natural_clusters"]["k"] == 5443 and demo["laion_natural_clusters"]["k"] == 8
    # fields the profile does not name keep the paper's defaults
    assert demo["laion_natural_clusters"]["sample_size"] == paper["laion_natural_clusters"]["sample_size"]
    assert demo["_resources"] == {"num_workers": 0, "processes_count": 1}
    # code versions: every asset has one; a profile value of an asset changes its version (the
    # UI then marks results made with other values stale), other assets keep theirs
    versions, paper_versions = demo["_code_versions"], paper["_code_versions"]
    assert all(versions.values()) and set(versions) == set(paper_versions)
    changed = {name for name in versions if versions[name] != paper_versions[name]}
    assert changed == set(profile["assets"])
    assert paper["_resources"] == {"num_workers": 2, "processes_count": 2}


def test_a_variable_beats_the_profile(monkeypatch):
    code = DEFAULTS
    env = {**os.environ, "LAIONLAB_PROFILE": "demo", "LAIONLAB_NUM_WORKERS": "3"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1])["_resources"]["num_workers"] == 3


def test_run_config_of_a_profile_matches_its_assets():
    config = profile_run_config("demo")["ops"]
    assert config["laion_natural"] == {"config": {"threshold": 0.5}}
    assert profile_run_config("paper") == {"ops": {}}


class _Cfg(Config):
    threshold: float = Field(0.75, ge=0, le=1, description="keep P(photo) > threshold")
    k: int = 5


def _profile(tmp_path, monkeypatch, text: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    monkeypatch.setenv("LAIONLAB_PROFILE", str(path))


def test_a_profile_sets_defaults_and_keeps_validation(tmp_path, monkeypatch):
    _profile(tmp_path, monkeypatch, "assets:\n  some_asset:\n    threshold: 0.3\n")
    cls = profiled("some_asset")(_Cfg)
    assert cls().threshold == 0.3 and cls().k == 5
    assert cls.model_fields["threshold"].description == "keep P(photo) > threshold"
    with pytest.raises(Exception, match="less than or equal to 1"):
        cls(threshold=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("assets:\n  some_asset:\n    treshold: 0.3\n", "has no config field 'treshold'"),
        ("assets:\n  some_asset:\n    threshold: 2\n", r"some_asset.threshold = 2 is refused"),
        ("assets:\n  some_asset: 0.3\n", "'assets' must map names"),
        ("stages: {}\n", "top-level keys"),
    ],
)
def test_a_bad_profile_names_the_file_and_the_field(tmp_path, monkeypatch, text, message):
    _profile(tmp_path, monkeypatch, text)
    with pytest.raises(ValueError, match=message) as err:
        profiled("some_asset")(_Cfg)
    assert "mine.yaml" in str(err.value)


def test_an_unknown_profile_or_asset_is_refused():
    code = "import definitions"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "LAIONLAB_PROFILE": "papers"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0 and "no profile file" in out.stderr and "known profiles: demo, paper" in out.stderr


def test_a_profile_naming_a_missing_asset_fails_the_load(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("assets:\n  laion_naturall:\n    threshold: 0.5\n")
    out = subprocess.run(
        [sys.executable, "-c", "import definitions"],
        cwd=ROOT,
        env={**os.environ, "LAIONLAB_PROFILE": str(path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0 and "no configurable asset named laion_naturall" in out.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LAIONLAB_BATCH_SIZE": "abc"}, "LAIONLAB_BATCH_SIZE = 'abc' is not an integer"),
        ({"LAIONLAB_RAY_GPUS_PER_ACTOR": "half"}, "LAIONLAB_RAY_GPUS_PER_ACTOR = 'half' is not a number"),
    ],
)
def test_a_bad_variable_names_itself(monkeypatch, env, message):
    from definitions import build_resources

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        build_resources()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "resources:\n  clip:\n    num_workers: many\n",
            r"the profile's resources.clip.num_workers = 'many' is not an integer",
        ),
        ("resources:\n  clip:\n    model_name: ViT-B-32\n", r"resources.clip cannot set \['model_name'\]"),
    ],
)
def test_a_bad_profile_resource_is_named(tmp_path, monkeypatch, text, message):
    from definitions import build_resources

    _profile(tmp_path, monkeypatch, text)
    with pytest.raises(ValueError, match=message):
        build_resources()
