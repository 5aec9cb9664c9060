"""The laionlab code location on Kubernetes: ``definitions.defs`` with every step in its own pod.

Same assets, jobs, sensors and resources as ``definitions.py`` (which stays the local code
location, run by the multiprocess executor); the executor is dagster-k8s' ``k8s_job_executor``,
and each step of the ``gpu`` concurrency pool asks for one ``nvidia.com/gpu``
(``deploy/k8s_tags.py``). The instance's ``gpu`` pool limit still caps how many such steps run at
once across all runs (``concurrency.pools.defaultLimit`` in deploy/values.yaml). Loaded by the
user-code deployment of deploy/values.yaml: ``dagster api grpc -f deploy/definitions_k8s.py``.
"""

from __future__ import annotations

import os

from dagster import Definitions
from dagster_k8s import k8s_job_executor

import definitions
from asset_defs import all_assets
from deploy.k8s_tags import k8s_executor_config

# GPUs per GPU step; one step = one embedding / k-means / search loop on one device.
GPUS_PER_STEP = int(os.environ.get("LAIONLAB_GPUS_PER_STEP") or 1)

executor = k8s_job_executor.configured(k8s_executor_config(all_assets, n_gpus=GPUS_PER_STEP), name="laionlab_k8s")

defs = Definitions.merge(definitions.defs, Definitions(executor=executor))
