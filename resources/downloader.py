"""The Downloader resource: img2dataset settings for fetching a part's images."""

from __future__ import annotations

from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from laionlab.io.download import DownloadSettings


class Downloader(ConfigurableResource):
    """img2dataset settings (see its README); one part is downloaded per asset run."""

    image_size: int = Field(256, ge=8, description="resize target (img2dataset image_size)")
    resize_mode: Literal["no", "keep_ratio", "center_crop", "border"] = Field(
        "border", description="img2dataset resize_mode"
    )
    processes_count: int = Field(2, ge=1)
    thread_count: int = Field(16, ge=1)
    timeout: int = Field(10, ge=1, description="seconds per request")
    retries: int = Field(0, ge=0)
    number_sample_per_shard: int = Field(10_000, ge=1)
    encode_format: Literal["jpg", "png", "webp"] = Field("jpg")
    distributor: Literal["multiprocessing", "pyspark", "ray"] = Field("multiprocessing")
    user_agent_token: str | None = Field(None)
    allowed_file_roots: list[str] = Field(
        [], description="file:// URLs are fetched only under these folders (the demo names its own)"
    )
    ray_address: str | None = Field(None, description="download with img2dataset's ray distributor on this cluster")
    process_timeout_s: float | None = Field(
        None, gt=0, description="kill a hung img2dataset process after this many seconds"
    )
    allow_private_hosts: bool = Field(
        False,
        description=(
            "allow loopback/private/link-local hosts and addresses, on the URL and at connect time "
            "(tests against a local server only)"
        ),
    )
    allowed_hosts: list[str] = Field(
        [],
        description=(
            "'IP' or 'IP:port' addresses ('[::1]:8080' for IPv6) fetchable even when private, "
            "on the URL and at connect time"
        ),
    )
    max_image_pixels: int = Field(
        89_478_485,
        ge=1,
        description=(
            "refuse an image with more pixels from its header, before decoding (PIL's default cap; OpenCV's is 2**30)"
        ),
    )
    request_deadline_s: float = Field(
        60.0,
        gt=0,
        description=(
            "seconds one request may take, connect to last byte, redirects included (timeout bounds each wait only)"
        ),
    )

    def settings(self) -> DownloadSettings:
        fields = {k: v for k, v in self.model_dump().items() if k != "ray_address"}
        return DownloadSettings(
            **{
                **fields,
                "allowed_file_roots": tuple(self.allowed_file_roots),
                "allowed_hosts": tuple(self.allowed_hosts),
            }
        )
