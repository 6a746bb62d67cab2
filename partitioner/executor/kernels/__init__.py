"""Every kernel module in this package, imported so its ``@kernel``s register.

Modules are found with pkgutil, so a new family file (``nn_conv.py``,
``nn_norm.py``, ...) registers itself just by being here; modules whose name
starts with an underscore are helpers and are imported only by their users.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
