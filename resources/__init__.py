"""Dagster resources: thin ConfigurableResource wrappers around laionlab's library code."""

from resources.catalog import DatasetCatalog
from resources.clip import ClipEncoder
from resources.downloader import Downloader
from resources.laion_source import LaionSource
from resources.storage import FileStore, FolderBusyError, LanceStore, Version

__all__ = [
    "ClipEncoder",
    "DatasetCatalog",
    "Downloader",
    "FileStore",
    "FolderBusyError",
    "LaionSource",
    "LanceStore",
    "Version",
]
