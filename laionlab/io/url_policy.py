"""Which URLs, and which addresses, the image downloader may fetch from (issue 16).

LAION metadata is untrusted input: a row could point a download worker at the machine's own
files or at services only reachable from inside the cluster (the cloud metadata endpoint
169.254.169.254, a database on 10.x, a dashboard on 127.0.0.1). The policy:

- ``http``/``https`` only; any other scheme is refused;
- ``file://`` (no host, or ``localhost``) only for paths under ``allowed_file_roots``, symlinks
  resolved first, so ``file:///etc/passwd`` or ``..`` tricks are refused;
- no host named ``localhost`` (any case, trailing dots, ``*.localhost``) and no address that is
  unspecified, loopback, link-local, multicast, private, reserved or otherwise not global
  (100.64.0.0/10, carrier-grade NAT, included: Alibaba Cloud's metadata service is
  100.100.100.200). IPv4 counts in every form the resolver reads (``0x7f.1``, ``2130706433``,
  ``0177.0.0.1``, ``127.1``), IPv6 with the IPv4 address it embeds (mapped, 6to4, NAT64);
- ``allow_private`` lifts the host rule (tests against a local server only); ``allowed_hosts``
  lifts it for the listed ``IP[:port]`` addresses only.

Enforced twice, by the same functions:

- ``check_url`` (``url_verdicts`` for a column) before any download: a refused row never reaches
  img2dataset; it gets status ``blocked_by_policy`` and the reason. A URL is split the way
  ``urllib.request.Request`` splits it (the client img2dataset fetches with: it unquotes the
  host, for one); host names are not resolved here;
- ``laionlab.io.net_guard`` in the download processes: every address urllib connects to, after
  DNS and on every redirect hop, goes through ``address_reason``; every redirect target through
  ``check_url``.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

# urllib.request.Request's own splitting, so a host is read as the client will read it
from urllib.parse import _splithost, _splittag, _splittype, unquote, unwrap

if TYPE_CHECKING:
    import polars as pl

__all__ = ["BLOCKED", "address_reason", "check_url", "parse_allowed_hosts", "url_verdicts"]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

BLOCKED = "blocked_by_policy"
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_KINDS = ("unspecified", "loopback", "link_local", "multicast", "reserved", "private")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are the IPv4 address
_BAD_HOST = re.compile(r"[\x00-\x20\x7f]")  # http.client refuses these too
_IPV4_FORMS = re.compile(r"[0-9a-fx.]+")  # dotted, short, hex, octal, decimal: what inet_aton reads
_ALLOWED_ENTRY = re.compile(
    r"\[(?P<v6>[^\]]+)\](?::(?P<v6port>\d+))?|(?P<v4>[0-9.]+)(?::(?P<v4port>\d+))?|(?P<bare>[0-9a-fA-F:.%]+)"
)


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if ip.version == 4:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    for kind in _KINDS:
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-global"


def address_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be connected to ('a loopback address', ...), or None when it is global."""
    inner = _embedded_v4(ip)
    if inner is not None and (kind := _kind(inner)):
        return f"{_a(kind)} address (IPv4 {inner} embedded)"
    kind = _kind(ip)
    return f"{_a(kind)} address" if kind else None


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _ip_literal(name: str) -> IPAddress | None:
    """The address ``name`` (lowercase) spells: IPv6 with or without a zone, IPv4 in any form
    ``inet_aton`` reads (as the resolver does); None for a host name."""
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        pass
    if _IPV4_FORMS.fullmatch(name):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            pass
    return None


@functools.lru_cache(maxsize=64)
def parse_allowed_hosts(entries: tuple[str, ...]) -> frozenset[tuple[IPAddress, int | None]]:
    """``allowed_hosts`` entries ``IP`` or ``IP:port`` (IPv6 in brackets) as (address, port);
    port None allows every port. Names are refused: the guard sees addresses, not names."""
    out = set()
    for entry in entries:
        match = _ALLOWED_ENTRY.fullmatch(entry.strip()) if isinstance(entry, str) else None
        try:
            if match is None:
                raise ValueError
            host = match["v6"] or match["v4"] or match["bare"]
            port = match["v6port"] or match["v4port"]
            ip, port = ipaddress.ip_address(host.split("%", 1)[0]), None if port is None else int(port)
            if port is not None and not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"allowed_hosts entry {entry!r} is not an IP address with an optional port "
                "(e.g. '127.0.0.1:8080', '[::1]:8080')"
            ) from None
        out.add((ip, port))
    return frozenset(out)


def _split_port(hostport: str, default: int) -> tuple[str, int]:
    """``host[:port]`` as ``http.client.HTTPConnection`` splits it; ValueError for a bad port."""
    i, j = hostport.rfind(":"), hostport.rfind("]")
    port = default
    if i > j:
        if hostport[i + 1 :]:
            port = int(hostport[i + 1 :])
            if not 0 < port < 65536:
                raise ValueError(port)
        hostport = hostport[:i]
    if hostport[:1] == "[" and hostport[-1:] == "]":
        hostport = hostport[1:-1]
    return hostport, port


@functools.lru_cache(maxsize=1 << 16)
def _host_reason(host: str, port: int, allow_private: bool, allowed: frozenset) -> str | None:
    if _BAD_HOST.search(host):
        return f"invalid host {host!r}"
    name = host.lower().rstrip(".")
    if not name:
        return "URL has no host"
    ip = _ip_literal(name)
    if allow_private or (ip is not None and ((ip, port) in allowed or (ip, None) in allowed)):
        return None
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return f"host {host} is localhost"
    reason = address_reason(ip) if ip is not None else None
    if reason is None:
        return None
    return f"host {host} is {reason}" if str(ip) == name else f"host {host} (= {ip}) is {reason}"


def _file_reason(host: str, selector: str, roots: Sequence[str]) -> str | None:
    if host.lower() not in ("", "localhost"):
        return f"file URL with a host ({host})"
    path = os.path.realpath(unquote(selector))  # urllib opens url2pathname(selector)
    for root in roots:
        real = os.path.realpath(root)
        if path == real or path.startswith(real.rstrip(os.sep) + os.sep):
            return None
    return f"file URL outside the allowed roots ({', '.join(roots) or 'none configured'})"


def check_url(
    url: str | None,
    allowed_file_roots: Sequence[str] = (),
    allow_private: bool = False,
    allowed_hosts: Sequence[str] = (),
) -> str | None:
    """Why ``url`` may not be fetched, or None when it may (the module docstring has the rules)."""
    url = unwrap(url) if url else ""
    if not url:
        return "empty URL"
    scheme, rest = _splittype(_splittag(url)[0])
    if scheme is None:
        return "URL has no scheme"
    hostport, selector = _splithost(rest)
    hostport = unquote(hostport or "")
    if scheme == "file":
        return _file_reason(hostport, selector, allowed_file_roots)
    if scheme not in ("http", "https"):
        return f"scheme {scheme!r} is not allowed (http, https)"
    hostport = hostport.rpartition("@")[2]  # user info: urllib keeps it in the host, other clients drop it
    try:
        host, port = _split_port(hostport, 443 if scheme == "https" else 80)
    except ValueError:
        return f"invalid port in {hostport!r}"
    if not host:
        return "URL has no host"
    return _host_reason(host, port, allow_private, parse_allowed_hosts(tuple(allowed_hosts)))


def url_verdicts(
    urls: pl.Series,
    allowed_file_roots: Sequence[str] = (),
    allow_private: bool = False,
    allowed_hosts: Sequence[str] = (),
) -> pl.Series:
    """``check_url`` of every URL of a column (null = allowed), each distinct URL checked once."""
    import polars as pl

    urls = urls.cast(pl.String)
    distinct = urls.drop_nulls().unique()
    reasons = [check_url(u, allowed_file_roots, allow_private, allowed_hosts) for u in distinct.to_list()]
    verdicts = urls.replace_strict(distinct, pl.Series(reasons, dtype=pl.String), default=None, return_dtype=pl.String)
    return (
        pl.select(pl.when(urls.is_null()).then(pl.lit(check_url(None))).otherwise(verdicts)).to_series().alias("reason")
    )
