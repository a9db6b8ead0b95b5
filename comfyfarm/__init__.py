"""comfyfarm: a render farm for ComfyUI.

The one import namespace of the product. This folder holds the command line (``cli.py``,
``commands/``) and the one-machine orchestration (embedded Valkey, simulators, demo); the parts
live in the repository's top-level folders and are installed under this name through the symlinks
``comfyfarm/<part> -> ../<part>``: ``comfyfarm.tasks`` (the contract), ``comfyfarm.producer``,
``comfyfarm.worker``, ``comfyfarm.comfy`` (the ComfyUI client), ``comfyfarm.storage``,
``comfyfarm.workflows`` and ``comfyfarm.simulator``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("comfyfarm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
