"""`python -m jobs.demo register|parts|summary`: the steps of `make demo` around `dagster job execute`.

register: add a laion_part partition for every demo part (what laion_parts_sensor does when the
daemon runs); parts: print the part keys; summary: print what the graph holds afterwards.
"""

from __future__ import annotations

import sys

from dagster import DagsterInstance

from asset_defs.ingest import EMBEDDINGS_TABLE
from asset_defs.partitions import laion_part
from definitions import build_resources
from sensors.laion_parts import new_parts


def main(command: str) -> None:
    resources = build_resources()
    source = resources["source"]
    if command == "register":
        instance = DagsterInstance.get()
        added = new_parts(source, instance)
        if added:
            instance.add_dynamic_partitions(laion_part.name, added)
        print(f"laion_part: {len(added)} partitions added, {len(source.parts())} in the source {source.uri}")
    elif command == "parts":
        print("\n".join(sorted(source.parts())))
    elif command == "summary":
        tables = resources["lance"].tables()
        for part in sorted(source.parts()):
            rows = tables.count(EMBEDDINGS_TABLE, f"part = '{part}'") if tables.exists(EMBEDDINGS_TABLE) else 0
            print(f"{part}: {rows} rows in {EMBEDDINGS_TABLE}")
    else:
        raise SystemExit(f"unknown command {command!r}; use register, parts or summary")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "parts")
