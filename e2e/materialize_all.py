"""`make e2e` (after ui_check.py): "Materialize all" the way a user does it, through Dagster itself.

1. Fresh state under data/e2e/ (LAIONLAB_DATA_ROOT = data/e2e/lab) and a temporary DAGSTER_HOME
   (the repo's dagster.yaml, written as `make` writes it, plus run monitoring). The demo source
   is built twice: the 3-part demo (`make demo`'s arguments, so the outputs can be compared with
   data/lab) into data/e2e/demo, and a 4-part build into data/e2e/demo4 whose 4th part is held
   back for step 6. (The generator draws the reference sets from the same seeded stream after
   the parts, so a 4-part build's reference sets differ from the 3-part demo's; its first three
   parts are the same.) Partitions are registered with `python -m jobs.demo register`.
2. Starts `dagster-daemon run` and `dagster-webserver` with that environment.
3. Headless Chromium (ui_check.Browser) on the global asset lineage: clicks "Materialize all",
   picks all partitions in the launch dialog and clicks "Launch backfill". If the UI cannot be
   driven, sends the same `launchPartitionBackfill` mutation to /graphql (--graphql forces it).
4. Polls the backfill to a terminal status (bounded), lists its runs, names each failed run with
   its job, assets, partition and error; prints the wall time, the run count and where the time
   went (queueing, run start-up, execution, daemon ticks).
5. Compares key outputs with `make demo`'s (data/lab, .dagster_home) when they exist.
6. Drops the held-back part into the source folder; waits for laion_parts_sensor to register it
   and its ingest run to succeed, then for part_checks_sensor's check run; asserts the
   includes_every_part checks warn naming the new part and eval_to_laion_similarity is STALE.
   Screenshots in e2e-artifacts/.
7. Stops the daemon and the webserver (also on failure and Ctrl-C).

Options: --graphql (skip the browser click), --fast-queue (dequeue_interval_seconds: 1 in the
temporary dagster.yaml, to measure its effect), --keep (leave data/e2e/ in place afterwards;
it is always kept, this only skips deleting the temporary DAGSTER_HOME).
Exit status 0 when every check passes; each failure is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ui_check import ARTIFACTS, ROOT, Browser, free_port, wait_for  # noqa: E402

E2E = ROOT / "data" / "e2e"
SOURCE_ROOT = E2E / "demo"  # the 3-part demo the graph is materialised on
EXTRA_ROOT = E2E / "demo4"  # a 4-part build: its part-00003 is the part added in step 6
LAB = E2E / "lab"
NEW_PART = "part-00003"
BACKFILL_TIMEOUT = 35 * 60  # ~10 min on a quiet 2-core host before the curation, gallery and export assets
GOAL_S = 133  # `make demo`'s whole graph today
CROSS_PART_CHECKED = ["coverage", "stimulus_sets", "ood_generalization", "pruned_pool_sizes"]
PY = Path(sys.executable)

failures: list[str] = []


def check(ok: bool, what: str) -> bool:
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)
    return ok


def say(text: str) -> None:
    print(f"     {text}", flush=True)


# --- GraphQL ------------------------------------------------------------------------------


def gql(base: str, query: str, variables: dict | None = None, timeout: float = 120) -> dict:
    """The `data` of a GraphQL answer. A refused mutation comes back as HTTP 500 with a
    PythonError in the body: the body is read and returned all the same."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = json.load(r)
    except urllib.error.HTTPError as err:
        text = err.read().decode(errors="replace")
        try:
            out = json.loads(text)
        except ValueError:
            raise RuntimeError(f"GraphQL HTTP {err.code}: {text[:2000]}") from None
    if out.get("errors"):
        raise RuntimeError(f"GraphQL errors: {json.dumps(out['errors'])[:3000]}")
    return out["data"]


LAUNCH = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId launchedRunIds }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""

BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename
  ... on PartitionBackfill { id status timestamp endTimestamp numPartitions
    error { message } }
  ... on PythonError { message } ... on BackfillNotFoundError { message } } }"""

RUNS = """
query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { runId jobName status creationTime startTime endTime updateTime
    tags { key value } assetSelection { path } } }
  ... on PythonError { message } } }"""

RUNS_OF_JOB = """
query($job: String!) { runsOrError(filter: {pipelineName: $job}) {
  ... on Runs { results { runId jobName status creationTime startTime endTime tags { key value } } }
  ... on PythonError { message } } }"""

EVENTS = """
query($runId: ID!, $cursor: String) { logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
  __typename
  ... on EventConnection { cursor hasMore events { __typename
    ... on MessageEvent { message timestamp level stepKey }
    ... on ExecutionStepFailureEvent { error { message stack causes { message } } }
    ... on EngineEvent { error { message } } } }
  ... on PythonError { message } } }"""


def run_events(base: str, run_id: str) -> list[dict]:
    events, cursor = [], None
    while True:
        out = gql(base, EVENTS, {"runId": run_id, "cursor": cursor})["logsForRun"]
        if out["__typename"] != "EventConnection":
            return events
        events += out["events"]
        cursor = out["cursor"]
        if not out["hasMore"]:
            return events


def run_error(base: str, run_id: str) -> str:
    """The step failures' (else the run failure's / engine errors') messages of a run."""
    events = run_events(base, run_id)
    steps = [
        f"{e['stepKey']}: {e['error']['message'].strip()}"
        for e in events
        if e["__typename"] == "ExecutionStepFailureEvent" and e.get("error")
    ]
    if steps:
        return " | ".join(steps)
    engine = [e["error"]["message"].strip() for e in events if e.get("error")]
    failed = [e["message"] for e in events if e["__typename"] in ("RunFailureEvent", "RunCanceledEvent")]
    return " | ".join(engine + failed) or "(no error in the event log)"


def phases(base: str, run_id: str) -> dict:
    """Timestamps (s) of a run's lifecycle events: enqueued, dequeued, starting, start, end."""
    names = {
        "RunEnqueuedEvent": "enqueued",
        "RunDequeuedEvent": "dequeued",
        "RunStartingEvent": "starting",
        "RunStartEvent": "start",
        "RunSuccessEvent": "end",
        "RunFailureEvent": "end",
        "RunCanceledEvent": "end",
    }
    out = {}
    for e in run_events(base, run_id):
        if e["__typename"] in names and e.get("timestamp"):
            out.setdefault(names[e["__typename"]], float(e["timestamp"]) / 1000)
    return out


# --- processes ----------------------------------------------------------------------------


class Services:
    """dagster-daemon and dagster-webserver, each its own process group (their code servers and
    run workers are children): stopped group by group, by the ids started here."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs, self.procs = env, logs, []
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        bin_ = PY.parent
        for name, argv in (
            ("daemon", [str(bin_ / "dagster-daemon"), "run", "-w", "workspace.yaml"]),
            (
                "webserver",
                [str(bin_ / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            ),
        ):
            log = open(self.logs / f"materialize_all_{name}.log", "w")
            self.procs.append(
                (
                    name,
                    subprocess.Popen(
                        argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    ),
                )
            )

    def alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"dagster-{name} exited with {proc.returncode} (see e2e-artifacts/materialize_all_{name}.log)"
                )

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            live = []
            for name, proc in self.procs:
                try:
                    os.killpg(proc.pid, sig)
                    live.append((name, proc))
                except ProcessLookupError:
                    pass
            end = time.time() + wait
            for _, proc in live:
                try:
                    proc.wait(max(0.1, end - time.time()))
                except subprocess.TimeoutExpired:
                    pass
            while time.time() < end and any(_group_alive(p.pid) for _, p in live):
                time.sleep(0.5)
            if not any(_group_alive(p.pid) for _, p in live):
                break
        left = [name for name, p in self.procs if _group_alive(p.pid)]
        check(
            not left, f"daemon and webserver stopped, nothing left running{f' (still alive: {left})' if left else ''}"
        )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# --- step 1: fresh state ------------------------------------------------------------------


def prepare(fast_queue: bool) -> tuple[dict, Path]:
    if E2E.exists():
        shutil.rmtree(E2E)
    E2E.mkdir(parents=True)
    home = Path(tempfile.mkdtemp(prefix="e2e-dagster-home-"))
    gpu_limit = os.environ.get("LAIONLAB_GPU_POOL_LIMIT", "1")
    yaml = re.sub(r"default_limit: 1$", f"default_limit: {gpu_limit}", (ROOT / "dagster.yaml").read_text(), flags=re.M)
    yaml += (
        "\n# e2e/materialize_all.py: a killed run worker is marked failed instead of holding its slot\n"
        "run_monitoring:\n  enabled: true\n"
    )
    if fast_queue:
        yaml = yaml.replace(
            "  class: QueuedRunCoordinator", "  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 1"
        )
    (home / "dagster.yaml").write_text(yaml)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LAIONLAB_PROFILE": "demo",
        "LAIONLAB_DATA_ROOT": str(LAB),
        "LAIONLAB_SOURCE_URI": str(SOURCE_ROOT / "laion_parts"),
        "LAIONLAB_DEMO_ROOT": str(SOURCE_ROOT),
        "LAIONLAB_DATASET_CATALOG": str(SOURCE_ROOT / "datasets.yaml"),
        # the held-back part's images live in the 4-part build
        "LAIONLAB_ALLOWED_FILE_ROOTS": f"{SOURCE_ROOT}:{EXTRA_ROOT}",
        "HF_HUB_OFFLINE": "1",
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "WANDB_MODE": "disabled",
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "LAIONLAB_GPU_POOL_LIMIT": gpu_limit,
        "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "131072"),
        "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2"),
    }
    for var in (
        "LAIONLAB_CROSS_PART_AUTOMATION",
        "LAIONLAB_EMBEDDINGS_IMPORT_ROOT",
    ):  # a caller's value would change the graph
        env.pop(var, None)
    for root, parts in ((SOURCE_ROOT, 3), (EXTRA_ROOT, 4)):
        out = subprocess.run(
            [str(PY), "-m", "laionlab.demo", "--root", str(root), "--parts", str(parts)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        check(
            out.returncode == 0,
            f"demo data built into {root.relative_to(ROOT)} ({parts} parts): "
            f"{out.stdout.strip() or out.stderr[-2000:]}",
        )
        if out.returncode:
            raise SystemExit(1)
    for name in ("part-00000", "part-00001", "part-00002"):
        a, b = (r / "laion_parts" / f"{name}.parquet" for r in (SOURCE_ROOT, EXTRA_ROOT))
        import polars as pl

        same = pl.read_parquet(a).drop("URL").equals(pl.read_parquet(b).drop("URL"))
        check(same, f"{name} of the 4-part build equals the 3-part demo's (but for the image URLs' root)")
    held = EXTRA_ROOT / "held_back"
    held.mkdir()
    shutil.move(EXTRA_ROOT / "laion_parts" / f"{NEW_PART}.parquet", held / f"{NEW_PART}.parquet")
    out = subprocess.run([str(PY), "-m", "jobs.demo", "register"], cwd=ROOT, env=env, capture_output=True, text=True)
    check(out.returncode == 0, f"partitions registered: {out.stdout.strip() or out.stderr[-2000:]}")
    if out.returncode:
        raise SystemExit(1)
    return env, home


# --- step 3: Materialize all --------------------------------------------------------------


def all_asset_keys(base: str) -> list[list[str]]:
    return [n["assetKey"]["path"] for n in gql(base, "{ assetNodes { assetKey { path } } }")["assetNodes"]]


def launch_by_graphql(base: str, exclude: list[str]) -> tuple[str | None, float]:
    """Exactly what the button sends: every asset key (less ``exclude``), all partitions."""
    keys = [p for p in all_asset_keys(base) if "/".join(p) not in exclude]
    params = {"assetSelection": [{"path": p} for p in keys], "allPartitions": True}
    start = time.time()
    out = gql(base, LAUNCH, {"backfillParams": params})["launchPartitionBackfill"]
    if out["__typename"] != "LaunchBackfillSuccess":
        check(False, f"launchPartitionBackfill refused ({out['__typename']}): {out.get('message')}")
        return None, start
    return out["backfillId"], start


def backfill_ids(base: str) -> set[str]:
    out = gql(base, "{ partitionBackfillsOrError(limit: 50) { ... on PartitionBackfills { results { id } } } }")
    return {b["id"] for b in out["partitionBackfillsOrError"].get("results", [])}


def click(browser: Browser, text: str, scope: str = "document") -> bool:
    """Click the first visible button whose text is ``text`` (inside ``scope``, a JS expression)."""
    js = (
        f"(() => {{ const root = {scope}; if (!root) return false;"
        " const b = [...root.querySelectorAll('button')].find(x =>"
        f" x.innerText.trim().replace(/[\u2026.]+$/, '') === {json.dumps(text)}"
        " && x.offsetParent !== null && !x.disabled);"
        " if (b) b.click(); return !!b; })()"
    )
    return bool(browser.eval(js))


def wait_js(browser: Browser, js: str, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if browser.eval(js):
            return True
        time.sleep(0.5)
    return False


def launch_by_click(base: str, browser: Browser) -> tuple[str | None, float]:
    before = backfill_ids(base)
    ready = (
        "[...document.querySelectorAll('button')]"
        ".some(b => b.innerText.trim().startsWith('Materialize all') && !b.disabled)"
    )
    if not check(
        browser.open(f"{base}/asset-groups", ready, timeout=120),
        "the global asset lineage shows an enabled 'Materialize all' button",
    ):
        browser.screenshot(ARTIFACTS / "materialize_all_no_button.png")
        return None, time.time()
    browser.screenshot(ARTIFACTS / "lineage_before_materialize_all.png")
    click(browser, "Materialize all")  # the button reads "Materialize all…"
    dialog = "document.querySelector('[role=dialog]')"
    if not wait_js(browser, f"!!{dialog} && {dialog}.innerText.includes('Launch')", 60):
        check(False, "clicking 'Materialize all' opens the launch dialog")
        browser.screenshot(ARTIFACTS / "materialize_all_no_dialog.png")
        return None, time.time()
    time.sleep(2)
    browser.screenshot(ARTIFACTS / "materialize_all_dialog.png")
    say(
        "dialog: "
        + " / ".join(line for line in (browser.eval(f"{dialog}.innerText") or "").splitlines() if line.strip())[:800]
    )
    # all partitions: the UI's partition choice (a radio "All partitions" / "Backfill all", or a
    # partition selector that defaults to all): pick the "all" option when one is offered
    browser.eval(
        f"(() => {{ const d = {dialog}; const opts = [...d.querySelectorAll('label, [role=radio], [role=menuitem]')]"
        ".filter(x => /^(all partitions|all|backfill all)/i.test(x.innerText.trim()));"
        " opts.forEach(x => x.click()); return opts.length; })()"
    )
    time.sleep(1)
    start = time.time()
    launch_text = browser.eval(
        f"(() => {{ const b = [...{dialog}.querySelectorAll('button')]"
        ".find(x => /^Launch( |$)/.test(x.innerText.trim()) && !x.disabled);"
        " if (b) { const t = b.innerText.trim(); b.click(); return t; } return null; })()"
    )
    if not check(bool(launch_text), f"the dialog's launch button was clicked ({launch_text!r})"):
        browser.screenshot(ARTIFACTS / "materialize_all_dialog_no_launch.png")
        return None, start
    end, new = time.time() + 90, set()
    while time.time() < end and not new:
        time.sleep(1)
        new = backfill_ids(base) - before
    time.sleep(1)
    browser.screenshot(ARTIFACTS / "materialize_all_launched.png")
    if not new:
        text = browser.eval("document.body.innerText") or ""
        err = next((line for line in text.splitlines() if "rror" in line), "")
        check(False, f"a backfill appeared within 90 s of clicking {launch_text!r} {err[:500]}")
        return None, start
    return sorted(new)[0], start


# --- step 4: the backfill -----------------------------------------------------------------


def wait_backfill(base: str, services: Services, backfill_id: str, start: float) -> dict:
    end, last, status = start + BACKFILL_TIMEOUT, None, {}
    while time.time() < end:
        services.alive()
        status = gql(base, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        runs = gql(base, RUNS, {"id": backfill_id})["runsOrError"].get("results", [])
        counts: dict[str, int] = {}
        for r in runs:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        line = f"{status.get('status')} after {time.time() - start:.0f} s; runs {dict(sorted(counts.items()))}"
        if line.split(" after")[0] + str(counts) != last:
            say(line)
            last = line.split(" after")[0] + str(counts)
        if status.get("status") not in (None, "REQUESTED", "CANCELING", "FAILING"):
            return status
        time.sleep(5)
    check(
        False,
        f"backfill {backfill_id} reached a terminal status within {BACKFILL_TIMEOUT // 60} min "
        f"(last: {status.get('status')})",
    )
    return status


def describe_run(r: dict) -> str:
    tags = {t["key"]: t["value"] for t in r["tags"]}
    assets = ", ".join("/".join(a["path"]) for a in r.get("assetSelection") or [])
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    partition = tags.get("dagster/partition") or (
        (start if start == end else f"{start}...{end}") if start else "unpartitioned"
    )
    return f"{r['jobName']} [{partition}] ({assets})"


def union(intervals: list[tuple[float, float]]) -> float:
    total, cur = 0.0, None
    for a, b in sorted(intervals):
        if cur is None or a > cur[1]:
            if cur:
                total += cur[1] - cur[0]
            cur = [a, b]
        else:
            cur[1] = max(cur[1], b)
    return total + (cur[1] - cur[0] if cur else 0)


def report_backfill(base: str, backfill_id: str, start: float, status: dict) -> None:
    runs = gql(base, RUNS, {"id": backfill_id})["runsOrError"].get("results", [])
    done = status.get("endTimestamp") or time.time()
    wall = done - start
    for r in runs:
        if r["status"] not in ("SUCCESS", "CANCELED"):
            check(
                False,
                f"backfill run {r['runId'][:8]} {describe_run(r)} is {r['status']}: "
                f"{run_error(base, r['runId'])[:3000]}",
            )
    canceled = [describe_run(r) for r in runs if r["status"] == "CANCELED"]
    if canceled:
        check(
            False,
            f"{len(canceled)} backfill runs canceled (Dagster cancels the rest when a backfill fails): "
            f"{'; '.join(canceled)[:1500]}",
        )
    check(
        status.get("status") == "COMPLETED_SUCCESS",
        f"backfill {backfill_id} ended {status.get('status')}"
        f"{': ' + status['error']['message'][:2000] if status.get('error') else ''}",
    )
    print(
        f"     backfill wall time {wall:.0f} s (launch -> completion), {len(runs)} runs; goal <= {GOAL_S} s; {_load()}",
        flush=True,
    )
    # where the time went: per run, the queue (created -> dequeued), the start-up (dequeued ->
    # the run worker's RUN_START: process start, code load) and the execution (start -> end)
    rows, exec_iv, alive_iv = [], [], []
    for r in sorted(runs, key=lambda r: r["creationTime"]):
        p = phases(base, r["runId"])
        # "queued" ends when the run coordinator hands the run to the launcher (RUN_STARTING): it
        # includes waiting for a run slot and for the `gpu` pool's slot
        created, dq, st, en = (
            r["creationTime"],
            p.get("starting") or p.get("dequeued"),
            p.get("start") or r.get("startTime"),
            p.get("end") or r.get("endTime"),
        )
        rows.append(
            (
                created - start,
                (dq or created) - created,
                (st - (dq or created)) if st else None,
                (en - st) if st and en else None,
                describe_run(r),
            )
        )
        if st and en:
            exec_iv.append((st, en))
        alive_iv.append((created, en or done))
    print(
        "     run timeline (s since launch): created  queued (slots, gpu pool)"
        "  start-up (process, code load)  execution  run",
        flush=True,
    )
    for created, queued, startup, execution, what in rows:
        fmt = lambda v: f"{v:8.1f}" if v is not None else "       -"  # noqa: E731
        print(f"       {created:7.1f} {fmt(queued)} {fmt(startup)} {fmt(execution)}  {what}", flush=True)
    executing = union(exec_iv)
    alive = union(alive_iv)
    startups = [s for _, _, s, _, _ in rows if s is not None]
    queues = [q for _, q, _, _, _ in rows]
    print(
        f"     of {wall:.0f} s: some run executing {executing:.0f} s;"
        f" runs existing but none executing {alive - executing:.0f} s"
        f" (queued or starting); no run at all {wall - alive:.0f} s (the backfill daemon between its 30 s ticks)."
        f" Per run: start-up mean {sum(startups) / max(1, len(startups)):.1f} s,"
        f" queue mean {sum(queues) / max(1, len(queues)):.1f} s,"
        f" waves (distinct creation ticks) {len({round(c / 5) for c, *_ in rows})}",
        flush=True,
    )


def _load() -> str:
    try:
        return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


# --- step 5: the same outputs as `make demo` ----------------------------------------------


def compare_with_demo(home: Path) -> None:
    demo_lab, demo_home = ROOT / "data" / "lab", ROOT / ".dagster_home"
    if not (demo_lab / "laionet" / "laionet.parquet").exists():
        say("no data/lab from `make demo`: output comparison skipped")
        return
    import polars as pl
    from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance

    roots = [str(ROOT / "data" / "demo"), str(SOURCE_ROOT), str(ROOT / "data" / "lab"), str(LAB)]

    def norm(df: pl.DataFrame) -> pl.DataFrame:
        # the data roots differ by design (file:// URLs, paths): replaced by one placeholder
        cols = []
        for name, dtype in df.schema.items():
            if dtype == pl.Utf8:
                col = pl.col(name)
                for r in roots:
                    col = col.str.replace_all(r, "<ROOT>", literal=True)
                cols.append(col.alias(name))
        df = df.with_columns(cols) if cols else df
        sortable = [n for n, t in df.schema.items() if t.is_numeric() or t == pl.Utf8 or t == pl.Boolean]
        return df.sort(sortable) if sortable else df

    def same_table(rel: str) -> None:
        a, b = demo_lab / rel, LAB / rel
        if not b.exists() or not a.exists():
            check(False, f"{rel} exists in both data/lab and data/e2e/lab ({a.exists()}, {b.exists()})")
            return
        x, y = norm(pl.read_parquet(a)), norm(pl.read_parquet(b))
        if x.equals(y):
            check(True, f"{rel}: equal to make demo's ({y.height} rows)")
            return
        detail = f"rows {x.height} vs {y.height}; columns {x.columns == y.columns}"
        if x.shape == y.shape and x.columns == y.columns:
            diffs = []
            for c in x.columns:
                if not x[c].equals(y[c]):
                    if x[c].dtype.is_float():
                        diffs.append(f"{c} (max |diff| {float((x[c] - y[c]).abs().max()):.3g})")
                    else:
                        diffs.append(c)
            detail += f"; differing columns: {', '.join(diffs)}"
        check(False, f"{rel}: differs from make demo's: {detail}")

    def latest_meta(instance, asset: str) -> dict:
        """partition (None when unpartitioned) -> what the latest materialisation recorded."""
        ids = instance.get_latest_storage_id_by_partition(AssetKey(asset), DagsterEventType.ASSET_MATERIALIZATION)
        if ids:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(asset), storage_ids=list(ids.values())), limit=len(ids)
            ).records
        else:
            records = instance.fetch_materializations(AssetKey(asset), limit=1).records
        out = {}
        if records:
            for rec in records:
                md = rec.asset_materialization.metadata
                out[rec.partition_key] = {
                    k: getattr(md[k], "value", md[k])
                    for k in ("profile", "params", "threshold", "rows", "kept")
                    if k in md
                }
        return out

    with DagsterInstance.from_config(str(demo_home)) as a, DagsterInstance.from_config(str(home)) as b:
        ma, mb = latest_meta(a, "laion_natural"), latest_meta(b, "laion_natural")
        for part in sorted(set(ma) | set(mb)):
            check(
                ma.get(part) == mb.get(part),
                f"laion_natural[{part}] metadata (profile, params, threshold) as make demo's: {mb.get(part)}"
                + ("" if ma.get(part) == mb.get(part) else f" vs {ma.get(part)}"),
            )
        for asset in ("laionet", "coverage"):
            xa, xb = latest_meta(a, asset).get(None, {}), latest_meta(b, asset).get(None, {})
            same = (
                bool(xb.get("params"))
                and xa.get("params") == xb.get("params")
                and xa.get("profile") == xb.get("profile")
            )
            check(
                same,
                f"{asset} params as make demo's (profile {xb.get('profile')}, {len(xb.get('params') or {})} params)"
                + ("" if same else f": {xb} vs {xa}"),
            )
    for part in sorted(p.stem for p in (demo_lab / "laion_natural").glob("part-*.parquet")):
        same_table(f"laion_natural/{part}.parquet")
    for rel in ("laionet/laionet.parquet", "coverage/coverage.parquet", "coverage/cluster_overlap.parquet"):
        same_table(rel)


# --- step 6: a new part -------------------------------------------------------------------


def wait_until(what: str, fn, timeout: float, services: Services, every: float = 3):
    end, start = time.time() + timeout, time.time()
    while time.time() < end:
        services.alive()
        value = fn()
        if value:
            say(f"{what}: after {time.time() - start:.0f} s")
            return value
        time.sleep(every)
    check(False, f"{what} within {timeout:.0f} s")
    return None


def new_part(base: str, services: Services) -> None:
    shutil.copy(EXTRA_ROOT / "held_back" / f"{NEW_PART}.parquet", SOURCE_ROOT / "laion_parts" / f"{NEW_PART}.parquet")
    dropped = time.time()
    keys_q = '{ assetNodeOrError(assetKey: {path: ["laion_metadata"]}) { ... on AssetNode { partitionKeys } } }'
    if not wait_until(
        f"laion_parts_sensor registered {NEW_PART}",
        lambda: NEW_PART in gql(base, keys_q)["assetNodeOrError"]["partitionKeys"],
        240,
        services,
    ):
        return

    def ingest_done():
        runs = [
            r
            for r in gql(base, RUNS_OF_JOB, {"job": "ingest_job"})["runsOrError"]["results"]
            if {"key": "dagster/partition", "value": NEW_PART} in r["tags"]
        ]
        return next((r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None)

    ingest = wait_until(f"the ingest run of {NEW_PART} finished", ingest_done, 600, services)
    if not ingest:
        return
    if not check(ingest["status"] == "SUCCESS", f"ingest_job [{NEW_PART}] succeeded ({ingest['status']})"):
        say(run_error(base, ingest["runId"])[:3000])
        return

    def checks_done():
        runs = [
            r
            for r in gql(base, RUNS_OF_JOB, {"job": "part_checks_job"})["runsOrError"]["results"]
            if r["creationTime"] >= ingest["endTime"]
        ]
        return next((r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None)

    run = wait_until("part_checks_sensor's check run after the ingest finished", checks_done, 300, services)
    say(f"new part: {time.time() - dropped:.0f} s from the file drop to the check run's end")
    if not run:
        return
    check(
        run["status"] == "SUCCESS",
        f"part_checks_job run {run['runId'][:8]} {run['status']}"
        + ("" if run["status"] == "SUCCESS" else f": {run_error(base, run['runId'])[:2000]}"),
    )
    q = (
        "query($key: [String!]!) { assetCheckExecutions(assetKey: {path: $key},"
        ' checkName: "includes_every_part", limit: 1) {\n'
        "      runId status evaluation { severity success description } } }"
    )
    for asset in CROSS_PART_CHECKED:
        ex = (gql(base, q, {"key": [asset]})["assetCheckExecutions"] or [None])[0]
        ev = (ex or {}).get("evaluation") or {}
        ok = (
            bool(ex)
            and ex["runId"] == run["runId"]
            and ex["status"] == "FAILED"
            and ev.get("severity") == "WARN"
            and NEW_PART in (ev.get("description") or "")
        )
        check(
            ok,
            f"{asset}: includes_every_part is {ex and ex['status']}/{ev.get('severity')} from the check run: "
            f"{ev.get('description')!r}",
        )
    parts = gql(
        base,
        '{ assetNodeOrError(assetKey: {path: ["eval_to_laion_similarity"]}) { ... on AssetNode { partitionKeys } } }',
    )["assetNodeOrError"]["partitionKeys"]
    stale = gql(
        base,
        'query($p: [String!]) { assetNodeOrError(assetKey: {path: ["eval_to_laion_similarity"]}) {'
        " ... on AssetNode { staleStatusByPartition(partitions: $p)"
        " staleCausesByPartition(partitions: $p) { reason key { path } partitionKey } } } }",
        {"p": parts},
    )["assetNodeOrError"]
    statuses = dict(zip(parts, stale["staleStatusByPartition"]))
    causes = {
        p: sorted({f"{'/'.join(c['key']['path'])}[{c.get('partitionKey')}]" for c in cs})
        for p, cs in zip(parts, stale["staleCausesByPartition"] or [])
    }
    check(
        bool(parts) and all(s == "STALE" for s in statuses.values()),
        f"eval_to_laion_similarity partitions STALE: {statuses}; causes {json.dumps(causes)[:600]}",
    )


# --- main ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphql", action="store_true", help="send the button's mutation instead of clicking it")
    parser.add_argument(
        "--fast-queue", action="store_true", help="dequeue_interval_seconds: 1 in the temporary dagster.yaml"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary DAGSTER_HOME")
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="ASSET",
        help="diagnosis: launch the button's mutation over every asset but these (implies --graphql)",
    )  # fmt: skip
    args = parser.parse_args()
    args.graphql = args.graphql or bool(args.exclude)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None and not args.graphql:
        print(
            "e2e: chromium is not installed (make e2e installs Debian's package when run as root);"
            " --graphql skips the browser"
        )
        return 1
    ARTIFACTS.mkdir(exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    t0 = time.time()
    env, home = prepare(args.fast_queue)
    say(f"DAGSTER_HOME={home}  LAIONLAB_DATA_ROOT={LAB}{'  (dequeue_interval_seconds: 1)' if args.fast_queue else ''}")
    services = Services(env, ARTIFACTS)
    browser = None
    try:
        services.start()
        wait_for(services.base, services.procs[1][1], timeout=300)
        locations = gql(
            services.base,
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
            " locationOrLoadError { __typename ... on PythonError { message } } } } } }",
        )
        entries = locations["workspaceOrError"]["locationEntries"]
        if not check(
            all(
                e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                for e in entries
            ),
            f"code location loaded: {json.dumps(entries)[:1500]}",
        ):
            return 1
        backfill_id, start = None, time.time()
        if chromium is not None:
            try:
                browser = Browser(chromium)
                if not args.graphql:
                    backfill_id, start = launch_by_click(services.base, browser)
            except Exception as err:  # the browser path failed: say why, then send the mutation itself
                check(False, f"Materialize all clicked in Chromium: {type(err).__name__}: {err}")
        if backfill_id is None:
            say(
                "sending the button's launchPartitionBackfill mutation to /graphql"
                + (f" without {', '.join(args.exclude)}" if args.exclude else "")
            )
            backfill_id, start = launch_by_graphql(services.base, args.exclude)
        if backfill_id is None:
            return 1
        check(True, f"backfill {backfill_id} launched")
        status = wait_backfill(services.base, services, backfill_id, start)
        report_backfill(services.base, backfill_id, start, status)
        if browser is not None:
            ok = browser.open(
                f"{services.base}/asset-groups",
                "document.body.innerText.includes('visual_world')"
                " && document.body.innerText.includes('train_test_similarity')",
                timeout=90,
            )
            time.sleep(3)
            browser.screenshot(ARTIFACTS / "lineage_after_materialize_all.png")
            check(
                ok, "screenshot of the lineage after Materialize all: e2e-artifacts/lineage_after_materialize_all.png"
            )
        if status.get("status") == "COMPLETED_SUCCESS":
            compare_with_demo(home)
            new_part(services.base, services)
            if browser is not None:
                ok = browser.open(
                    f"{services.base}/assets/coverage?view=checks",
                    "document.body.innerText.includes('includes_every_part')",
                    timeout=90,
                )
                time.sleep(2)
                browser.screenshot(ARTIFACTS / "coverage_checks_after_new_part.png")
                check(
                    ok and NEW_PART in (browser.eval("document.body.innerText") or ""),
                    "the coverage checks tab names the new part (e2e-artifacts/coverage_checks_after_new_part.png)",
                )
        else:
            say("the backfill did not succeed: output comparison and the new-part steps skipped")
    except KeyboardInterrupt:
        check(False, "interrupted")
    except Exception as err:
        check(False, f"{type(err).__name__}: {err}")
    finally:
        if browser is not None:
            try:
                browser.close()
            except Exception:
                pass
        services.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(
        f"e2e materialize_all: {'all checks passed' if not failures else f'{len(failures)} failed'}"
        f" in {time.time() - t0:.0f} s; logs and screenshots in {ARTIFACTS}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
