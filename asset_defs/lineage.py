"""What a cross-partition result was built from, read back from Dagster's own event log.

- ``require_same_params``: the per-part results a cross-part asset reads must share their
  parameters (each records them with ``profile.params_metadata``); otherwise the step fails
  naming the parts and the values.
- ``includes_every_part`` checks: Dagster marks only *direct* dependents stale, so each
  cross-partition asset downstream of LAION parts carries a WARN check that says, without
  rebuilding the asset, which registered parts its latest result does not include (never built
  into it, or re-materialised since). It runs with the asset, and ``part_checks_sensor``
  re-runs all of them whenever a part is added or re-materialised.
- ``data_version``: steps that read something Dagster does not version (a LAION file, a
  catalog folder, the web, a model chosen by a resource) give their result a data version
  derived from what they read, so a rebuild from unchanged inputs leaves downstream fresh and a
  changed input marks it Unsynced. Every other step gets Dagster's own version (its code
  version and its inputs' versions).
"""

import hashlib
import inspect
import json

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    DataVersion,
    Failure,
    asset_check,
)

from asset_defs.partitions import laion_part
from asset_defs.profile import active_profile

PART_CHECK = "includes_every_part"
DATA_VERSION_TAG = "dagster/data_version"  # the tag Dagster stores a materialisation's data version under


def _latest(instance: DagsterInstance, key: AssetKey):
    """The latest materialisation record of ``key``, or None."""
    return next(iter(instance.fetch_materializations(key, limit=1).records), None)


def latest_by_partition(instance: DagsterInstance, key: AssetKey, partitions: list[str] | None = None) -> dict:
    """partition -> the latest materialisation record of ``key`` (one query for the ids, one for the records)."""
    ids = instance.get_latest_storage_id_by_partition(
        key, DagsterEventType.ASSET_MATERIALIZATION, set(partitions) if partitions else None
    )
    if not ids:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, storage_ids=list(ids.values())), limit=len(ids)
    ).records
    return {r.partition_key: r for r in records}


def storage_ids(instance: DagsterInstance, key: AssetKey, partitions: list[str]) -> dict[str, int]:
    """partition -> storage id of the latest materialisation of ``key``: which version of an
    input a step read, to record and compare later (partitions never materialised are absent)."""
    return {p: r.storage_id for p, r in latest_by_partition(instance, key, partitions).items()}


def recorded_data_version(instance: DagsterInstance, key: AssetKey, partition: str | None = None) -> str | None:
    """The data version of the latest materialisation of ``key`` (of one partition), or None."""
    record = latest_by_partition(instance, key, [partition]).get(partition) if partition else _latest(instance, key)
    return (record.event_log_entry.tags or {}).get(DATA_VERSION_TAG) if record else None


def data_version(context, *read, upstream: list[tuple[str, str | None]] = ()) -> DataVersion:
    """The data version of this step's result, derived from what it read: the asset's code
    version (its source and profile values), the recorded versions of the ``upstream``
    (asset, partition) results it read, and ``read``, fingerprints of what it read outside
    Dagster (file contents, a catalog folder, the model a resource chose)."""
    code = context.assets_def.code_versions_by_key.get(context.asset_key) or ""
    inputs = [[a, p, recorded_data_version(context.instance, AssetKey(a), p)] for a, p in upstream]
    return DataVersion(hashlib.sha1(json.dumps([code, inputs, list(read)], default=str).encode()).hexdigest()[:20])


def require_same_params(context, asset: str, parts: list[str]) -> dict:
    """The parameters every part of ``asset`` was built with; a Failure naming the parts and the
    differing values when they are not all the same (a part built before parameters were
    recorded is logged, not refused)."""
    latest = latest_by_partition(context.instance, AssetKey(asset), parts)
    known = {}
    for part in parts:
        record = latest.get(part)
        value = record.asset_materialization.metadata.get("params") if record else None
        if value is not None:
            known[part] = value.value
    unknown = sorted(set(parts) - set(known))
    if unknown:
        context.log.warning(
            f"{asset}: no recorded parameters for {', '.join(unknown)} (materialised before parameters were recorded)"
        )
    groups: dict[str, list[str]] = {}
    for part, params in known.items():
        groups.setdefault(json.dumps(params, sort_keys=True), []).append(part)
    if len(groups) > 1:
        values = [json.loads(g) for g in groups]
        fields = sorted(
            {f for v in values for f in v if len({json.dumps(w.get(f), sort_keys=True) for w in values}) > 1}
        )
        lines = [
            f"{', '.join(ps)}: " + ", ".join(f"{f}={json.loads(g).get(f)!r}" for f in fields)
            for g, ps in groups.items()
        ]
        raise Failure(
            f"{asset} was built with different parameters across parts; a result over all parts would mix them:\n  "
            + "\n  ".join(lines)
            + f"\nRe-materialise {asset} for the parts with the values you do not want (the parameters come from "
            "LAIONLAB_PROFILE unless a run overrode them)."
        )
    return next(iter(known.values()), {})


def parts_seen_of(instance: DagsterInstance, asset: str) -> str:
    """``parts_seen`` of the latest materialisation of ``asset``: what a result built only from
    it (not from the parts themselves) inherits."""
    record = _latest(instance, AssetKey(asset))
    seen = record.asset_materialization.metadata.get("parts_seen") if record else None
    return seen.value if seen is not None else ""


def parts_not_included(instance: DagsterInstance, key: AssetKey, part_ancestors: list[AssetKey]) -> dict:
    """Which registered LAION parts the latest materialisation of ``key`` does not include:
    ``missing`` (not in its ``parts_seen``, or never built by a per-part ancestor) and
    ``updated`` (a per-part ancestor re-materialised after it)."""
    registered = sorted(instance.get_dynamic_partitions(laion_part.name))
    record = _latest(instance, key)
    if record is None:
        return {"built": False, "registered": registered, "missing": registered, "updated": []}
    metadata = record.asset_materialization.metadata
    if metadata.get("reads_parts") is not None and metadata["reads_parts"].value is False:
        return {"built": True, "registered": registered, "missing": [], "updated": [], "reads_parts": False}
    seen = metadata.get("parts_seen")
    missing = set(registered) - set(p for p in seen.value.split(", ") if p) if seen is not None else set()
    updated = set()
    for ancestor in part_ancestors:
        ids = instance.get_latest_storage_id_by_partition(ancestor, DagsterEventType.ASSET_MATERIALIZATION)
        missing |= {p for p in registered if p not in ids}
        updated |= {p for p, storage_id in ids.items() if storage_id > record.storage_id and p in registered}
    return {"built": True, "registered": registered, "missing": sorted(missing), "updated": sorted(updated - missing)}


def parts_fingerprint(instance: DagsterInstance, per_part: list[AssetKey]) -> str:
    """Changes when a LAION part is registered or removed, or any per-part asset is materialised."""
    latest = [record.storage_id if (record := _latest(instance, k)) else 0 for k in per_part]
    return json.dumps([sorted(instance.get_dynamic_partitions(laion_part.name)), latest])


def part_check(key: AssetKey, part_ancestors: list[AssetKey]):
    """The WARN check ``includes_every_part`` of a cross-partition asset."""

    @asset_check(
        asset=key,
        name=PART_CHECK,
        blocking=False,
        description="Does the latest result include every registered LAION part in its latest version? (Dagster marks "
        "only direct dependents stale; this says it for every asset downstream of the parts.)",
    )
    def _check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        state = parts_not_included(context.instance, key, part_ancestors)
        n, missing, updated = len(state["registered"]), state["missing"], state["updated"]
        if not state["built"]:
            text = "not materialised yet"
        elif state.get("reads_parts") is False:
            text = "does not read LAION parts"
        elif missing or updated:
            text = f"built from {n - len(missing)} of {n} parts" + (
                f"; missing: {', '.join(missing)}" if missing else ""
            )
            text += f"; re-materialised since: {', '.join(updated)}" if updated else ""
        else:
            text = f"includes all {n} parts"
        return AssetCheckResult(
            passed=state["built"] and not missing and not updated,
            severity=AssetCheckSeverity.WARN,
            description=text,
            metadata={"status": text, "parts_missing": missing, "parts_updated": updated, "parts_registered": n},
        )

    return _check


def with_code_versions(assets: list[AssetsDefinition]) -> list[AssetsDefinition]:
    """Each asset's code version: a hash of its function's source and the active profile's
    values for it, so the UI marks its results stale when the step's code or its profile
    parameters change (the library code it calls is versioned by the release, not here)."""
    values = active_profile()["assets"]
    out = []
    for a in assets:
        source = inspect.getsource(a.op.compute_fn.decorated_fn)
        name = a.key.to_user_string()
        version = hashlib.sha1((source + json.dumps(values.get(name, {}), sort_keys=True)).encode()).hexdigest()[:12]
        out.append(a.map_asset_specs(lambda spec, v=version: spec.replace_attributes(code_version=v)))
    return out


def part_checks(assets: list[AssetsDefinition]) -> list:
    """One ``includes_every_part`` check per unpartitioned asset with LAION-part ancestors
    (per-dataset/target results are marked stale by Dagster itself through their direct
    all-parts dependency)."""
    partitioning = {key: a.partitions_def for a in assets for key in a.keys}
    checks = []
    for key in sorted(partitioning):
        if partitioning[key] is not None:
            continue
        ancestors = AssetSelection.assets(key).upstream(include_self=False).resolve(assets)
        part_ancestors = sorted(a for a in ancestors if partitioning.get(a) == laion_part)
        if part_ancestors:
            checks.append(part_check(key, part_ancestors))
    return checks


# A backfill launches a per-part step that reads the parts before it once its own part's input is
# done (Dagster cannot map a dynamic partition to the partitions before it); the earlier parts'
# runs may still be going.
WAIT_SECONDS, WAIT_TRIES = 15, 40


def wait_for_earlier_parts(context, upstream: AssetKey, order: list[str]) -> dict[str, int]:
    """For a per-part step that reads ``upstream`` of every part in ``order`` (the earlier
    parts, then its own): retry the step (RetryRequested, every WAIT_SECONDS, up to WAIT_TRIES
    times) while a run that will materialise one of them is queued or going; fail at once
    naming the parts that have none and no run on the way. Returns the storage id of each
    part's ``upstream`` in ``order`` (what the step then reads, to record)."""
    from dagster import DagsterRunStatus, RetryRequested

    going = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED)
    instance, done = context.instance, storage_ids(context.instance, upstream, order)
    name, me = upstream.to_user_string(), f"{context.asset_key.to_user_string()}[{order[-1]}]"
    pending, missing = [], []
    for p in order:
        planned = instance.get_latest_planned_materialization_info(upstream, p)
        run = instance.get_run_by_id(planned.run_id) if planned and planned.storage_id > done.get(p, -1) else None
        if run is not None and run.status in going:
            pending.append(p)
        elif p not in done:
            missing.append(p)
    if missing:
        raise Failure(
            f"{me} compares its rows with every earlier part's; {name} is missing for "
            f"{', '.join(missing)}: materialise it for those parts first"
        )
    if pending:
        if context.retry_number >= WAIT_TRIES:
            raise Failure(f"{me}: {name} of {', '.join(pending)} still running after {WAIT_TRIES * WAIT_SECONDS} s")
        context.log.info(f"waiting for {name} of {', '.join(pending)} (earlier parts); retry in {WAIT_SECONDS} s")
        raise RetryRequested(max_retries=WAIT_TRIES, seconds_to_wait=WAIT_SECONDS)
    return {p: done[p] for p in order}
