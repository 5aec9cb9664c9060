"""Running the ingest on a Ray cluster instead of this machine's processes.

``ray_embed`` embeds webdataset shards with an actor pool (Ray Data) and downloads parts
with img2dataset's ``distributor="ray"``. Ray is an optional dependency (the ``ray`` extra):
it is imported only when one of these functions runs.
"""

from laionlab.distributed.ray_embed import connect, ray_download_part, ray_download_settings, ray_encode_shards

__all__ = ["connect", "ray_download_part", "ray_download_settings", "ray_encode_shards"]
