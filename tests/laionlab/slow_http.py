"""Slow responses for the loopback HTTP servers of the download tests."""

import time


def send_drip(handler, content_type: str | None = None, seconds: int = 60) -> None:
    """``seconds`` bytes, one a second: each wait is short, the whole is not (a timeout per
    wait never fires; only a deadline on the whole request ends it)."""
    handler.send_response(200)
    if content_type:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(seconds))
    handler.end_headers()
    try:
        for _ in range(seconds):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(1)
    except OSError:  # the client gave up
        pass
