"""The URL policy applied before any download (laionlab/io/url_policy.py)."""

import polars as pl
import pytest

from laionlab.io.url_policy import check_url, url_verdicts


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("https://example.com/a.jpg", None),
        ("http://93.184.216.34/a.jpg", None),  # a public address is fine
        ("file:///etc/passwd", "outside the allowed roots"),
        ("file:///srv/demo/../../etc/passwd", "outside the allowed roots"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://127.0.0.1:8000/x", "loopback"),
        ("http://127.1/x", "loopback"),
        ("http://[::1]/x", "loopback"),
        ("http://0.0.0.0/x", "unspecified"),
        ("http://10.0.0.5/a", "private"),
        ("http://192.168.1.1/a", "private"),
        ("http://user@192.168.1.1/a", "private"),
        ("http://localhost/a", "localhost"),
        ("ftp://example.com/a", "scheme 'ftp'"),
        ("gopher://example.com/a", "scheme 'gopher'"),
        ("", "empty"),
        ("file:///srv/demo/images/a.jpg", None),
    ],
)
def test_check_url(url, fragment):
    reason = check_url(url, ["/srv/demo"])
    assert (reason is None) if fragment is None else (fragment in reason)


def test_private_hosts_only_when_allowed():
    assert check_url("http://127.0.0.1:9/x", allow_private=True) is None
    assert check_url("file:///srv/demo/a.jpg") is not None  # no roots configured: no file URLs


def test_vectorised_verdicts_equal_the_scalar_check():
    urls = ["https://a.org/x", "http://10.1.2.3/y", None, "file:///tmp/x", "HTTP://EXAMPLE.COM/Z", "http://[fe80::1]/z", "https://b.org/p?q=http://127.0.0.1"]
    got = url_verdicts(pl.Series(urls), ["/srv"]).to_list()
    assert got == [check_url(u, ["/srv"]) for u in urls]
    assert got[0] is None and got[4] is None and got[6] is None and "link-local" in got[5]
