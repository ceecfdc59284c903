"""gpuaf: a web portal for GPU analysis facilities.

The distribution holds one shared kernel (this package: settings, errors, GPU
facts, the ledger, the command line) and four sub-packages that live in their own
top-level folders: ``gpuaf.hub``, ``gpuaf.spawners``, ``gpuaf.api`` and
``gpuaf.templates``.
"""

__version__ = "0.1.0"
