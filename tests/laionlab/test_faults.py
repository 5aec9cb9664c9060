"""Crash faults (hardening issue): a writer killed with SIGKILL in the middle of its LanceDB
write, and a reader running while a part is rewritten."""

import multiprocessing as mp
import os
import signal
import time

import pytest

from laionlab.io.lance import LanceTables, embeddings_schema
from tests.laionlab.test_lance import DIM, batches, uids


def _slow_write(uri: str, part: str, n: int, started, delay: float) -> None:
    def slow():
        for k, b in enumerate(batches(part, n, seed=1)):
            if k == 2:
                started.set()  # some batches already handed to the merge
            time.sleep(delay)
            yield b

    LanceTables(uri).replace_part("emb", part, slow(), embeddings_schema(DIM))


def _count_part(uri: str, part: str, out, ready, stop) -> None:
    seen = set()
    while not stop.is_set():
        seen.add(len(uids(LanceTables(uri), part)))
        ready.set()  # the first read is done: the writer may start
    out.put(sorted(seen))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_sigkill_mid_write_loses_nothing_and_old_versions_stay_readable(tmp_path):
    uri = str(tmp_path / "db")
    tables = LanceTables(uri)
    tables.replace_part("emb", "a", batches("a", 50), embeddings_schema(DIM))
    tables.replace_part("emb", "b", batches("b", 30), embeddings_schema(DIM))
    before = uids(tables)
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    proc = ctx.Process(target=_slow_write, args=(uri, "a", 200, started, 0.3))
    proc.start()
    assert started.wait(60)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    after = LanceTables(uri)
    assert uids(after) == before  # the killed write left no trace, no duplicate
    table = after.open("emb")
    for version in table.list_versions():  # every committed version still reads
        table.checkout(version["version"])
        assert table.count_rows() >= 0
    table.checkout_latest()
    # the rerun completes with exactly the new rows of the part
    after.replace_part("emb", "a", batches("a", 200, seed=1), embeddings_schema(DIM))
    got = uids(LanceTables(uri))
    assert got == sorted([f"a:{i:09d}" for i in range(200)] + [f"b:{i:09d}" for i in range(30)])
    assert len(got) == len(set(got))


def test_a_reader_sees_the_old_part_or_the_new_one(tmp_path):
    uri = str(tmp_path / "db")
    tables = LanceTables(uri)
    tables.replace_part("emb", "a", batches("a", 100), embeddings_schema(DIM))
    ctx = mp.get_context("spawn")
    out, ready, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    reader = ctx.Process(target=_count_part, args=(uri, "a", out, ready, stop))
    reader.start()
    assert ready.wait(120), "the reader process never finished its first read"
    for n in (250, 40, 180):  # rewrite the part three times with other sizes
        tables.replace_part("emb", "a", batches("a", n, seed=n), embeddings_schema(DIM))
    time.sleep(0.5)
    stop.set()
    seen = out.get(timeout=60)
    reader.join(30)
    assert 100 in seen and set(seen) <= {100, 250, 40, 180}  # never a half-written part
