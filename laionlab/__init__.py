"""laionlab: the pure library behind the laionlab Dagster platform.

Algorithms here take arrays/frames and return arrays/frames; nothing in this package
imports dagster (see ../DESIGN.md in the shared folder and README.md).
"""

__version__ = "0.1.0"
