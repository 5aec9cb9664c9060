"""The URL policy (laionlab/io/url_policy.py): one verdict per URL form, the same through
``check_url`` and ``url_verdicts``, hosts read as urllib will connect to them (issue 16)."""

import ipaddress
import socket
import urllib.request

import polars as pl
import pytest

from laionlab.io.url_policy import check_url, parse_allowed_hosts, url_verdicts

ROOTS = ["/srv/demo"]

# (url, None when allowed, else a fragment of the reason)
TABLE = [
    # localhost by name
    ("http://LOCALHOST:8080/a", "localhost"),
    ("http://localhost./", "localhost"),
    ("http://LocalHost.localdomain/", "localhost"),
    ("http://foo.localhost/", "localhost"),
    ("http://%6c%6fcalhost/", "localhost"),  # urllib unquotes the host
    # loopback IPv4 in every form the resolver reads
    ("http://127.0.0.1:8000/x", "loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://0x7f000001:8080/a", "loopback"),
    ("http://0x7f.1:8080/a", "loopback"),
    ("http://0X7F.0.0.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://user:pw@127.0.0.1/", "loopback"),
    ("  http://127.0.0.1/  ", "loopback"),  # urllib strips the blanks
    ("<URL:http://127.0.0.1/>", "loopback"),  # and unwraps this
    # IPv6, mapped and embedded IPv4
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[0:0:0:0:0:ffff:a9fe:a9fe]/", "link-local"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[2002:c0a8:101::1]/", "private"),  # 6to4 of 192.168.1.1
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),  # NAT64 of 169.254.169.254
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[::]/", "unspecified"),
    # cloud metadata, private, shared and special ranges
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://0xa9fea9fe/latest/meta-data/", "link-local"),
    ("http://0/", "unspecified"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://user@192.168.1.1/a", "private"),
    ("http://100.64.0.1/", "non-global"),  # carrier-grade NAT: refused
    ("http://100.100.100.200/latest/meta-data", "non-global"),  # Alibaba Cloud's metadata service
    ("http://224.0.0.1/", "multicast"),
    ("http://255.255.255.255/", "reserved"),
    ("http://240.0.0.1/", "reserved"),
    # schemes, files, malformed
    ("file:///etc/passwd", "outside the allowed roots"),
    ("file:///srv/demo/../../etc/passwd", "outside the allowed roots"),
    ("file:///srv/demo/%2e%2e/%2e%2e/etc/passwd", "outside the allowed roots"),
    ("file://evil.example/srv/demo/a.jpg", "file URL with a host"),
    ("gopher://example.com/a", "scheme 'gopher'"),
    ("ftp://example.com/a", "scheme 'ftp'"),
    ("javascript:alert(1)", "scheme 'javascript'"),
    ("data:image/png;base64,iVBORw0KGgo=", "scheme 'data'"),
    ("", "empty"),
    (None, "empty"),
    ("//example.com/a.jpg", "no scheme"),
    ("http:///a.jpg", "no host"),
    ("http://exa mple.com/", "invalid host"),
    ("http://example.com:99999/", "invalid port"),
    ("http://example.com:8x/", "invalid port"),
    # allowed
    ("http://example.com/a.jpg", None),
    ("https://images.EXAMPLE.org./x", None),
    ("HTTP://EXAMPLE.COM/Z", None),
    ("http://93.184.216.34/a.jpg", None),
    ("http://0x5db8d822/a.jpg", None),  # 93.184.216.34 in hex: public
    ("http://[2606:2800:220:1:248:1893:25c8:1946]/", None),
    ("https://b.org/p?q=http://127.0.0.1", None),
    ("https://b.org/#@127.0.0.1", None),
    ("http://127.0.0.1.nip.io/", None),  # a name: the connect-time guard checks what it resolves to
    ("file:///srv/demo/images/a.jpg", None),
    ("file://localhost/srv/demo/a.jpg", None),
]


def test_the_table_is_big_enough_and_has_both_verdicts():
    assert len(TABLE) >= 40
    assert sum(f is None for _, f in TABLE) >= 10 and sum(f is not None for _, f in TABLE) >= 40


@pytest.mark.parametrize("url, fragment", TABLE)
def test_check_url(url, fragment):
    reason = check_url(url, ROOTS)
    if fragment is None:
        assert reason is None
    else:
        assert reason is not None and fragment in reason, reason


def test_url_verdicts_agree_with_check_url_on_every_row():
    urls = [u for u, _ in TABLE]
    got = url_verdicts(pl.Series(urls * 2, dtype=pl.String), ROOTS).to_list()  # repeated: the by-distinct path
    assert got == [check_url(u, ROOTS) for u in urls * 2]
    assert [g is None for g in got[: len(TABLE)]] == [f is None for _, f in TABLE]


def test_the_issues_examples():
    assert None not in url_verdicts(pl.Series(["http://LOCALHOST/a", "http://0xa9fea9fe/"])).to_list()


@pytest.mark.parametrize(
    "url, address",
    [
        ("http://0x7f.1:8080/a", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://0/", "0.0.0.0"),
        ("http://0xa9fea9fe/latest/meta-data/", "169.254.169.254"),
        ("http://[::ffff:7f00:1]/", "::ffff:127.0.0.1"),
        ("http://[0:0:0:0:0:ffff:a9fe:a9fe]/", "::ffff:169.254.169.254"),
    ],
)
def test_the_address_named_is_the_one_urllib_connects_to(url, address, monkeypatch):
    """urllib (img2dataset's client) is stopped at connect; the address it chose is the one the
    policy judged."""
    seen = []

    def connect(sock, addr):
        seen.append(addr)
        raise ConnectionRefusedError("stopped by the test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    with pytest.raises(OSError):
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=1)
    assert ipaddress.ip_address(seen[0][0]) == ipaddress.ip_address(address)
    reason = check_url(url)
    assert reason is not None and str(ipaddress.ip_address(address)) in reason, reason


def test_private_hosts_only_when_allowed():
    assert check_url("http://127.0.0.1:9/x", allow_private=True) is None
    assert check_url("http://localhost:9/x", allow_private=True) is None
    assert check_url("file:///srv/demo/a.jpg") is not None  # no roots configured: no file URLs
    assert check_url("ftp://127.0.0.1/x", allow_private=True) is not None


def test_allowed_hosts_lift_the_rule_for_their_address_and_port_only():
    allowed = ["127.0.0.1:8080", "[::1]:9000", "10.0.0.7"]
    assert check_url("http://127.0.0.1:8080/a", allowed_hosts=allowed) is None
    assert check_url("http://0x7f.1:8080/a", allowed_hosts=allowed) is None  # the same address
    assert "loopback" in check_url("http://127.0.0.1:8081/a", allowed_hosts=allowed)
    assert "loopback" in check_url("http://127.0.0.1/a", allowed_hosts=allowed)  # port 80
    assert check_url("http://[::1]:9000/", allowed_hosts=allowed) is None
    assert check_url("http://10.0.0.7:1234/", allowed_hosts=allowed) is None  # no port: any port
    assert "localhost" in check_url("http://localhost:8080/a", allowed_hosts=allowed)  # addresses, not names
    verdicts = url_verdicts(
        pl.Series(["http://127.0.0.1:8080/a", "http://127.0.0.1:8081/a"]), allowed_hosts=allowed
    ).to_list()
    assert verdicts[0] is None and "loopback" in verdicts[1]


@pytest.mark.parametrize(
    "entry", ["localhost:8080", "example.com", "127.0.0.1:99999", "127.0.0.1:", "::1:80x", "[::1]:x"]
)
def test_a_bad_allowed_hosts_entry_is_named(entry):
    with pytest.raises(ValueError, match="allowed_hosts entry"):
        parse_allowed_hosts((entry,))
