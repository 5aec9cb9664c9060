"""laionlab.curation.agreement against set arithmetic."""

import numpy as np
import polars as pl
import pytest

from laionlab.curation.agreement import Agreement


def test_counts_and_jaccard_equal_set_arithmetic_over_parts():
    rng = np.random.default_rng(0)
    methods = ["a", "b", "c"]
    stats = Agreement(methods)
    kept = {m: set() for m in methods}
    universe_all = set()
    for part in range(3):
        uids = [f"{part}:{i}" for i in range(200)]
        universe_all.update(uids)
        flags = {}
        for m in methods:
            keep = rng.random(len(uids)) < {"a": 0.3, "b": 0.5, "c": 0.9}[m]
            frame = pl.DataFrame({"uid": uids, "keep": keep})
            if m == "c":  # a method with no flag for some rows (and one outside the universe): not kept
                frame = pl.concat([frame.head(150), pl.DataFrame({"uid": ["elsewhere"], "keep": [True]})])
                keep = np.concatenate([keep[:150], np.zeros(50, bool)])
            flags[m] = frame
            kept[m].update(u for u, k in zip(uids, keep) if k)
        stats.add_part(pl.Series(uids), flags)
    assert stats.rows == len(universe_all) == 600
    assert stats.kept_table()["kept"].to_list() == [len(kept[m]) for m in methods]
    for row in stats.pairs_table().iter_rows(named=True):
        x, y = kept[row["a"]], kept[row["b"]]
        assert (row["both"], row["either"]) == (len(x & y), len(x | y))
        assert row["jaccard"] == pytest.approx(len(x & y) / len(x | y), abs=1e-4)
    m = stats.matrix()
    assert np.allclose(np.diag(m), 1) and np.allclose(m, m.T)


def test_empty_sets_agree_and_bad_flags_are_named():
    stats = Agreement(["a", "b"])
    none = pl.DataFrame({"uid": ["x"], "keep": [False]})
    stats.add_part(pl.Series(["x"]), {"a": none, "b": none})
    assert stats.jaccard("a", "b") == 1.0
    with pytest.raises(ValueError, match="no keep flags for method 'b'"):
        stats.add_part(pl.Series(["x"]), {"a": none})
    with pytest.raises(ValueError, match="expected columns uid and keep"):
        stats.add_part(pl.Series(["x"]), {"a": none, "b": none.rename({"keep": "kept"})})
    with pytest.raises(ValueError, match="not among"):
        stats.add_part(pl.Series(["x"]), {"a": none, "b": none, "z": none})
