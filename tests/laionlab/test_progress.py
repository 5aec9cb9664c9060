import logging

from laionlab.progress import Progress, format_duration


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
