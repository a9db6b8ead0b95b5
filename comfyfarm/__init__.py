"""comfyfarm: a render farm for ComfyUI.

This package is the command line and the one-machine orchestration (embedded Redis, simulators,
demo, benchmarks). The product's parts live beside it: ``tasks`` (the contract), ``producer``,
``worker``, ``workflows`` and ``simulator``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("comfyfarm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
