"""Installs laionlab's network guard at start-up in every Python process whose PYTHONPATH
names this folder and whose environment has LAIONLAB_NET_GUARD (see laionlab/io/net_guard.py):
the img2dataset child and the workers it spawns. If the guard cannot be installed, the
process refuses every network connection rather than download unguarded."""

import importlib.machinery
import importlib.util
import os
import sys

if os.environ.get("LAIONLAB_NET_GUARD"):
    try:
        from laionlab.io import net_guard

        net_guard.install_from_env()
    except Exception as err:  # noqa: BLE001 - fail closed, whatever went wrong
        import socket

        def _refuse(self, *args, _why=f"blocked by URL policy: the network guard failed to install ({err!r})"):
            raise PermissionError(_why)

        socket.socket.connect = socket.socket.connect_ex = _refuse
        sys.stderr.write(f"laionlab: network guard not installed, network refused: {err!r}\n")
    try:
        from laionlab.io.net_guard import die_with_parent

        die_with_parent()  # a download process does not outlive the run that started it
    except Exception as err:  # noqa: BLE001
        sys.stderr.write(f"laionlab: could not tie this process to its parent's life: {err!r}\n")

# run the sitecustomize this one shadows, if any
_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here]
)
if _spec is not None and _spec.loader is not None:
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
