"""deploy/: the Helm values, the image, the GPU request of the `gpu`-pool steps and the README
that documents them agree with each other and with the code. Where dagster-k8s is installed its
own parsers check the tag and the executor config; without it, their documented structure."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

from deploy.k8s_tags import (
    GPU_RESOURCE,
    K8S_CONFIG_TAG,
    gpu_k8s_config,
    gpu_pool_op_names,
    k8s_executor_config,
    k8s_gpu_tags,
)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
# dagster_k8s.job.USER_DEFINED_K8S_JOB_CONFIG_SCHEMA's fields (dagster-k8s 0.29).
K8S_CONFIG_FIELDS = {
    "container_config",
    "pod_template_spec_metadata",
    "pod_spec_config",
    "job_config",
    "job_metadata",
    "job_spec_config",
    "merge_behavior",
}
EXPECTED_TAG = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}}}}


@pytest.fixture(scope="module")
def values():
    return yaml.safe_load((DEPLOY / "values.yaml").read_text())


@pytest.fixture(scope="module")
def deployment(values):
    (only,) = values["dagster-user-deployments"]["deployments"]
    return only


@pytest.fixture(scope="module")
def dockerfile():
    return (DEPLOY / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def readme():
    return (DEPLOY / "README.md").read_text()


@pytest.fixture(scope="module")
def gpu_assets():
    from asset_defs import all_assets
    from definitions import defs

    graph = defs.resolve_asset_graph()
    in_pool = sorted({a.node_def.name for a in all_assets for key in a.keys if graph.get(key).pools == {"gpu"}})
    return all_assets, in_pool


def _workdir(dockerfile: str) -> str:
    return re.search(r"^WORKDIR\s+(\S+)", dockerfile, re.M).group(1)


def test_user_deployment_serves_the_code_location(values, deployment, dockerfile):
    assert values["dagster-user-deployments"]["enabled"] is True
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert deployment["name"] == workspace["load_from"][0]["python_file"]["location_name"] == "laionlab"
    image = deployment["image"]
    assert image["repository"] and str(image["tag"]) and image["pullPolicy"] in {"Always", "IfNotPresent", "Never"}
    args = deployment["dagsterApiGrpcArgs"]
    option = dict(zip(args[::2], args[1::2], strict=True))
    workdir = _workdir(dockerfile)
    assert option["-d"] == workdir and option["-a"] == "defs"
    code_file = Path(option["-f"]).relative_to(workdir)
    assert code_file == Path("deploy/definitions_k8s.py") and (ROOT / code_file).is_file()
    assert "import definitions" in (ROOT / code_file).read_text()  # the same Definitions as definitions.py
    assert deployment["port"] and deployment["includeConfigInLaunchedRuns"]["enabled"] is True


def test_environment_reaches_runs_and_names_real_variables(deployment):
    env = deployment["env"]
    # a map, which the chart writes to a ConfigMap that launched runs and steps receive too
    assert isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
    assert env["LAIONLAB_DATA_ROOT"].startswith("s3://") and env["LAIONLAB_LANCE_URI"].startswith("s3://")
    # the variables definitions.py reads (through laionlab/settings.py, shared with the query CLI)
    sources = [ROOT / "definitions.py", ROOT / "laionlab" / "settings.py", *(ROOT / "deploy").glob("*.py")]
    code = "\n".join(p.read_text() for p in sources)
    unknown = [k for k in env if k.startswith("LAIONLAB_") and f'"{k}"' not in code]
    assert unknown == []
    assert [s["name"] for s in deployment["envSecrets"]] == ["laionlab-secrets"]
    (mount,) = deployment["volumeMounts"]
    assert env["LAIONLAB_DATASET_CATALOG"].startswith(mount["mountPath"] + "/")
    assert deployment["volumes"][0]["configMap"]["name"] == "laionlab-catalog"


def test_run_launcher_and_postgres(values):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert "k8sRunLauncher" in values["runLauncher"]["config"]
    pg = values["postgresql"]
    assert {"postgresqlHost", "postgresqlUsername", "postgresqlDatabase"} <= set(pg) and pg["service"]["port"] == 5432
    if not values["generatePostgresqlPasswordSecret"]:
        assert values["global"]["postgresqlSecretName"] == "dagster-postgresql-secret"


def _chart_concurrency(concurrency: dict) -> dict:
    """What the chart writes to dagster.yaml for `concurrency` (templates/helpers/instance/_concurrency.tpl)."""
    pools, runs = concurrency.get("pools", {}), concurrency.get("runs", {})
    out = {}
    names = {
        "defaultLimit": "default_limit",
        "granularity": "granularity",
        "opGranularityRunBuffer": "op_granularity_run_buffer",
    }
    if any(pools.get(k) is not None for k in names):
        out["pools"] = {names[k]: v for k, v in pools.items() if v is not None}
    run_names = {"maxConcurrentRuns": "max_concurrent_runs", "tagConcurrencyLimits": "tag_concurrency_limits"}
    if runs.get("maxConcurrentRuns") is not None or runs.get("tagConcurrencyLimits"):
        out["runs"] = {run_names[k]: v for k, v in runs.items() if v is not None}
    return out


def test_concurrency_is_a_valid_instance_config(values, tmp_path):
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True and set(concurrency) <= {"enabled", "pools", "runs"}
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    # the chart fails to render when run limits are set in both places
    queued = coordinator.get("config", {}).get("queuedRunCoordinator", {})
    assert queued.get("maxConcurrentRuns") is None and not queued.get("tagConcurrencyLimits")
    instance_yaml = {
        "concurrency": _chart_concurrency(concurrency),
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
        "telemetry": {"enabled": False},
    }
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == concurrency["pools"]["defaultLimit"] >= 1
        assert config.run_queue_config.max_concurrent_runs == concurrency["runs"]["maxConcurrentRuns"]
        (limit,) = config.run_queue_config.tag_concurrency_limits
        assert limit["key"] == "dagster/backfill" and limit["value"] == {"applyLimitPerUniqueValue": True}
    finally:
        instance.dispose()


def test_dockerfile_installs_the_project_with_the_gpu_extra(dockerfile):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "gpu" in pyproject["project"]["optional-dependencies"]
    assert re.search(r"^FROM python:3\.11-slim\s*$", dockerfile, re.M)
    assert 'pip install ".[gpu]"' in dockerfile and "pip install --no-deps -e ." in dockerfile
    assert "dagster-k8s" in dockerfile and "dagster-postgres" in dockerfile
    # the image's dagster (= the chart version) satisfies the project's own pin
    from packaging.requirements import Requirement

    version = re.search(r"^ARG DAGSTER_VERSION=(\S+)", dockerfile, re.M).group(1)
    pins = [Requirement(d) for d in pyproject["project"]["dependencies"] if d.startswith("dagster")]
    assert pins and all(version in r.specifier for r in pins)
    # every top-level package the code location imports is copied in
    copied = set(re.findall(r"^COPY\s+(\S+)\s+\./", dockerfile, re.M))
    copied |= {p for line in re.findall(r"^COPY\s+(.+)\s+\./\s*$", dockerfile, re.M) for p in line.split()}
    imported = set(re.findall(r"^from (\w+)", (ROOT / "definitions.py").read_text(), re.M)) - {"dagster", "__future__"}
    assert imported | {"laionlab", "deploy", "definitions.py"} <= copied


def test_readme_documents_the_install(readme, values):
    for command in (
        "helm repo add dagster https://dagster-io.github.io/helm",
        "helm upgrade --install",
        "-f deploy/values.yaml",
        "docker build -f deploy/Dockerfile",
        "--version $DAGSTER_VERSION",
        "LAIONLAB_DATA_ROOT=s3://",
        "LAIONLAB_LANCE_URI=s3://",
    ):
        assert command in readme, command
    for name in (values["global"]["postgresqlSecretName"], "laionlab-secrets", "laionlab-catalog"):
        assert f"create secret generic {name}" in readme or f"create configmap {name}" in readme, name
    assert "--from-literal=postgresql-password=" in readme  # the key the chart reads


def test_readme_tag_is_k8s_gpu_tags(readme):
    block = readme.split("<!-- k8s-gpu-tag -->", 1)[1]
    documented = json.loads(re.search(r"```json\n(.*?)\n```", block, re.S).group(1))
    assert documented == k8s_gpu_tags() == EXPECTED_TAG


def test_gpu_tags_structure():
    assert k8s_gpu_tags() == {K8S_CONFIG_TAG: gpu_k8s_config(1)}
    assert k8s_gpu_tags(2)[K8S_CONFIG_TAG]["container_config"]["resources"]["limits"] == {GPU_RESOURCE: 2}
    assert set(gpu_k8s_config()) <= K8S_CONFIG_FIELDS
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="n: expected a whole number of GPUs"):
            k8s_gpu_tags(bad)


def test_op_tags_reach_dagster_k8s_as_json():
    """dagster-k8s json.loads the tag value; dagster stores a dict op tag JSON-encoded."""
    import dagster as dg

    @dg.asset(pool="gpu", op_tags=k8s_gpu_tags())
    def a_gpu_asset(): ...

    assert json.loads(a_gpu_asset.node_def.tags[K8S_CONFIG_TAG]) == gpu_k8s_config()


def test_every_gpu_pool_asset_gets_a_gpu(gpu_assets):
    all_assets, in_pool = gpu_assets
    assert "laion_embeddings" in in_pool and "reference_embeddings" in in_pool
    assert gpu_pool_op_names(all_assets) == in_pool
    config = k8s_executor_config(all_assets, max_concurrent=8)
    assert config["max_concurrent"] == 8
    assert config["per_step_k8s_config"] == {name: gpu_k8s_config() for name in in_pool}
    with pytest.raises(ValueError, match="none is in the 'gpu' concurrency pool"):
        k8s_executor_config([a for a in all_assets if a.node_def.name not in in_pool])


def test_dagster_k8s_accepts_the_tag_and_executor_config(gpu_assets):
    dagster_k8s = pytest.importorskip("dagster_k8s")
    from dagster._config import validate_config
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )

    user = get_user_defined_k8s_config({k: json.dumps(v) for k, v in k8s_gpu_tags().items()})
    assert user.container_config == {"resources": {"limits": {GPU_RESOURCE: 1}}}

    all_assets, in_pool = gpu_assets
    config = k8s_executor_config(all_assets)
    result = validate_config(dagster_k8s.k8s_job_executor.config_schema.config_type, config)
    assert result.success, result.errors
    # the step Job that dagster-k8s would create for one GPU step asks for the GPU
    step_config = UserDefinedDagsterK8sConfig.from_dict(config["per_step_k8s_config"][in_pool[0]])
    step = K8sContainerContext().merge(K8sContainerContext(run_k8s_config=step_config))
    job_config = DagsterK8sJobConfig(job_image="laionlab:test", dagster_home="/opt/dagster/dagster_home")
    job = construct_dagster_k8s_job(
        job_config, ["dagster", "api", "execute_step"], "dagster-step-test", user_defined_k8s_config=step.run_k8s_config
    )
    assert job.spec.template.spec.containers[0].resources.limits == {GPU_RESOURCE: "1"}


def test_k8s_code_location_loads():
    pytest.importorskip("dagster_k8s")
    from dagster import Definitions

    from deploy import definitions_k8s

    Definitions.validate_loadable(definitions_k8s.defs)
    assert definitions_k8s.defs.resolve_job_def("ingest_job").executor_def.name == "laionlab_k8s"
