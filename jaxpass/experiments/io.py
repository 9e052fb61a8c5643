"""Moved to :mod:`jaxpass.runtime.io`; this name stays an alias of that very module (same state)
for scripts that import ``jaxpass.experiments.io``."""

import sys

from jaxpass.runtime import io as _io

sys.modules[__name__] = _io
