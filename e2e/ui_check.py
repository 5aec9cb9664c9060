"""`make e2e`: the Dagster UI on the materialised demo, checked in a real headless Chromium.

1. Starts `dagster-webserver` on 127.0.0.1 (a free port) over the demo's instance.
2. GraphQL: the code location loaded without error; every asset group is there; the
   `coverage` asset's latest materialisation carries its plot metadata, `laionet_gallery`'s its
   contact sheet (`gallery`).
3. Chromium (Debian's, driven over the DevTools protocol with the `websockets` package that
   dagster-webserver already installs): opens the asset groups page, the coverage asset's page
   and the LAIONet gallery's page, dismisses the first-visit dialog, asserts what the page shows
   (the groups; the coverage plot as a PNG image; the gallery as a JPEG image) and saves
   screenshots under e2e-artifacts/.

Exit status 0 when every check passes; each failure is printed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "e2e-artifacts"


def code_groups() -> set[str]:
    """The group of every asset the code defines: what the UI must list (the webserver loads
    the same definitions, with the same LAIONLAB_* environment, from the Makefile)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import definitions

    graph = definitions.defs.resolve_asset_graph()
    return {graph.get(key).group_name for key in graph.get_all_asset_keys()}


GROUPS = code_groups()
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--window-size=1400,1000",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(base: str, query: str) -> dict:
    req = urllib.request.Request(
        f"{base}/graphql", json.dumps({"query": query}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        out = json.load(r)
    if out.get("errors"):
        raise RuntimeError(f"GraphQL errors: {out['errors']}")
    return out["data"]


def wait_for(base: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"dagster-webserver did not answer on {base} within {timeout:.0f} s")


class Browser:
    """A minimal DevTools-protocol client: navigate, evaluate JavaScript, screenshot."""

    def __init__(self, chromium: str):
        self.profile = tempfile.mkdtemp(prefix="e2e-chromium-")
        port = free_port()
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--remote-debugging-port={port}"]
        self.proc = subprocess.Popen(
            [chromium, *flags, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        end, target = time.time() + 60, None
        while time.time() < end and target is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as r:
                    target = next(t for t in json.load(r) if t["type"] == "page")
            except (OSError, StopIteration):
                time.sleep(0.5)
        if target is None:
            raise RuntimeError("chromium did not open its DevTools endpoint")
        self.ws = connect(target["webSocketDebuggerUrl"], max_size=None).__enter__()
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=120))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, js: str):
        return self.call("Runtime.evaluate", expression=js, returnByValue=True, awaitPromise=True)["result"].get(
            "value"
        )

    def skip_dialog(self) -> None:
        """The first-visit community dialog hides the page: skip it."""
        self.eval(
            "[...document.querySelectorAll('button')]"
            ".filter(b => b.innerText.trim() === 'Skip').forEach(b => b.click())"
        )

    def open(self, url: str, ready_js: str, timeout: float = 60) -> bool:
        self.call("Page.navigate", url=url)
        end = time.time() + timeout
        while time.time() < end:
            time.sleep(1)
            self.skip_dialog()
            if self.eval(ready_js):
                time.sleep(2)
                self.skip_dialog()
                time.sleep(0.5)
                return True
        return False

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def markdown_image(self, label: str, mime: str, timeout: float = 20) -> bool:
        """On an asset's page: open the Markdown metadata entry ``label`` (a long value sits behind
        "[Show Markdown]") and wait until it renders as an inline ``data:<mime>`` image."""
        self.eval(
            f"(() => {{ const label = {json.dumps(label)}; const rows = [...document.querySelectorAll('tr')];"
            " const row = rows.find(r => r.cells.length && r.cells[0].innerText.trim() === label)"
            " || rows.find(r => r.innerText.includes(label));"
            " const a = row && [...row.querySelectorAll('a')].find(x => x.innerText.includes('Show Markdown'));"
            " if (a) a.click(); return !!a; })()"
        )
        image_js = (
            "[...document.querySelectorAll('img')]"
            f".some(i => i.src.startsWith({json.dumps('data:' + mime)}) && i.naturalWidth > 100)"
        )
        end = time.time() + timeout
        while time.time() < end and not self.eval(image_js):
            time.sleep(1)
        return bool(self.eval(image_js))

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("e2e: chromium is not installed (make e2e installs Debian's package when run as root)")
        return 1
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen(
        [str(web), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        stdout=open(ARTIFACTS / "webserver.log", "w"),
        stderr=subprocess.STDOUT,
    )
    failures = []

    def check(ok: bool, what: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            failures.append(what)

    try:
        wait_for(base, proc)
        entries = graphql(
            base,
            "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus"
            " locationOrLoadError { __typename ... on PythonError { message } } } } } }",
        )
        locations = entries["workspaceOrError"]["locationEntries"]
        check(
            bool(locations)
            and all(
                e["loadStatus"] == "LOADED" and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                for e in locations
            ),
            f"code location loaded without errors: {locations}",
        )
        groups = {n["groupName"] for n in graphql(base, "{ assetNodes { groupName } }")["assetNodes"]}
        check(groups == GROUPS, f"asset groups {sorted(groups)}")
        cov = graphql(
            base,
            '{ assetOrError(assetKey: {path: ["coverage"]}) {'
            " ... on Asset { assetMaterializations(limit: 1) { metadataEntries { label } } } } }",
        )
        mats = cov["assetOrError"].get("assetMaterializations") or []
        labels = {m["label"] for m in mats[0]["metadataEntries"]} if mats else set()
        check("cluster_coverage_plot" in labels, f"coverage is materialised with its plot ({sorted(labels)})")
        gallery = graphql(
            base,
            '{ assetOrError(assetKey: {path: ["laionet_gallery"]}) {'
            " ... on Asset { assetMaterializations(limit: 1) { metadataEntries { label"
            " ... on MarkdownMetadataEntry { mdStr } } } } } }",
        )
        mats = gallery["assetOrError"].get("assetMaterializations") or []
        sheet = (
            next((e.get("mdStr") or "" for e in mats[0]["metadataEntries"] if e["label"] == "gallery"), "")
            if mats
            else ""
        )
        check(
            sheet.startswith("![gallery](data:image/jpeg;base64,"),
            "laionet_gallery is materialised with its contact sheet (a Markdown JPEG)",
        )

        browser = Browser(chromium)
        try:
            has_groups = " && ".join(f"document.body.innerText.includes('{g}')" for g in sorted(GROUPS))
            check(browser.open(f"{base}/asset-groups", has_groups), "the asset groups page lists every group")
            browser.screenshot(ARTIFACTS / "asset_groups.png")
            check(
                browser.open(f"{base}/assets/coverage", "document.body.innerText.includes('cluster_coverage_plot')"),
                "the coverage page shows its metadata",
            )
            check(browser.markdown_image("cluster_coverage_plot", "image/png"), "the coverage plot renders as an image")
            time.sleep(1.5)  # the dialog fades in
            browser.screenshot(ARTIFACTS / "coverage.png")
            check(
                browser.open(f"{base}/assets/laionet", "document.body.innerText.includes('size_vs_threshold')"),
                "the laionet page shows its threshold curve",
            )
            browser.screenshot(ARTIFACTS / "laionet.png")
            check(
                browser.open(f"{base}/assets/laionet_gallery", "document.body.innerText.includes('images_shown')"),
                "the laionet_gallery page shows its metadata",
            )
            check(browser.markdown_image("gallery", "image/jpeg"), "the LAIONet gallery renders as a JPEG image")
            time.sleep(1.5)  # the dialog fades in
            browser.screenshot(ARTIFACTS / "laionet_gallery.png")
        finally:
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"e2e: {'all checks passed' if not failures else f'{len(failures)} failed'}; screenshots in {ARTIFACTS}")
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
