"""Nothing untrusted is unpickled; the UI binds to localhost (hardening issue)."""

import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    p
    for d in ("laionlab", "asset_defs", "resources", "jobs", "sensors", "benchmarks", "deploy")
    for p in (ROOT / d).rglob("*.py")
]
SOURCES.append(ROOT / "definitions.py")
UNSAFE = re.compile(
    r"\b(pickle\.loads?|cPickle|cloudpickle\.loads?|dill\.loads?|joblib\.load|torch\.load|skops\.io\.load\(\s*[^)]*trusted\s*=\s*True|allow_pickle\s*=\s*True|weights_only\s*=\s*False)"
)


def test_no_unsafe_deserialisation_in_the_project():
    hits = []
    for path in SOURCES:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if UNSAFE.search(code):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert len(SOURCES) > 50 and not hits, hits


def test_checkpoint_loaders_default_to_weights_only():
    """Model checkpoints are read by open_clip and timm; both must keep weights_only=True."""
    import open_clip.factory
    import timm.models._helpers

    assert inspect.signature(open_clip.factory.load_state_dict).parameters["weights_only"].default is True
    assert inspect.signature(timm.models._helpers.load_state_dict).parameters["weights_only"].default is True


def test_webserver_binds_localhost():
    makefile = (ROOT / "Makefile").read_text()
    commands = [line for line in makefile.splitlines() if not line.lstrip().startswith("#")]
    dev = [line for line in commands if re.search(r"(dagster|\$\(DAGSTER\)) dev|dagster-webserver", line)]
    assert dev and all("-h 127.0.0.1" in line or "--host 127.0.0.1" in line for line in dev), dev


def test_lance_filters_quote_values_through_one_function():
    """A value pasted between quotes in a filter (f"part = '{part}'") lets a part or dataset
    name with a quote change the filter (a DELETE among them); every filter goes through
    laionlab.io.lance.quote_literal."""
    raw = re.compile(r"""f"[^"]*(=|IN \(|LIKE)\s*'\{""")
    hits = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in SOURCES
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if raw.search(line)
    ]
    assert not hits, hits
    from laionlab.io.lance import quote_literal

    assert quote_literal("x' OR 'a'='a") == "'x'' OR ''a''=''a'"


def test_assets_build_no_filter_strings():
    """The storage layer (LanceTables: part_query, read_part, count_part, delete_part; the
    equals / one_of filters) writes every filter; asset_defs/ only names tables, parts, values."""
    from laionlab.io.lance import equals, one_of

    assert equals("part", "it's") == "part = 'it''s'"
    assert one_of("model", ["a'", "b"], negate=True) == "model NOT IN (" + "'a''', 'b')"
    raw = re.compile(r"""["'](part|dataset|model|uid) *(=|!=|IN|NOT IN) """)
    hits = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in sorted((ROOT / "asset_defs").glob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if raw.search(line) or "quote_literal(" in line
    ]
    assert not hits, hits
