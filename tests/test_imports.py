"""Loading the code location stays cheap: `import definitions` (what every `dagster job
execute`, code server and daemon-launched run pays) imports none of the heavy libraries; the
assets import them in their bodies, where the work is."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# seconds of import each (torch ~1 s, lancedb ~0.9 s, sklearn/scipy ~0.5 s ...)
HEAVY = (
    "torch",
    "torchvision",
    "open_clip",
    "lancedb",
    "lance",
    "sklearn",
    "scipy",
    "faiss",
    "matplotlib",
    "timm",
    "img2dataset",
    "webdataset",
    "h5py",
)

SCRIPT = f"""
import json, sys
import definitions, asset_defs, resources, jobs, sensors
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""

_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|( *)(\S+)\s*$")


def import_chains(importtime: str, modules: list[str]) -> dict[str, list[str]]:
    """For each module, the chain of imports that first loaded it (outermost first), read from
    ``python -X importtime`` output: a module's line follows its children's, one level deeper."""
    rows = [(len(m.group(1)), m.group(2)) for m in map(_LINE.match, importtime.splitlines()) if m]
    chains = {}
    for name in modules:
        start = next((i for i, (_, mod) in enumerate(rows) if mod == name), None)
        if start is None:
            continue
        depth, chain = rows[start][0], [name]
        for level, mod in rows[start + 1 :]:
            if level < depth:
                chain.append(mod)
                depth = level
        chains[name] = chain[::-1]
    return chains


def test_code_location_imports_no_heavy_library():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "DAGSTER_DISABLE_TELEMETRY": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    imported = json.loads(proc.stdout.strip().splitlines()[-1])
    chains = import_chains(proc.stderr, imported)
    why = "\n".join(f"  {m}: " + " -> ".join(chains.get(m, ["?"])) for m in imported)
    assert not imported, (
        f"`import definitions` imports {', '.join(imported)}; import them inside the functions that use them "
        f"(first importer of each, outermost first):\n{why}"
    )


def test_import_chains_reads_importtime_output():
    out = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       5 |          5 |         torch._C",
            "import time:      10 |         15 |       torch",
            "import time:       3 |         18 |     laionlab.embed.encode",
            "import time:       1 |          1 |     polars",
            "import time:       2 |         21 |   asset_defs.ingest",
            "import time:       4 |         25 | definitions",
        ]
    )
    assert import_chains(out, ["torch", "sklearn"]) == {
        "torch": ["definitions", "asset_defs.ingest", "laionlab.embed.encode", "torch"]
    }
