"""The URL policy enforced at connect time, in img2dataset's own processes (issue 16).

``url_policy.check_url`` judges a URL as written; what a worker then connects to can differ: a
host name that resolves (or re-resolves: DNS rebinding) to 10.x or 127.0.0.1, a redirect to
another host. ``install`` patches this process's socket layer for the connections made inside a
``urllib.request`` request (``OpenerDirector.open``, the client img2dataset fetches with; other
connections of the process, such as the output object store's, are configuration, left alone):

- every address connected to, after DNS and on every redirect hop, must pass
  ``url_policy.address_reason`` unless ``allow_private`` or listed in ``allowed_hosts``; a
  refusal raises ``BlockedAddress`` ("blocked by URL policy: 127.0.0.1 is a loopback address"),
  which img2dataset records as the sample's error message;
- every redirect target must pass ``url_policy.check_url`` (scheme and host);
- a request, redirects included, ends ``deadline_s`` after it began, connect to last byte (TLS
  handshake too): each socket wait is cut to the time left, so a server dripping a byte a
  second cannot hold a worker past the deadline (urllib's ``timeout`` bounds each wait only).

img2dataset's workers are spawned, not forked: ``child_env`` gives the download child a
``PYTHONPATH`` that starts with ``_guard_site``, whose ``sitecustomize`` calls
``install_from_env`` in the child and in every Python process it starts. Not covered: tasks on
a Ray or Spark cluster, which start with the cluster's environment (``check_url`` still applies),
and the time a DNS lookup takes. Behind an HTTP proxy (``http_proxy``) urllib connects to the
proxy, which must then be in ``allowed_hosts`` and resolves the targets itself.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from laionlab.io import url_policy

__all__ = [
    "ENV",
    "SITE_DIR",
    "BlockedAddress",
    "DeadlineExceeded",
    "child_env",
    "install",
    "install_from_env",
    "installed",
]

ENV = "LAIONLAB_NET_GUARD"
# the pid of the process that started this one (set by child_env, then by each guarded
# process for its own children): a child whose parent died before it could tie itself to it
# finds it dead here and exits, instead of living on as an orphan
PARENT_ENV = "LAIONLAB_GUARD_PARENT"
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_guard_site")


class BlockedAddress(PermissionError):
    """A connection the URL policy refuses (an OSError: ``create_connection`` tries the next address)."""


class DeadlineExceeded(socket.timeout):
    """A request still running at its deadline."""


@dataclass(frozen=True)
class _Settings:
    allowed_hosts: tuple[str, ...]
    allow_private: bool
    deadline_s: float
    allowed: frozenset


_settings: _Settings | None = None
_request = threading.local()  # .deadline: time.monotonic() by which this thread's request must end
_deadlines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # socket -> (deadline, its own timeout)


def install(allowed_hosts: Sequence[str] = (), allow_private: bool = False, deadline_s: float = 60.0) -> None:
    """Guard this process's urllib connections; a second call replaces the settings."""
    global _settings
    if not deadline_s > 0:
        raise ValueError(f"deadline_s must be > 0 seconds, got {deadline_s!r}")
    allowed = url_policy.parse_allowed_hosts(tuple(allowed_hosts))
    _settings = _Settings(tuple(allowed_hosts), bool(allow_private), float(deadline_s), allowed)
    if installed():
        return
    for cls, name, wrap in (
        (socket.socket, "connect", _guarded_connect),
        (socket.socket, "connect_ex", _guarded_connect),
        (socket.socket, "recv", _bounded),
        (socket.socket, "recv_into", _bounded),
        (ssl.SSLSocket, "read", _bounded),  # SSLSocket.recv/recv_into call it
        (ssl.SSLContext, "wrap_socket", _bounded_handshake),
        (urllib.request.OpenerDirector, "open", _timed_request),
        (urllib.request.HTTPRedirectHandler, "redirect_request", _checked_redirect),
    ):
        wrapper = wrap(getattr(cls, name))
        wrapper._laionlab_guard = True
        setattr(cls, name, wrapper)


def installed() -> bool:
    return _settings is not None and getattr(socket.socket.connect, "_laionlab_guard", False)


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies, so a run worker killed mid-download
    (kill -9) takes img2dataset and its workers with it, a link at a time, instead of leaving them
    downloading for minutes. Elsewhere a no-op.

    A parent may die before its child gets here (a spawned pool worker takes a second or two to
    start on a loaded host): the child is then already an orphan, and the parent-death signal
    would never come. So the parent names itself in ``PARENT_ENV`` and a child exits at once
    when that process is gone. The link is made again in every child this process forks (a
    fork clears the parent-death signal, and a forked child runs no sitecustomize)."""
    if not sys.platform.startswith("linux"):
        return
    _tie_to_parent()
    if not _at_fork[0]:
        _at_fork[0] = True  # a forked child inherits the registration: once per process tree
        os.register_at_fork(after_in_child=_tie_to_parent)


_at_fork = [False]


def _tie_to_parent() -> None:
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    starter = os.environ.get(PARENT_ENV, "")
    if os.getppid() != parent or (starter.isdigit() and not _alive(int(starter))):  # the parent died first
        os.kill(os.getpid(), signal.SIGKILL)
    os.environ[PARENT_ENV] = str(os.getpid())  # what this process's own children check


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that pid: it exists
        return True
    return True


def install_from_env() -> bool:
    """``install`` with the settings in ``$LAIONLAB_NET_GUARD`` (written by ``child_env``); False when unset."""
    raw = os.environ.get(ENV)
    if not raw:
        return False
    cfg = json.loads(raw)
    install(cfg["allowed_hosts"], cfg["allow_private"], cfg["deadline_s"])
    return True


def child_env(
    allowed_hosts: Sequence[str] = (), allow_private: bool = False, deadline_s: float = 60.0, environ=os.environ
) -> dict[str, str]:
    """Environment variables that make a child Python process, and those it starts, install the guard."""
    url_policy.parse_allowed_hosts(tuple(allowed_hosts))  # a bad entry fails here, not in the child
    if not deadline_s > 0:
        raise ValueError(f"deadline_s must be > 0 seconds, got {deadline_s!r}")
    path = environ.get("PYTHONPATH")
    settings = {
        "allowed_hosts": list(allowed_hosts),
        "allow_private": bool(allow_private),
        "deadline_s": float(deadline_s),
    }
    return {
        ENV: json.dumps(settings),
        "PYTHONPATH": SITE_DIR + (os.pathsep + path if path else ""),
        PARENT_ENV: str(os.getpid()),  # the process starting the child: this one
    }


def _deadline_error() -> DeadlineExceeded:
    return DeadlineExceeded(
        f"timed out: request_deadline_s={_settings.deadline_s:g} s reached (connect to last byte, redirects included)"
    )


def _cut_wait(sock: socket.socket, deadline: float, own: float | None) -> bool:
    """Set ``sock``'s timeout to the time left before ``deadline`` if shorter than its own;
    True when the deadline is what bounds the next wait."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _deadline_error()
    if own == 0:  # non-blocking: nothing waits
        return False
    sock.settimeout(left if own is None else min(own, left))
    return own is None or left < own


def _checked(family: int, address: tuple) -> tuple:
    """``address``, resolved if it names a host, once it passes the policy."""
    host, port = address[0], address[1]
    host = host.decode() if isinstance(host, bytes) else host
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:  # a name: resolve it here, and connect to the very address checked
        address = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)[0][4]
        ip = ipaddress.ip_address(address[0].split("%", 1)[0])
    s = _settings
    if s.allow_private or (ip, port) in s.allowed or (ip, None) in s.allowed:
        return address
    reason = url_policy.address_reason(ip)
    if reason:
        raise BlockedAddress(f"blocked by URL policy: {ip} is {reason}")
    return address


def _guarded_connect(connect):
    @functools.wraps(connect)
    def guarded(self, address):
        deadline = getattr(_request, "deadline", None)
        if deadline is None or self.family not in (socket.AF_INET, socket.AF_INET6):
            return connect(self, address)
        address = _checked(self.family, address)
        own = self.gettimeout()
        by_deadline = _cut_wait(self, deadline, own)
        try:
            result = connect(self, address)
        except socket.timeout:
            if by_deadline:
                raise _deadline_error() from None
            raise
        finally:
            self.settimeout(own)
        _deadlines[self] = (deadline, own)
        return result

    return guarded


def _bounded(read):
    @functools.wraps(read)
    def bounded(self, *args, **kwargs):
        entry = _deadlines.get(self)
        if entry is None:
            return read(self, *args, **kwargs)
        by_deadline = _cut_wait(self, *entry)
        try:
            return read(self, *args, **kwargs)
        except socket.timeout:
            if by_deadline:
                raise _deadline_error() from None
            raise

    return bounded


def _bounded_handshake(wrap_socket):
    @functools.wraps(wrap_socket)
    def bounded(self, sock, *args, **kwargs):
        entry = _deadlines.get(sock)
        if entry is None:
            return wrap_socket(self, sock, *args, **kwargs)
        by_deadline = _cut_wait(sock, *entry)  # CPython bounds a whole handshake by the socket's timeout
        try:
            wrapped = wrap_socket(self, sock, *args, **kwargs)
        except socket.timeout:
            if by_deadline:
                raise _deadline_error() from None
            raise
        _deadlines[wrapped] = entry
        return wrapped

    return bounded


def _timed_request(open_):
    @functools.wraps(open_)
    def timed(self, *args, **kwargs):
        if getattr(_request, "deadline", None) is not None:  # a redirect hop: same request, same deadline
            return open_(self, *args, **kwargs)
        _request.deadline = time.monotonic() + _settings.deadline_s
        try:
            return open_(self, *args, **kwargs)
        finally:
            _request.deadline = None

    return timed


def _checked_redirect(redirect_request):
    @functools.wraps(redirect_request)
    def checked(self, req, fp, code, msg, headers, newurl):
        s = _settings
        reason = url_policy.check_url(newurl, (), s.allow_private, s.allowed_hosts)
        if reason:
            raise urllib.error.HTTPError(
                req.full_url, code, f"blocked by URL policy: redirect to {newurl[:200]}: {reason}", headers, fp
            )
        return redirect_request(self, req, fp, code, msg, headers, newurl)

    return checked
