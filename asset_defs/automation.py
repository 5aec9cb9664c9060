"""How the graph updates itself (scale-out issue): backfill policies and declarative automation.

- Per-part assets (partitioned by `laion_part`) run one run per part in a backfill
  (`BackfillPolicy.multi_run(1)`: a failed part retries alone) and carry
  `AutomationCondition.eager()`: when the sensor adds a part, or a part's upstream is
  re-materialised, the default automation condition sensor requests exactly that part (it
  waits while an upstream is missing or in progress). `laion_embeddings_import` is the
  alternative to downloading and stays manual.
- Cross-part assets (unpartitioned: clusters, LAIONet, coverage, dedup, indexes...) read every
  part in one run. By default they are not automated: the UI marks them stale when a part
  changes, so expensive GPU work starts when someone asks for it. With
  `LAIONLAB_CROSS_PART_AUTOMATION=eager` they update eagerly too.
- Per-dataset / per-target / per-model assets need run config (a train set, a reference set)
  and stay manual.

The conditions are evaluated by Dagster's `default_automation_condition_sensor` (toggle it on
under Automation in the UI; `make dev` runs the daemon).
"""

import os

from dagster import AssetsDefinition, AutomationCondition, BackfillPolicy

from asset_defs.partitions import laion_part

MANUAL = {"laion_embeddings_import"}


def cross_part_condition() -> AutomationCondition | None:
    mode = os.environ.get("LAIONLAB_CROSS_PART_AUTOMATION", "off")
    if mode not in ("off", "eager"):
        raise ValueError(f"LAIONLAB_CROSS_PART_AUTOMATION must be 'off' or 'eager', got {mode!r}")
    return AutomationCondition.eager() if mode == "eager" else None


def automate(assets: list[AssetsDefinition]) -> list[AssetsDefinition]:
    """The assets with the policies above attached."""
    cross = cross_part_condition()
    out = []
    for a in assets:
        names = {k.to_user_string() for k in a.keys}
        if a.partitions_def == laion_part and not names & MANUAL:
            a = a.with_attributes(
                automation_condition=AutomationCondition.eager(), backfill_policy=BackfillPolicy.multi_run(1)
            )
        elif a.partitions_def is None and cross is not None:
            a = a.with_attributes(automation_condition=cross)
        out.append(a)
    return out
