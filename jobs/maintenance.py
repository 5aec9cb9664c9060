"""lance_maintenance_job: compact every LanceDB table and bring its indexes up to date (nightly:
the lance_maintenance schedule in sensors/nightly.py).

Each part write adds fragments, and rows written after an index was built are scanned on every
filtered read until the index takes them in (``num_unindexed_rows``); ``optimize`` merges small
fragments, indexes the new rows and drops versions older than Lance's default week (runs read
at most the version they started with, so in-flight runs keep theirs). A compaction that
collides with a concurrent writer's commit fails for that table only; the next night retries.
"""

import time

from dagster import Failure, OpExecutionContext, job, op

from resources import LanceStore


def _unindexed(tbl) -> int:
    return sum(tbl.index_stats(i.name).num_unindexed_rows for i in tbl.list_indices())


@op(description="Compacts each LanceDB table's fragments and brings its indexes up to date.")
def optimize_lance_tables(context: OpExecutionContext, lance: LanceStore) -> dict:
    tables = lance.tables()
    names = sorted(tables.db.table_names(limit=1_000_000))
    done, failed = {}, {}
    for name in names:
        tbl = tables.open_to_write(name)
        before = (tbl.stats()["fragment_stats"]["num_fragments"], _unindexed(tbl))
        start = time.perf_counter()
        try:
            tables.optimize(name)
        except Exception as exc:  # noqa: BLE001 - a conflict with a concurrent writer: the other tables go on
            failed[name] = str(exc)[:300]
            context.log.warning(f"{name}: optimize failed ({exc}); the next run retries")
            continue
        tbl = tables.open_to_write(name)
        after = (tbl.stats()["fragment_stats"]["num_fragments"], _unindexed(tbl))
        done[name] = {
            "fragments": [before[0], after[0]],
            "unindexed_rows": [before[1], after[1]],
            "seconds": round(time.perf_counter() - start, 2),
        }
        context.log.info(
            f"{name}: fragments {before[0]} → {after[0]}, unindexed rows {before[1]:,} → {after[1]:,} "
            f"in {done[name]['seconds']} s"
        )
    if failed:
        raise Failure(
            f"optimize failed for {sorted(failed)} (the others are done: {sorted(done)})", metadata={"errors": failed}
        )
    return done


@job(description="Compact every LanceDB table and index the rows written since its indexes were built.")
def lance_maintenance_job():
    optimize_lance_tables()
