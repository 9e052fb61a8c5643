"""Result files written atomically: a temp name, then ``os.replace``."""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime

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
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
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


def compile_and_run(fn, *args, repeats: int = 1, **static):
    """Compile ``fn`` for ``args`` apart, then blocked calls: ``(output, seconds, compile_s)``.

    With ``repeats > 1`` the output comes from a first (warm-up) call and
    ``seconds`` is the best of ``repeats`` further calls.

    ``fn`` is a jitted function (anything with ``.lower``) or a plain one, which is
    compiled with ``jax.jit``; ``static`` are its static keyword arguments (e.g.
    ``options=...``), given to the lowering only. The call time excludes compilation.
    """
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args, **static).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    seconds = time.perf_counter() - t0
    if repeats > 1:
        seconds = min(_timed(compiled, args) for _ in range(repeats))
    return out, seconds, compile_s


def _timed(compiled, args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return time.perf_counter() - t0
