"""The status-table functions of laionlab.io.download on constructed tables: successes,
the failures of a download, what it fetched (its data version) and the lost samples by shard."""

import polars as pl
import pytest

from laionlab.io.digest import frame_digest
from laionlab.io.download import (
    DownloadResult,
    checked_failures,
    count_successes,
    describe_lost,
    failure_table,
    fetched_contents,
    lost_by_shard,
)


def _status():
    return pl.DataFrame(
        {
            "uid": ["p:000000003", "p:000000001", "p:000000002", "p:000000004", "p:000000005"],
            "key": ["000000001", "000000000", None, "000010000", None],
            "status": ["success", "success", "failed_to_download", "success", "failed_to_download"],
            "error_message": [None, None, "No such file", None, "timeout"],
        }
    )


def test_count_successes_counts_status_success():
    assert count_successes(_status()) == 3
    assert count_successes(_status().head(0)) == 0
    assert DownloadResult(_status(), [], 0.0).successes == 3
    with pytest.raises(ValueError, match="status: expected a download status table"):
        count_successes(pl.DataFrame({"uid": ["a"]}))


def test_checked_failures_is_the_failure_table_when_something_was_downloaded():
    result = DownloadResult(_status(), [], 1.0)
    assert checked_failures(result, "part 'p'").equals(failure_table(_status()))


def test_checked_failures_names_what_and_the_common_errors_when_nothing_was_downloaded():
    nothing = DownloadResult(_status().filter(pl.col("status") != "success"), [], 1.0)
    with pytest.raises(ValueError) as err:
        checked_failures(nothing, "part 'p-dead'")
    message = str(err.value)
    assert message.startswith("no image of part 'p-dead' could be downloaded (2 rows); most common errors: ")
    assert "No such file" in message and "timeout" in message


def test_fetched_contents_is_the_digest_of_the_downloaded_uids_then_each_shard_and_its_size(tmp_path):
    shards = []
    for name, size in (("00000.tar", 10), ("00001.tar", 3)):
        (tmp_path / name).write_bytes(b"x" * size)
        shards.append(str(tmp_path / name))
    fetched = fetched_contents(_status(), shards)
    want = frame_digest(pl.DataFrame({"uid": ["p:000000001", "p:000000003", "p:000000004"]}))
    assert fetched == [want, ["00000.tar", 10], ["00001.tar", 3]]
    # the order of the status rows does not change it
    assert fetched_contents(_status().reverse(), shards) == fetched
    with pytest.raises(ValueError, match="columns 'uid' and 'status'"):
        fetched_contents(pl.DataFrame({"uid": ["a"]}), shards)


def test_lost_by_shard_groups_the_lost_uids_by_the_shard_their_key_names():
    shards = ["s3://b/v/00000.tar", "s3://b/v/00001.tar"]
    lost = lost_by_shard(_status(), shards, ["p:000000001", "p:000000003", "p:000000004", "p:000000002", "p:9"])
    assert lost == {
        "00000.tar": ["p:000000003", "p:000000001"],  # keys 000000001 and 000000000: shard 00000
        "00001.tar": ["p:000000004"],  # key 000010000
        "(not in the current download)": ["p:000000002", "p:9"],
    }
    assert lost_by_shard(_status(), shards[1:], ["p:000000001"]) == {"(unknown shard)": ["p:000000001"]}
    with pytest.raises(ValueError, match="'uid', 'key' and 'status'"):
        lost_by_shard(_status().drop("key"), shards, [])


def test_describe_lost_lists_counts_and_the_first_uids():
    lost = {"00000.tar": ["a", "b", "c", "d"], "00001.tar": ["e"]}
    assert describe_lost(lost) == "00000.tar: 4 (a, b, c, ...); 00001.tar: 1 (e)"
    assert describe_lost(lost, examples=1) == "00000.tar: 4 (a, ...); 00001.tar: 1 (e)"
    assert describe_lost({}) == ""
    with pytest.raises(ValueError, match="examples"):
        describe_lost(lost, examples=-1)


def test_failure_causes_by_class_and_by_domain():
    from laionlab.io.download import failure_causes

    messages = {
        "a": ("success", None),
        "b": ("failed_to_download", "<urlopen error [Errno -2] Name or service not known>"),
        "c": ("failed_to_download", "HTTP Error 404: Not Found"),
        "d": ("failed_to_download", "HTTP Error 503: Service Unavailable"),
        "e": ("failed_to_download", "The read operation timed out"),
        "f": ("failed_to_resize", "cannot identify image file <_io.BytesIO object at 0x7f>"),
        "g": ("blocked_by_policy", "blocked by URL policy: 10.0.0.1 is a private address"),
        "h": ("failed_to_download", "HTTP Error 404: Not Found"),
        "i": ("failed_to_download", "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
        "j": ("failed_to_download", "Remote end closed connection without response"),
        "k": ("failed_to_download", "something new"),
    }
    status = pl.DataFrame(
        {
            "uid": list(messages),
            "status": [s for s, _ in messages.values()],
            "error_message": [m for _, m in messages.values()],
        }
    )
    urls = pl.DataFrame(
        {
            "uid": list(messages),
            "URL": [f"https://{'bad.example' if u in 'ch' else 'x' + u + '.org'}:443/p.jpg" for u in messages],
        }
    )
    causes, domains = failure_causes(status, urls)
    got = dict(zip(causes["cause"], causes["count"]))
    assert got == {
        "http_4xx": 2,
        "dns": 1,
        "http_5xx": 1,
        "timeout": 1,
        "decode": 1,
        "policy": 1,
        "tls": 1,
        "connection": 1,
        "other": 1,
    }
    assert causes["share"].sum() == pytest.approx(1.0, abs=1e-3) and causes["cause"][0] == "http_4xx"
    assert domains.row(0, named=True) == {
        "domain": "bad.example",
        "failed": 2,
        "rows": 2,
        "failed_share": 1.0,
        "cause": "http_4xx",
    }
    assert "xa.org" not in domains["domain"].to_list()  # no failure there
    assert failure_causes(status)[1].height == 0
