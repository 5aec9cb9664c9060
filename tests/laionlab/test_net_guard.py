"""The connect-time guard (laionlab/io/net_guard.py), installed as download_part installs it: in
a child Python process whose environment comes from ``child_env`` (its sitecustomize), never in
the test process. The servers are loopback servers of the test."""

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from laionlab.io import net_guard
from tests.laionlab.slow_http import send_drip

# runs in the child: each request through urllib (what img2dataset fetches with), one result each
CHILD = r"""
import json, socket, sys, time, urllib.request
real_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):  # a name this test's 'DNS' points at 127.0.0.1
    return real_getaddrinfo("127.0.0.1" if host == "rebind.example" else host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
out = []
for url, timeout in json.loads(sys.argv[1]):
    start = time.monotonic()
    try:
        if url.startswith("raw:"):  # a plain socket, outside any urllib request
            host, port = url[4:].rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=timeout).close()
            out.append({"body": "connected"})
        else:
            out.append({"body": opener.open(url, timeout=timeout).read().decode()})
    except Exception as err:
        out.append({"error": str(err)})
    out[-1]["seconds"] = time.monotonic() - start
print(json.dumps(out))
"""


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/drip":
            send_drip(self)
        elif self.path == "/stall":  # the headers, then nothing for longer than the deadline
            self.send_response(200)
            self.send_header("Content-Length", "60")
            self.end_headers()
            self.wfile.flush()
            time.sleep(8)
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")


def _server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.hits = []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def servers():
    a, b = _server(), _server()
    yield a, b
    a.shutdown()
    b.shutdown()


def _run(requests, env=None):
    """Results of ``requests`` ((url, timeout) pairs) fetched by a child whose environment adds ``env``."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(requests)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_loopback_addresses_and_names_resolving_to_them_are_refused_at_connect(servers):
    a, _ = servers
    port = a.server_address[1]
    requests = [
        (f"http://127.0.0.1:{port}/ok", 5),
        (f"http://localhost:{port}/ok", 5),
        (f"http://rebind.example:{port}/ok", 5),
    ]
    unguarded = _run(requests + [(f"raw:127.0.0.1:{port}", 5)])
    assert [r.get("body") for r in unguarded] == ["ok", "ok", "ok", "connected"]  # the servers answer
    a.hits.clear()
    guarded = _run(requests + [(f"raw:127.0.0.1:{port}", 5)], net_guard.child_env())
    assert "blocked by URL policy: 127.0.0.1 is a loopback address" in guarded[0]["error"]
    assert "blocked by URL policy" in guarded[1]["error"] and "loopback" in guarded[1]["error"]  # 127.0.0.1 or ::1
    assert (
        "blocked by URL policy: 127.0.0.1 is a loopback address" in guarded[2]["error"]
    )  # the name passed, its address not
    assert guarded[3]["body"] == "connected"  # outside urllib (the object store's client): not the guard's business
    assert a.hits == []


def test_every_redirect_hop_is_checked(servers):
    a, b = servers
    pa, pb = a.server_address[1], b.server_address[1]
    base = f"http://127.0.0.1:{pa}/redirect?to="
    requests = [
        (f"{base}http://127.0.0.1:{pa}/ok", 5),  # a hop to the allowed server
        (f"{base}http://127.0.0.1:{pb}/ok", 5),  # a hop to a loopback address: refused on the URL
        (f"{base}http://rebind.example:{pb}/ok", 5),  # a hop to a name: refused at connect
        (f"{base}ftp://example.com/a.jpg", 5),
    ]
    got = _run(requests, net_guard.child_env(allowed_hosts=[f"127.0.0.1:{pa}"]))
    assert got[0]["body"] == "ok"
    assert "blocked by URL policy: redirect to" in got[1]["error"] and "loopback" in got[1]["error"]
    assert "blocked by URL policy: 127.0.0.1 is a loopback address" in got[2]["error"]
    assert "blocked by URL policy" in got[3]["error"] and "scheme 'ftp'" in got[3]["error"]
    assert b.hits == []
    assert _run([(f"http://127.0.0.1:{pb}/ok", 5)], net_guard.child_env(allowed_hosts=[f"127.0.0.1:{pa}"]))[0]["error"]


def test_a_drip_is_cut_at_the_deadline(servers):
    a, _ = servers
    pa = a.server_address[1]
    requests = [
        (f"http://127.0.0.1:{pa}/drip", 10),
        (f"http://127.0.0.1:{pa}/stall", 10),
        (f"http://127.0.0.1:{pa}/ok", 10),
    ]
    got = _run(requests, net_guard.child_env([f"127.0.0.1:{pa}"], deadline_s=3))
    for drip in got[:2]:
        assert "timed out: request_deadline_s=3 s reached" in drip["error"]
        assert 2.5 < drip["seconds"] < 5  # not the 60 s of the drip, nor the 10 s timeout of one wait
    assert got[2]["body"] == "ok"  # the next request has a deadline of its own


def test_a_guard_that_cannot_install_refuses_every_connection(servers):
    a, _ = servers
    env = {**net_guard.child_env(allow_private=True), net_guard.ENV: "{not json"}
    got = _run([(f"http://127.0.0.1:{a.server_address[1]}/ok", 5)], env)
    assert "network guard failed to install" in got[0]["error"]
    assert a.hits == []


def test_child_env_keeps_pythonpath_and_refuses_bad_settings():
    env = net_guard.child_env(["10.0.0.1:80"], deadline_s=7, environ={"PYTHONPATH": "/opt/x"})
    assert env["PYTHONPATH"] == net_guard.SITE_DIR + os.pathsep + "/opt/x"
    assert json.loads(env[net_guard.ENV]) == {
        "allowed_hosts": ["10.0.0.1:80"],
        "allow_private": False,
        "deadline_s": 7.0,
    }
    assert net_guard.child_env(environ={})["PYTHONPATH"] == net_guard.SITE_DIR
    with pytest.raises(ValueError, match="allowed_hosts entry 'intranet:80'"):
        net_guard.child_env(["intranet:80"])
    with pytest.raises(ValueError, match="deadline_s"):
        net_guard.child_env(deadline_s=0)
    assert not net_guard.installed()  # nothing here touched the test process's sockets
    assert socket.socket.connect.__qualname__ == "socket.connect"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux only")
def test_a_child_whose_parent_died_before_it_started_exits_at_once():
    """A guarded child ties itself to its parent's life; one whose parent (named in PARENT_ENV)
    was already gone when it started (an orphan the parent-death signal would never reach)
    kills itself, a live one names itself for its own children, and a child it forks dies
    with it."""
    import signal
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    script = f"import os; print(os.environ[{net_guard.PARENT_ENV!r}] == str(os.getpid()))"
    # a forked grandchild is tied to its forking parent too: it dies with it
    forked = (
        "import os, signal, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(60); os._exit(0)\n"
        "print(pid, flush=True); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, **net_guard.child_env(allow_private=True)}
    assert env[net_guard.PARENT_ENV] == str(os.getpid())
    alive = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert alive.returncode == 0 and alive.stdout.strip() == "True", alive.stderr
    orphan = {**env, net_guard.PARENT_ENV: str(gone.pid)}
    dead = subprocess.run([sys.executable, "-c", script], env=orphan, capture_output=True, text=True, timeout=60)
    assert dead.returncode == -signal.SIGKILL and dead.stdout == ""
    parent = subprocess.run([sys.executable, "-c", forked], env=env, capture_output=True, text=True, timeout=60)
    import psutil

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    grandchild = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 10
    while running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(grandchild), "a forked child outlived the process that forked it"
