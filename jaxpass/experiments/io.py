"""Result files written atomically: a temp name, then ``os.replace``."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone

import jax


def environment() -> dict:
    """Where a result came from: jax version, backend, device kind, host."""
    dev = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path, payload: dict) -> str:
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def write_text(path, text: str) -> str:
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path
