"""Optional dependencies: one clear error when a feature's extra is not installed.

The core (``import jaxpass``: channel, geometry, beamforming, metrics, optimize)
needs only jax, numpy and optax. Learning needs the ``[learn]`` extra (flax,
orbax-checkpoint) and figures the ``[plot]`` extra (matplotlib).
"""

from __future__ import annotations

import importlib


def require(module: str, extra: str, feature: str):
    """Import and return ``module``, or raise one ``ModuleNotFoundError`` line naming the extra to install.

    Args:
      module: the module to import, e.g. ``"flax"``.
      extra: the jaxpass extra that installs it, e.g. ``"learn"``.
      feature: what needs it, e.g. ``"jaxpass.learn"`` (the start of the message).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:  # not installed (a broken install keeps its own error)
        missing = getattr(err, "name", None) or module
        raise ModuleNotFoundError(
            f"{feature} needs {missing}, which is not installed: pip install 'jaxpass[{extra}]'",
            name=missing) from None
