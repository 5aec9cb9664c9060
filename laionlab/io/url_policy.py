"""Which URLs of a metadata file may be fetched at all, decided before any download.

LAION metadata is untrusted input: a row could point a download worker at the machine's own
files or at services only reachable from inside the cluster (the cloud metadata endpoint
169.254.169.254, a database on 10.x, a dashboard on 127.0.0.1). The policy:

- ``http``/``https`` only, by default; any other scheme is refused;
- ``file://`` only for paths under ``allowed_file_roots`` (the demo names its own folder),
  symlinks resolved first, so ``file:///etc/passwd`` or ``..`` tricks are refused;
- hosts written as a literal loopback, private, link-local, unspecified, reserved or
  multicast IP address (v4 or v6), and ``localhost``, are refused unless ``allow_private``.

A refused row is never handed to img2dataset; it gets status ``blocked_by_policy`` and the
reason. (Host names are not resolved here: a public name that resolves to a private address is
a DNS-level concern for the cluster's egress rules.)
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

import polars as pl

__all__ = ["BLOCKED", "check_url", "url_verdicts"]

BLOCKED = "blocked_by_policy"
_IP_LIKE = r"^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:.]*|localhost\.?)$"


def _host_reason(host: str, allow_private: bool) -> str | None:
    if allow_private:
        return None
    if host.rstrip(".").lower() == "localhost":
        return "host is localhost"
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:  # 127.1, 0x7f.1 ... forms that inet_aton accepts
            import socket

            ip = ipaddress.ip_address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    for attr in ("is_loopback", "is_link_local", "is_unspecified", "is_multicast", "is_reserved", "is_private"):
        if getattr(ip, attr):
            return f"host {host} is a {attr[3:].replace('_', '-')} address"
    return None


def _file_reason(url: str, roots: Sequence[str]) -> str | None:
    path = os.path.realpath(unquote(urlsplit(url).path))
    for root in roots:
        real = os.path.realpath(root)
        if path == real or path.startswith(real.rstrip(os.sep) + os.sep):
            return None
    return f"file URL outside the allowed roots ({', '.join(roots) or 'none configured'})"


def check_url(url: str | None, allowed_file_roots: Sequence[str] = (), allow_private: bool = False) -> str | None:
    """Why ``url`` may not be fetched, or None when it may."""
    if not url:
        return "empty URL"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as err:
        return f"unparseable URL ({err})"
    scheme = parts.scheme.lower()
    if scheme == "file":
        return _file_reason(url, allowed_file_roots)
    if scheme not in ("http", "https"):
        return f"scheme {scheme or '(none)'!r} is not allowed (http, https)"
    if not host:
        return "URL has no host"
    return _host_reason(host, allow_private)


def url_verdicts(urls: pl.Series, allowed_file_roots: Sequence[str] = (), allow_private: bool = False) -> pl.Series:
    """``check_url`` over a column, vectorised: only URLs that are not plain http(s) to a host
    name (file URLs, other schemes, IP-literal hosts) reach the Python check. Null = allowed."""
    frame = pl.DataFrame({"url": urls.cast(pl.String)})
    lowered = pl.col("url").str.to_lowercase()
    host = pl.col("url").str.extract(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)", 1)
    suspect = (
        pl.col("url").is_null()
        | ~(lowered.str.starts_with("http://") | lowered.str.starts_with("https://"))
        | host.is_null()
        | host.str.contains(_IP_LIKE)
    )
    frame = frame.with_columns(suspect.alias("suspect"))
    todo = frame.filter(pl.col("suspect"))["url"].unique().to_list()
    reasons = {u: check_url(u, allowed_file_roots, allow_private) for u in todo}
    return frame.select(
        pl.when(pl.col("suspect")).then(pl.col("url").replace_strict(reasons, default=None, return_dtype=pl.String)).alias("reason")
    )["reason"]
