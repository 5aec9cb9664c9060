"""The asset graph as a snapshot (keys, upstream keys with their partition mappings,
partitions, groups, pools, kinds, checks): an accidental change to the graph fails here with the
difference; an intended one is recorded with `UPDATE_SNAPSHOTS=1 make test` and reviewed in the
diff of tests/snapshots/asset_graph.json."""

import json
import os
from pathlib import Path

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _partitions(p) -> str | None:
    if p is None:
        return None
    name = getattr(p, "name", None)
    if name:
        return f"dynamic:{name}"
    dims = getattr(p, "partitions_defs", None)
    if dims:
        return "multi:" + "×".join(f"{d.name}={_partitions(d.partitions_def)}" for d in dims)
    return type(p).__name__


def graph() -> dict:
    from definitions import defs

    g = defs.resolve_asset_graph()
    out = {}
    for key in sorted(g.materializable_asset_keys, key=lambda k: k.to_user_string()):
        node = g.get(key)
        mappings = node.partition_mappings
        out[key.to_user_string()] = {
            "deps": {
                p.to_user_string(): type(mappings[p]).__name__ if p in mappings else None
                for p in sorted(node.parent_keys, key=lambda k: k.to_user_string())
            },
            "partitions": _partitions(node.partitions_def),
            "group": node.group_name,
            "pools": sorted(node.pools or []),
            "kinds": sorted(node.kinds),
            "checks": sorted(c.name for c in g.get_check_keys_for_assets({key}))
            if hasattr(g, "get_check_keys_for_assets")
            else [],
        }
    return out


def test_the_asset_graph_matches_its_snapshot():
    current = graph()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT.exists():
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    recorded = json.loads(SNAPSHOT.read_text())
    changes = [f"+ {k}" for k in current.keys() - recorded.keys()] + [
        f"- {k}" for k in recorded.keys() - current.keys()
    ]
    for key in sorted(current.keys() & recorded.keys()):
        for field in sorted(current[key].keys() | recorded[key].keys()):
            if current[key].get(field) != recorded[key].get(field):
                changes.append(f"{key}.{field}: {recorded[key].get(field)!r} -> {current[key].get(field)!r}")
    assert not changes, "the asset graph changed (UPDATE_SNAPSHOTS=1 records it):\n" + "\n".join(changes)
