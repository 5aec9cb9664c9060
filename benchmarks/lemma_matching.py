"""Lemma matching speed: laionlab.laionet.match_lemmas against the seed's per-lemma substring scan.

Headline: ratio = library captions/s / seed-rule captions/s, target >= 20 (seed 001, LAIONet,
``scripts/createdataset/label_laion.py``: every LAION-400M caption is tested against every
unique ILSVRC lemma, 413M captions x 1,824 lemmas, which the seed ran as a Python loop over
rows and lemmas; the library does one Aho-Corasick pass per caption in polars).

Data: ``--n`` generated captions (default 200,000), seeded: templates around 0-2 random lemmas
of the dictionary (``unique_lemma_map(ilsvrc_synsets())``, 1,824 lemmas of 994 synsets) and
filler words, with punctuation, the odd capitalised lemma, and some captions with no lemma or
empty. The library side is ``match_lemmas(captions, lemma_to_wnid)`` on all ``--n`` captions
(the list of Python lists it returns included), on polars' thread pool (every core). The seed
side is the seed's rule written out, on one core:
``caption.translate(str.maketrans(string.punctuation, ' ' * 32))``, padded with a space on
each side, then ``' ' + lemma + ' ' in caption`` for every lemma (the padded lemmas built once,
which only speeds this side up). It runs on the first ``--baseline-n`` captions (default: all
``--n``; ~11k captions/s on the 2-core build host, ~20 s per repeat for 200k), and the two
sides are compared as rates. The matched wnid sets of both sides must be identical on every
caption both ran (reported as ``identical``; the target counts as met only if they are).
Each side is timed ``--repeats`` times, best kept, after a warm-up of the library on a slice.

Detail, not the headline: the same library timing with polars limited to one thread
(``ratio_1_thread``: a child process started with ``POLARS_MAX_THREADS=1``, since polars fixes
its pool size at import), i.e. what the vectorised pass gains on one core against the seed's
one-core loop. ``--no-single-thread`` skips it.

Prints a summary, then exactly one JSON line on stdout as its last line; always exits 0.
Run from the repository root: ``python benchmarks/lemma_matching.py [--n 20000 ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import host_load, peak_rss_gib, run_benchmark, say  # noqa: E402

TARGET = 20.0

# Caption shapes seen in LAION alt-texts; {0} and {1} are lemmas, {f} filler words.
TEMPLATES_ONE = (
    "a photo of a {0} {f}",
    "{f} {0} for sale",
    "close-up of the {0} in the garden, {f}",
    "{0}: {f} (stock image)",
    "Vintage {0} - {f} - free shipping!",
    "the {0}'s {f}",
    "{f} {0}s of 2019",  # plural: the seed's whole-word rule does not match it
    "{f}/{0}/{f}",
)
TEMPLATES_TWO = (
    "my {0} and {1} {f}",
    "{0}, {1} and more!",
    "{f} {0} next to a {1}",
)
TEMPLATES_NONE = (
    "{f}",
    "{f} {f} | {f}",
    "IMG_{n}.JPG",
    "",
)
FILLER = (
    "new free shipping size blue red green wallpaper hd image stock vector illustration "
    "home decor women kids gift set black white large small print poster art design "
    "wedding summer beach city night 2019 2020 best cheap sale men's high quality photo "
    "background pattern cute funny love family travel style fashion modern classic"
).split()


def make_captions(lemmas: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)

    def filler() -> str:
        return " ".join(rng.choices(FILLER, k=rng.randint(1, 4)))

    def lemma() -> str:
        word = rng.choice(lemmas)
        r = rng.random()
        return word.capitalize() if r < 0.05 else word.upper() if r < 0.07 else word

    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            t = rng.choice(TEMPLATES_ONE)
        elif r < 0.7:
            t = rng.choice(TEMPLATES_TWO)
        else:
            t = rng.choice(TEMPLATES_NONE)
        out.append(
            t.replace("{f}", "\0")
            .format(lemma(), lemma(), n=rng.randint(0, 9999))
            .replace("\0", filler(), 1)
            .replace("\0", filler())
        )
    return out


def seed_rule(captions: list[str], lemma_to_wnid: dict[str, str]) -> list[list[str]]:
    """The seed's loop: punctuation to spaces, pad, one substring test per lemma."""
    table = str.maketrans(string.punctuation, " " * len(string.punctuation))
    padded = [(" " + lemma + " ", wnid) for lemma, wnid in lemma_to_wnid.items()]
    out = []
    for caption in captions:
        text = " " + caption.translate(table) + " "
        out.append(sorted({wnid for pattern, wnid in padded if pattern in text}))
    return out


def time_library(
    captions: list[str], lemma_to_wnid: dict[str, str], repeats: int
) -> tuple[list[float], list[list[str]]]:
    """Best-of-``repeats`` timings of match_lemmas on all captions, after a warm-up."""
    from laionlab.laionet import match_lemmas

    match_lemmas(captions[:1_000], lemma_to_wnid)  # warm-up: thread pool, pattern automaton
    times, got = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        got = match_lemmas(captions, lemma_to_wnid)
        times.append(time.perf_counter() - t)
    return times, got


def single_thread_child(args) -> None:
    """``--library-only``: time the library side alone and print one JSON line (run with
    POLARS_MAX_THREADS=1 by :func:`single_thread_rate`)."""
    import polars as pl

    from laionlab.io.imagenet import ilsvrc_synsets
    from laionlab.laionet import unique_lemma_map

    lemma_to_wnid = unique_lemma_map(ilsvrc_synsets()).lemma_to_wnid
    captions = make_captions(list(lemma_to_wnid), args.n, args.seed)
    times, got = time_library(captions, lemma_to_wnid, args.repeats)
    print(json.dumps({"threads": pl.thread_pool_size(), "best_s": min(times), "matched": sum(1 for w in got if w)}))


def single_thread_rate(args) -> dict:
    """The library's rate on one polars thread, from a child process."""
    env = {**os.environ, "POLARS_MAX_THREADS": "1"}
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--library-only",
        "--n",
        str(args.n),
        "--seed",
        str(args.seed),
        "--repeats",
        str(args.repeats),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"single-thread child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args, result: dict) -> dict:
    load_before = os.getloadavg()[0]  # before the imports below load the host

    import polars as pl

    from laionlab.io.imagenet import ilsvrc_synsets
    from laionlab.laionet import unique_lemma_map

    lemmas = unique_lemma_map(ilsvrc_synsets())
    lemma_to_wnid = lemmas.lemma_to_wnid
    captions = make_captions(list(lemma_to_wnid), args.n, args.seed)
    m = args.n if args.baseline_n is None else min(args.baseline_n, args.n)
    say(
        f"lemma matching benchmark: {args.n} captions, {lemmas.n_lemmas} lemmas of "
        f"{lemmas.n_wnids} synsets, seed rule on the first {m}; cpus={os.cpu_count()} "
        f"load {os.getloadavg()[0]:.2f} polars {pl.__version__} (threads {pl.thread_pool_size()})"
    )

    lib_times, got = time_library(captions, lemma_to_wnid, args.repeats)
    say(f"library: {', '.join(f'{t:.2f}s' for t in lib_times)} ({args.n} captions, {pl.thread_pool_size()} threads)")
    seed_times = []
    for r in range(args.repeats):
        t = time.perf_counter()
        want = seed_rule(captions[:m], lemma_to_wnid)
        seed_times.append(time.perf_counter() - t)
        say(f"repeat {r + 1}: seed rule {seed_times[-1]:.2f}s ({m} captions)")
    lib_rate, seed_rate = args.n / min(lib_times), m / min(seed_times)
    ratio = lib_rate / seed_rate
    mismatches = [i for i in range(m) if got[i] != want[i]]
    matched = sum(1 for wnids in got if wnids) / args.n
    meets = ratio >= TARGET and not mismatches
    say(
        f"library {lib_rate:,.0f} captions/s, seed rule {seed_rate:,.0f} captions/s, ratio "
        f"{ratio:.1f} (target {TARGET:g}: {'met' if meets else 'not met'}); match sets "
        f"{'identical' if not mismatches else f'differ in {len(mismatches)}'} on {m} captions; "
        f"{matched:.1%} of captions match a lemma"
    )
    for i in mismatches[:5]:
        say(f"  mismatch {i}: {captions[i]!r}: library {got[i]} vs seed rule {want[i]}")
    single = {}
    if args.single_thread:
        one = single_thread_rate(args)
        one_rate = args.n / one["best_s"]
        single = {
            "library_1_thread_captions_per_s": round(one_rate, 1),
            "ratio_1_thread": round(one_rate / seed_rate, 2),
            "polars_threads_child": one["threads"],
        }
        say(f"library on {one['threads']} polars thread: {one_rate:,.0f} captions/s, ratio {one_rate / seed_rate:.1f}")
    return {
        "value": round(ratio, 2),
        "meets_target": bool(meets),
        "library_captions_per_s": round(lib_rate, 1),
        "seed_rule_captions_per_s": round(seed_rate, 1),
        "identical": not mismatches,
        "mismatches": len(mismatches),
        "compared_captions": m,
        "matched_share": round(matched, 4),
        "library_s": round(min(lib_times), 3),
        "seed_rule_s": round(min(seed_times), 3),
        "n": args.n,
        "baseline_n": m,
        "lemmas": lemmas.n_lemmas,
        "repeats": args.repeats,
        "polars_threads": pl.thread_pool_size(),
        **single,
        "peak_rss_gib": round(peak_rss_gib(), 3),
        **host_load(load_before),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000, help="captions (default 200,000)")
    p.add_argument(
        "--baseline-n",
        type=int,
        default=None,
        help="first captions the seed rule runs on and the match sets are compared on (default: all --n)",
    )
    p.add_argument("--repeats", type=int, default=2, help="timings per side, best kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-single-thread",
        dest="single_thread",
        action="store_false",
        help="skip the library timing with POLARS_MAX_THREADS=1 (a child process)",
    )
    p.add_argument("--library-only", action="store_true", help=argparse.SUPPRESS)
    if "--library-only" in (sys.argv[1:] if argv is None else argv):
        single_thread_child(p.parse_args(argv))
        return
    run_benchmark(
        "lemma_matching",
        "x",
        TARGET,
        p,
        run,
        argv=argv,
        error_details=lambda args: {"n": args.n, "baseline_n": args.baseline_n},
    )


if __name__ == "__main__":
    main()
