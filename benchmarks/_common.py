"""What every benchmark shares: progress lines, peak RSS, host load, and the output contract.

The contract (:func:`run_benchmark`): parse the command line, run the body, and end with
exactly one JSON line on stdout, ``{"benchmark", "value", "unit", "target", "meets_target",
...details}``, then exit 0, whatever happened: ``--help`` prints the usage only (no JSON
line); a bad option, an exception or a KeyboardInterrupt in the body give the JSON line with
an ``"error"`` and ``meets_target`` false (the traceback goes to stderr).

Not a benchmark itself; the scripts import it as ``benchmarks._common`` after putting the
repository root on ``sys.path``, before anything heavy: importing it sets the environment
every benchmark runs in (no model hub, no update checks, no Dagster telemetry; a variable
already set wins).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

for _name in ("HF_HUB_OFFLINE", "NO_ALBUMENTATIONS_UPDATE", "DAGSTER_DISABLE_TELEMETRY"):
    os.environ.setdefault(_name, "1")


def say(msg: str) -> None:
    print(msg, flush=True)


def peak_rss_gib() -> float:
    """Peak RSS of this process (``ru_maxrss``), GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def rss_mib() -> float:
    """Current RSS of this process (``VmRSS``), MiB: a baseline before the work a peak is compared with."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib() -> float:
    """Peak RSS of this process image (``VmHWM``), MiB. Not ``ru_maxrss`` in a child process:
    Linux carries the parent's peak into it across fork/vfork + exec (a benchmark parent that
    generated gigabytes of data made every child look that big)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def host_load(load_before: float) -> dict:
    """The JSON line's host figures: CPU count and the 1-minute load average before and after."""
    return {
        "cpus": os.cpu_count(),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def run_benchmark(
    name: str,
    unit: str,
    target: float,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace, dict], dict | None],
    *,
    argv: Sequence[str] | None = None,
    value: Any = None,
    error_details: Callable[[argparse.Namespace], dict] | None = None,
) -> None:
    """Parse ``argv`` with ``parser``, run ``body(args, result)``, print one JSON line, exit 0.

    ``result`` starts as ``{"benchmark": name, "value": value, "unit": unit, "target": target,
    "meets_target": False}``; ``body`` fills it in place and/or returns a dict merged into it
    (so what it recorded before failing is kept). On an exception or KeyboardInterrupt the
    line gets ``"error": "Type: message"``, ``meets_target`` false and ``error_details(args)``.
    """
    result: dict = {"benchmark": name, "value": value, "unit": unit, "target": target, "meets_target": False}
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help (code 0) prints the usage only
            if exc.code:
                result["error"] = f"bad command line (argparse exit {exc.code})"
                print(json.dumps(result), flush=True)
            sys.exit(0)
        try:
            result.update(body(args, result) or {})
        except (Exception, KeyboardInterrupt) as exc:  # the JSON line must still come out
            traceback.print_exc(file=sys.stderr)
            result["error"] = f"{type(exc).__name__}: {exc}"
            result["meets_target"] = False
            if error_details is not None:
                result.update(error_details(args))
        print(json.dumps(result), flush=True)
    except BaseException as exc:  # noqa: BLE001 - a second interrupt, a broken pipe: still exit 0
        if not isinstance(exc, SystemExit):
            traceback.print_exc(file=sys.stderr)
    sys.exit(0)
