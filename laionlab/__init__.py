"""laionlab: the pure library behind the laionlab Dagster platform.

Algorithms here take arrays/frames and return arrays/frames; nothing in this package
imports dagster (a test checks; README.md, "Layout", maps the packages).
"""

__version__ = "0.1.0"
