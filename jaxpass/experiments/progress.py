"""Moved to :mod:`jaxpass.runtime.progress`; this name stays an alias of that very module (same state)
for scripts that import ``jaxpass.experiments.progress``."""

import sys

from jaxpass.runtime import progress as _progress

sys.modules[__name__] = _progress
