"""The embedded demo data set (see generate.py)."""

from laionlab.demo.generate import DemoConfig, DemoManifest, build_demo

__all__ = ["DemoConfig", "DemoManifest", "build_demo"]
