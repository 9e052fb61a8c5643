"""The one runtime/io module of ``jaxpass.experiments`` and ``benchmarks/``.

* :func:`environment`: where a result came from (device, versions, XLA flags,
  git state), recorded in every result file under ``"env"``;
* :func:`write_json` / :func:`write_text`: atomic writes through a unique
  temporary name in the target folder, then ``os.replace`` (a failed or
  interrupted run never leaves half a file, and two runs never share a temp);
* :func:`compile_and_run`: compile apart, then blocked, timed calls.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

_REPO = Path(__file__).resolve().parents[2]


def slugify(text: str) -> str:
    """Lower-case, runs of non-alphanumerics -> ``-`` (``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def device_name(device=None) -> str:
    """Short, file-name-safe name of the device results are measured on.

    CPU: ``"cpu-<n>core"`` with ``n = os.cpu_count()`` (what bounds CPU
    throughput); accelerators: the slugified ``device_kind`` (``"nvidia-h100-80gb-hbm3"``,
    ``"tpu-v5-lite"``), with ``-x<count>`` appended when more than one is visible.
    """
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return f"cpu-{os.cpu_count() or 1}core"
    name = slugify(getattr(device, "device_kind", "") or device.platform)
    count = len(jax.devices())
    return name if count == 1 else f"{name}-x{count}"


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_state() -> dict[str, Any] | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO,
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Versions, device, XLA flags, git state and date: the ``"env"`` record of every result file."""
    import jaxlib

    from jaxpass.compile import xla_defaults_active

    dev = jax.devices()[0]
    return {
        "device": device_name(dev),
        "platform": dev.platform,
        "device_kind": getattr(dev, "device_kind", None),
        "device_count": len(jax.devices()),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "jax_version": jax.__version__,
        "jaxlib_version": getattr(jaxlib, "__version__", None),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "x64": bool(jax.config.jax_enable_x64),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jaxpass_xla_defaults": xla_defaults_active(),
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git": _git_state(),
    }


def jsonable(obj):
    """``obj`` with NumPy scalars/arrays as Python values and non-finite floats as ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a unique temporary path beside ``path`` (same suffix); rename it to ``path`` on success.

    For writers that take a file name (``np.savez``, ``Figure.savefig``): the
    suffix is kept so they pick the right format. On an error the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _atomic_write(path, write) -> str:
    """Call ``write(fh)`` on a unique temp file beside ``path``, then rename it to ``path``."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    return os.fspath(path)


def write_json(path, payload: dict) -> str:
    """Write ``payload`` as indented strict JSON to ``path`` atomically; returns the path."""

    def write(fh):
        json.dump(jsonable(payload), fh, indent=2, allow_nan=False)
        fh.write("\n")

    return _atomic_write(path, write)


def write_text(path, text: str) -> str:
    """Write ``text`` to ``path`` atomically; returns the path."""
    return _atomic_write(path, lambda fh: fh.write(text))


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
    out, seconds = _timed(compiled, args)
    if repeats > 1:
        seconds = min(_timed(compiled, args)[1] for _ in range(repeats))
    return out, seconds, compile_s


def _timed(compiled, args):
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, time.perf_counter() - t0
