"""Kubernetes settings that give each GPU step a GPU, as plain dicts (no dagster-k8s import).

On Kubernetes every step of a run launched with ``k8s_job_executor`` runs in its own pod; a GPU
step's pod must ask for ``nvidia.com/gpu`` or the scheduler may place it on a node without one
(and the NVIDIA device plugin then exposes no device to it). dagster-k8s reads that request from
the ``dagster-k8s/config`` op tag or from the executor's ``per_step_k8s_config`` (keyed by op
name); both take the same dict (``UserDefinedDagsterK8sConfig``: ``container_config``,
``pod_spec_config``, ...). The assets stay as they are: ``k8s_executor_config`` builds the
per-step config for every asset in the ``gpu`` concurrency pool, so a new GPU asset gets its GPU
by being put in the pool. See deploy/README.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

K8S_CONFIG_TAG = "dagster-k8s/config"  # dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY
GPU_RESOURCE = "nvidia.com/gpu"  # the extended resource of the NVIDIA device plugin
GPU_POOL = "gpu"  # the concurrency pool of laionlab's GPU-bound assets


def _gpu_count(n: int) -> int:
    # Kubernetes accepts only whole GPUs for the extended resource (no fractions, no 0 request
    # that would still need a GPU node).
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a whole number of GPUs >= 1, got {n!r}")
    return n


def gpu_k8s_config(n: int = 1) -> dict[str, Any]:
    """The ``dagster-k8s/config`` value asking for ``n`` GPUs for the step's container.

    Only ``limits`` is set: for an extended resource Kubernetes makes the request equal to the
    limit, and it never overcommits one.
    """
    return {"container_config": {"resources": {"limits": {GPU_RESOURCE: _gpu_count(n)}}}}


def k8s_gpu_tags(n: int = 1) -> dict[str, Any]:
    """Op tags (``@asset(op_tags=...)``) that make the step's pod ask for ``n`` GPUs.
    Dagster stores the dict value JSON-encoded, as dagster-k8s expects."""
    return {K8S_CONFIG_TAG: gpu_k8s_config(n)}


def gpu_pool_op_names(assets: Iterable[Any], pool: str = GPU_POOL) -> list[str]:
    """Sorted names of the ops of the assets in ``pool`` (an asset's ``node_def.pool``); these
    are the step names ``per_step_k8s_config`` is keyed by."""
    names = {a.node_def.name for a in assets if getattr(a.node_def, "pool", None) == pool}
    return sorted(names)


def k8s_executor_config(assets: Iterable[Any], n_gpus: int = 1, **executor_config: Any) -> dict[str, Any]:
    """Config for ``k8s_job_executor``: ``per_step_k8s_config`` giving every ``gpu``-pool step
    ``n_gpus`` GPUs, plus any other executor fields given (``max_concurrent``, ``env_secrets``...)."""
    per_step = {name: gpu_k8s_config(n_gpus) for name in gpu_pool_op_names(assets)}
    if not per_step:
        raise ValueError(f"assets: none is in the {GPU_POOL!r} concurrency pool, so no step would get a GPU")
    return {**executor_config, "per_step_k8s_config": per_step}
