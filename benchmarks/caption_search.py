"""Caption search speed: laionlab.swat.match_synonyms against the seed's SQLite FTS5 search.

Headline: ratio = FTS5 (build + query) seconds / library seconds, target >= 1 (seed 003, SWAT,
``retrieval/laion_parser.py``: LAION captions go into a SQLite table plus an FTS5 virtual
table once (``create_table``, ``create_fts_table``), then every class's synonyms are sent as
FTS5 ``MATCH`` queries (``__get_text_worker__``); the library does one polars Aho-Corasick pass
over all synonyms and needs no index).

Data: ``--n`` generated captions (default 1,000,000) and ``--classes`` classes (default 200)
× ``--synonyms`` synonyms (default 5), seeded. Words are made of syllables, so many are
prefixes or extensions of others ("kalo" / "kalomi"), which only whole-word matching tells
apart; synonyms have 1-3 words joined by spaces, hyphens or "'s ", some as "Abc. def" (which
the seed sends as a quoted phrase; not with ``--prefix``, where the seed would then want the
prefix right before the synonym). Captions are 1-6 filler words and 0-2 near misses (a synonym
word plus a syllable), and about 11 % of them 1-2 synonyms, with mixed case and ASCII punctuation
(``, - _ ! ( ) / : 's``); a few are empty or null. Everything is ASCII
and every synonym yields valid FTS5, which is where FTS5's ``unicode61`` tokens and the
library's word rule coincide (see ``laionlab/swat/match.py`` for where they part: non-ASCII
case folding and diacritics, FTS5 syntax characters in a synonym, a multi-word prefix, a
prefix with a quoted synonym); the match sets must then be identical, and the target counts
as met only if they are.

FTS5 side, as the seed: a table ``part0(uid, TEXT)`` and ``CREATE VIRTUAL TABLE _fts0 USING
FTS5(TEXT)`` filled with ``executemany`` after the seed's normalisation (delete ``"`` ``'``,
``-``/``_`` → space, null → "N.A."), committed, in an SQLite file in a temporary folder
(``--fts-memory`` for ``:memory:``); "build" times that. "Query" runs, class by class,
``SELECT rowid, text FROM _fts0 WHERE _fts0 MATCH ? ORDER BY RANK`` for every synonym
(:func:`laionlab.swat.seed_fts5_query` writes the expression), and collects each class's set
of rows; the seed has no post-filter. It runs on one connection, sequentially (the seed runs
classes in a 16-thread pool, which a 2-core host would not speed up much). Library side:
``match_synonyms(captions, synonyms, prefix)`` on polars' thread pool, its frame included.
Each side is timed ``--repeats`` times (FTS5: a fresh database each time), best kept; the
query-only ratio (FTS5 query / library) is reported too.

Prints a summary, then exactly one JSON line on stdout as its last line; always exits 0.
Run from the repository root: ``python benchmarks/caption_search.py [--n 200000 ...]``.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import host_load, peak_rss_gib, run_benchmark, say  # noqa: E402

TARGET = 1.0

SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "ber", "dan", "sel", "tor", "qua", "pim", "os")
FILLER = (
    "new free shipping size blue red green wallpaper hd image stock vector illustration "
    "home decor women kids gift set black white large small print poster art design "
    "wedding summer beach city night 2019 2020 best cheap sale high quality photo "
    "background pattern cute funny love family travel style fashion modern classic satellite"
).split()
SEPARATORS = (" ", " ", " ", " ", ", ", " - ", "-", "_", "! ", " (", ") ", "/", ": ", "'s ")


def make_synonyms(n_classes: int, per_class: int, seed: int, dotted: bool) -> dict[int, list[str]]:
    rng = random.Random(seed)
    vocab = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(3 * n_classes * per_class)})
    seen: set[str] = set()
    out: dict[int, list[str]] = {}
    for k in range(n_classes):
        names: list[str] = []
        while len(names) < per_class:
            parts = rng.sample(vocab, rng.choice((1, 1, 2, 2, 3)))
            r = rng.random()
            if dotted and r < 0.1 and len(parts) > 1:
                name = parts[0].title() + ". " + " ".join(parts[1:])
            else:
                name = rng.choice((" ", " ", " ", "-", "'s ")).join(parts)
            key = name.lower().replace("'", "").replace("-", " ").replace(".", "")
            if key not in seen:
                seen.add(key)
                names.append(name)
        out[k] = names
    return out


def make_captions(synonyms: dict[int, list[str]], n: int, seed: int) -> list[str | None]:
    rng = random.Random(seed + 1)
    flat = [s for names in synonyms.values() for s in names]
    words = sorted({w for s in flat for w in s.replace(".", "").replace("-", " ").replace("'s", "").split()})
    # near misses: synonym words with one more syllable, which whole-word matching must skip
    near = [w.lower() + rng.choice(SYLLABLES) for w in words]

    def variant(s: str) -> str:
        r = rng.random()
        if r < 0.1:
            s = s.upper()
        elif r < 0.2:
            s = s.title()
        if rng.random() < 0.2:
            s = s.replace(" ", rng.choice(("-", "_", ", ", "  ")))
        return s

    out: list[str | None] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.01:
            out.append(None if r < 0.005 else "")
            continue
        k = rng.choice((1, 1, 1, 2)) if r < 0.11 else 0
        toks = rng.choices(FILLER, k=rng.randint(1, 6))
        toks += [rng.choice(near) for _ in range(rng.randint(0, 2))]
        toks += [variant(rng.choice(flat)) for _ in range(k)]
        rng.shuffle(toks)
        out.append("".join(t + rng.choice(SEPARATORS) for t in toks).strip())
    return out


def fts5_search(captions, synonyms, prefix, db_path) -> tuple[float, float, list[list[int]]]:
    """The seed's build and query; returns (build_s, query_s, classes per caption)."""
    from laionlab.swat import seed_fts5_query

    t0 = time.perf_counter()
    con = sqlite3.connect(db_path)
    cur = con.cursor()
    cur.execute("CREATE TABLE part0 (uid INTEGER, TEXT TEXT)")
    cur.executemany("INSERT INTO part0 (uid, TEXT) values(?, ?)", enumerate(captions))
    con.commit()
    norm = (
        (c.replace('"', "").replace("'", "").replace("-", " ").replace("_", " ") if c else "N.A.",) for c in captions
    )
    cur.execute("CREATE VIRTUAL TABLE _fts0 USING FTS5(TEXT)")
    con.commit()
    cur.executemany("INSERT INTO _fts0 (TEXT) values(?)", norm)
    con.commit()
    build = time.perf_counter() - t0

    t0 = time.perf_counter()
    per_class: dict[int, set[int]] = {}
    for key, names in synonyms.items():
        rows: set[int] = set()
        for name in names:
            cur.execute(
                "SELECT rowid, text FROM _fts0 WHERE _fts0 MATCH ? ORDER BY RANK;",
                (seed_fts5_query(name, prefix),),
            )
            rows.update(rowid for rowid, _ in cur.fetchall())
        per_class[key] = rows
    query = time.perf_counter() - t0
    con.close()
    classes: list[list[int]] = [[] for _ in captions]
    for key in sorted(per_class):
        for rowid in per_class[key]:
            classes[rowid - 1].append(key)  # FTS5 rowids are 1-based insertion order
    return build, query, classes


def run(args, result: dict) -> dict:
    load_before = os.getloadavg()[0]  # before the imports below load the host

    import polars as pl

    from laionlab.swat import from_class_names, match_synonyms

    t0 = time.perf_counter()
    # a dotted synonym is quoted with the prefix into one phrase by the seed; see the docstring
    raw = make_synonyms(args.classes, args.synonyms, args.seed, dotted=args.prefix is None)
    synonyms = from_class_names(raw)
    captions = make_captions(raw, args.n, args.seed)
    say(
        f"caption search benchmark: {args.n} captions, {args.classes} classes x {args.synonyms} "
        f"synonyms, prefix {args.prefix!r}; generated in {time.perf_counter() - t0:.1f}s; "
        f"cpus={os.cpu_count()} load {os.getloadavg()[0]:.2f} polars {pl.__version__} "
        f"(threads {pl.thread_pool_size()}) sqlite {sqlite3.sqlite_version}"
    )
    match_synonyms(captions[:2_000], synonyms, prefix=args.prefix)  # warm-up
    lib_times, builds, queries = [], [], []
    with tempfile.TemporaryDirectory(prefix="caption_search_") as tmp:
        for r in range(args.repeats):
            t = time.perf_counter()
            got = match_synonyms(captions, synonyms, prefix=args.prefix)
            lib_times.append(time.perf_counter() - t)
            db = ":memory:" if args.fts_memory else os.path.join(tmp, f"laion_{r}.db")
            build, query, want = fts5_search(captions, raw, args.prefix, db)
            builds.append(build)
            queries.append(query)
            if not args.fts_memory:
                os.remove(db)
            say(f"repeat {r + 1}: library {lib_times[-1]:.2f}s, FTS5 build {build:.2f}s + query {query:.2f}s")
    got_classes = got["classes"].to_list()
    mismatches = [i for i in range(len(captions)) if got_classes[i] != want[i]]
    lib_s = min(lib_times)
    fts_s = min(b + q for b, q in zip(builds, queries))
    ratio = fts_s / lib_s
    query_ratio = min(queries) / lib_s
    matched = sum(1 for c in got_classes if c) / len(captions)
    multi = sum(1 for c in got_classes if len(c) > 1) / len(captions)
    meets = ratio >= TARGET and not mismatches
    say(
        f"library {lib_s:.2f}s ({len(captions) / lib_s:,.0f} captions/s); FTS5 {fts_s:.2f}s "
        f"(build {min(builds):.2f}s, query {min(queries):.2f}s); ratio {ratio:.1f} (target "
        f"{TARGET:g}: {'met' if meets else 'not met'}), query-only ratio {query_ratio:.2f}; match sets "
        f"{'identical' if not mismatches else f'differ in {len(mismatches)} captions'}; "
        f"{matched:.1%} of captions match a class, {multi:.1%} several"
    )
    for i in mismatches[:5]:
        say(f"  mismatch {i}: {captions[i]!r}: library {got_classes[i]} vs FTS5 {want[i]}")
    return {
        "value": round(ratio, 2),
        "meets_target": bool(meets),
        "library_s": round(lib_s, 3),
        "fts5_s": round(fts_s, 3),
        "fts5_build_s": round(min(builds), 3),
        "fts5_query_s": round(min(queries), 3),
        "query_only_ratio": round(query_ratio, 3),
        "library_captions_per_s": round(len(captions) / lib_s, 1),
        "identical": not mismatches,
        "mismatches": len(mismatches),
        "matched_share": round(matched, 4),
        "multi_class_share": round(multi, 4),
        "n": args.n,
        "classes": args.classes,
        "synonyms_per_class": args.synonyms,
        "prefix": args.prefix,
        "fts_memory": bool(args.fts_memory),
        "repeats": args.repeats,
        "peak_rss_gib": round(peak_rss_gib(), 3),
        **host_load(load_before),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="captions (default 1,000,000)")
    p.add_argument("--classes", type=int, default=200, help="classes (default 200)")
    p.add_argument("--synonyms", type=int, default=5, help="synonyms per class (default 5)")
    p.add_argument("--prefix", default=None, help="the seed's --prefix word (default none)")
    p.add_argument("--fts-memory", action="store_true", help="FTS5 database in memory, not a file")
    p.add_argument("--repeats", type=int, default=1, help="timings per side, best kept (default 1)")
    p.add_argument("--seed", type=int, default=0)
    run_benchmark(
        "caption_search",
        "x",
        TARGET,
        p,
        run,
        argv=argv,
        error_details=lambda args: {"n": args.n},
    )


if __name__ == "__main__":
    main()
