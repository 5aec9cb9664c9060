import logging

from laionlab.progress import Progress, format_duration, phase


def test_progress_lines_have_counts_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="laionlab")
    p = Progress("embedding", total=200, every_s=0.0, log=logging.getLogger("laionlab.test"), unit="images")
    p.update(50)
    line = caplog.records[-1].getMessage()
    assert line.startswith("embedding: 50/200 images (25.0 %)") and "images/s" in line and "ETA" in line
    p.update(150)
    assert "200/200 images (100.0 %)" in p.close() and "ETA 0:00" in p.close()


def test_progress_without_total_and_rate_limit(caplog):
    caplog.set_level(logging.INFO, logger="laionlab")
    p = Progress("scan", every_s=3600, log=logging.getLogger("laionlab.test"))
    for _ in range(10):
        p.update(5)
    assert not caplog.records  # nothing before every_s has passed
    assert p.close().startswith("scan: 50 rows") and "elapsed" in caplog.records[-1].getMessage()
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05"


def test_quiet_below_s_silences_only_short_loops(caplog):
    caplog.set_level(logging.INFO, logger="laionlab")
    log = logging.getLogger("laionlab.test")
    short = Progress("short", total=3, every_s=3600, log=log, quiet_below_s=3600)
    short.update(3)
    assert short.close().startswith("short: 3/3 rows") and not caplog.records
    long = Progress("long", total=3, every_s=3600, log=log, quiet_below_s=0.0)
    long.update(3)
    long.close()
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["long: 3/3 rows (100.0 %)"]


def test_phase_logs_start_and_duration(caplog):
    caplog.set_level(logging.DEBUG, logger="laionlab")
    with phase("training", logging.getLogger("laionlab.test"), logging.DEBUG):
        pass
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "training" and lines[1].startswith("training: done in 0.0 s")
    assert {r.levelno for r in caplog.records} == {logging.DEBUG}
