"""Result files and timing for ``jaxpass.learn``, ``jaxpass.plotting``, ``jaxpass.experiments`` and ``benchmarks/``.

* :func:`environment`: where a result came from (device, versions, XLA flags,
  git state), recorded in every result file under ``"env"``;
* :func:`write_json` / :func:`write_text`: atomic writes through a unique
  temporary name in the target folder, then ``os.replace`` (a failed or
  interrupted run never leaves half a file, and two runs never share a temp);
* :func:`result_set`: all files of one run, atomic as a set. While a set for
  folder ``D`` is open, every write through :func:`atomic_path` (so
  :func:`write_json`, :func:`write_text`, ``jaxpass.plotting.save_figure``) to
  a path inside ``D`` goes to the set's temporary folder
  ``D/.jaxpass.tmp-<pid>-<random>/``; on success the files replace their
  namesakes in ``D`` together, the manifest ``D/run.json`` (command line,
  versions, device, seed, SHA-256 of every file: :func:`read_result_set`
  checks it; earlier sets' files still there, unchanged, under ``kept`` with
  the command line that wrote them, any other entry under ``others``) last; on an error or interrupt the temporary folder is removed
  and ``D`` keeps the previous set. :func:`writes_result_set` makes a writer
  function's files one set;
* :func:`compile_and_run`: compile apart, then blocked, timed calls.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import inspect
import json
import math
import os
import platform
import re
import shutil
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

    Inside an open :func:`result_set` for a folder that holds ``path``, the
    file lands in the set's temporary folder instead and appears at ``path``
    when the set commits.
    """
    path = Path(path)
    target = _staged(path) or path
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=f".tmp{path.suffix}",
                               dir=target.parent)
    os.close(fd)
    if target is path:
        _LOOSE.add(tmp)  # an interrupt handler removes it (see abandon_open_sets)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results get the usual permissions
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        _LOOSE.discard(tmp)


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


# ------------------------------------------------------------------ result sets
#: name of a result set's manifest in its folder
MANIFEST = "run.json"
#: name prefix of a result set's temporary folder (inside the result folder)
TMP_PREFIX = ".jaxpass.tmp-"
#: a temporary folder or file of a live process is stale after this long [s] (guards against pid reuse)
STALE_AFTER_S = 24 * 3600.0

_TMP_DIR = re.compile(re.escape(TMP_PREFIX) + r"(?P<pid>\d+)-")
_TMP_FILE = re.compile(r"\..+\.(?P<pid>\d+)-[a-z0-9_]{8}\.tmp(\.\w+)?$")  # atomic_path's names
_OPEN: list[ResultSet] = []  # open, uncommitted sets of this process, innermost last
_LOOSE: set[str] = set()  # atomic_path temporaries written outside any set
_COMMIT: dict[str, Any] = {"active": False, "deferred": [], "done": []}


class ResultSet:
    """One run's files: staged in :attr:`tmp` until :func:`result_set` commits them to :attr:`out_dir`."""

    def __init__(self, out_dir, command: str, argv=None, seed=None):
        self.out_dir = Path(out_dir)
        self.real = os.path.realpath(out_dir)
        self.command, self.argv, self.seed = command, None if argv is None else [str(a) for a in argv], seed
        self.tmp: Path | None = None
        self.created: list[Path] = []  # folders this set created, deepest first (removed again if left empty)
        self.cancelled = False

    def cancel(self) -> None:
        """Discard the set at the end of its ``with`` block instead of committing it."""
        self.cancelled = True

    def files(self) -> list[str]:
        """The staged files, as sorted POSIX paths relative to :attr:`out_dir`."""
        if self.tmp is None or not self.tmp.is_dir():
            return []
        return sorted(p.relative_to(self.tmp).as_posix() for p in self.tmp.rglob("*") if p.is_file()
                      and not p.name.startswith("."))


#: name endings of the files commands write into ``--out``: a folder there with such a name is in a result's way
RESULT_SUFFIXES = (".json", ".jsonl", ".md", ".png", ".pdf", ".svg", ".npz", ".npy", ".csv", ".txt")


def check_out_dir(path) -> None:
    """Raise ``ValueError`` (one line naming ``path``) unless ``path`` is, or can be made, a writable folder.

    Also refused: a folder inside ``path`` named like a result file (``tune.json/``,
    ``run.json/``: :data:`RESULT_SUFFIXES`), where a command's file would go.
    Nothing is created; call it before any computation so a bad ``--out`` fails at once.
    """
    p = Path(path)
    if not str(path).strip():
        raise ValueError("must name a folder, got an empty string")
    if p.is_symlink() and not p.exists():
        raise ValueError(f"{path}: is a broken symbolic link")
    if p.exists():
        if not p.is_dir():
            raise ValueError(f"{path}: exists and is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ValueError(f"{path}: directory is not writable")
        with contextlib.suppress(OSError):
            for entry in os.scandir(p):
                if entry.is_dir() and os.path.splitext(entry.name)[1].lower() in RESULT_SUFFIXES:
                    raise ValueError(f"{path}: {entry.name} is a directory where a result file goes; "
                                     "move it away or write elsewhere")
        return
    parent = p.absolute()
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{path}: cannot create it, {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot create it, {parent} is not writable")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale(out_dir, max_age_s: float = STALE_AFTER_S) -> list[str]:
    """Remove temporaries of dead runs in ``out_dir``; returns their names.

    A result set's temporary folder (``.jaxpass.tmp-<pid>-*``) or an
    :func:`atomic_path` temporary (``.<name>.<pid>-<random>.tmp*``) is stale when
    process ``pid`` is gone (e.g. SIGKILLed) or it is older than ``max_age_s``.
    """
    removed = []
    try:
        entries = list(os.scandir(out_dir))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_DIR.match(entry.name) or _TMP_FILE.match(entry.name)
        if m is None:
            continue
        try:
            age = time.time() - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if _pid_alive(int(m["pid"])) and age < max_age_s:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        removed.append(entry.name)
    return removed


def _staged(path: Path) -> Path | None:
    """Where ``path`` is written while an open result set covers its folder (None: no set covers it)."""
    if not _OPEN:
        return None
    parent = os.path.realpath(path.parent)
    for rs in reversed(_OPEN):
        parts = Path(os.path.relpath(parent, rs.real)).parts
        if rs.tmp is None or (parts and (parts[0] == os.pardir or parts[0].startswith(TMP_PREFIX))):
            continue
        return rs.tmp.joinpath(*parts, path.name)
    return None


def _make_dirs(path: Path, created: list[Path]) -> None:
    """``os.makedirs(path)``; the folders it creates are put in ``created`` first, deepest first."""
    p = path.absolute()
    while not p.exists():
        created.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)


def _discard(rs: ResultSet) -> bool:
    """Remove ``rs``'s temporary folder and the empty folders it created; True if ``out_dir`` still holds files."""
    if rs.tmp is not None:
        shutil.rmtree(rs.tmp, ignore_errors=True)
    for d in rs.created:
        try:
            os.rmdir(d)
        except OSError:
            break
    try:
        return any(not _TMP_DIR.match(e.name) for e in os.scandir(rs.out_dir))
    except OSError:
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _kept(rs: ResultSet, files: list[str]) -> dict:
    """Files of earlier sets that stay in ``out_dir`` beside this set: ``{name: {sha256, bytes, command, argv}}``.

    Read from the previous ``run.json`` (its ``files`` and its own ``kept``); an entry is carried over
    when this set does not replace the file and the file is unchanged (same SHA-256).
    """
    try:
        old = json.loads((rs.out_dir / MANIFEST).read_text())
        entries = dict(old.get("kept", {}))  # already with the command that wrote them
        entries.update({n: {**i, "command": old.get("command"), "argv": old.get("argv")}
                        for n, i in old.get("files", {}).items()})
    except (OSError, ValueError, AttributeError):
        return {}
    kept = {}
    for name, info in sorted(entries.items()):
        f = rs.out_dir / name
        with contextlib.suppress(OSError, KeyError, TypeError):
            if name not in files and f.is_file() and _sha256(f) == info["sha256"]:
                kept[name] = {"sha256": info["sha256"], "bytes": f.stat().st_size, "command": info.get("command"),
                              "argv": info.get("argv")}
    return kept


def _manifest(rs: ResultSet, files: list[str]) -> dict:
    import jaxpass

    env = environment()
    kept = _kept(rs, files)
    listed = {Path(n).parts[0] for n in [*files, *kept]} | {MANIFEST}
    try:
        others = sorted(e.name for e in os.scandir(rs.out_dir) if e.name not in listed and not e.name.startswith("."))
    except OSError:
        others = []
    return {"command": rs.command, "argv": rs.argv, "seed": rs.seed,
            "jaxpass_version": jaxpass.__version__, "jax_version": jax.__version__, "device": env["device"],
            "files": {f: {"sha256": _sha256(rs.tmp / f), "bytes": (rs.tmp / f).stat().st_size} for f in files},
            "kept": kept, "others": others, "env": env}


def _commit(rs: ResultSet) -> None:
    """Move ``rs``'s files into ``out_dir``, the manifest last; an interrupt waits until it is done."""
    files = rs.files()
    if not files:
        _OPEN.remove(rs)
        _discard(rs)
        return
    for f in files:
        if (rs.out_dir / f).is_dir():
            raise IsADirectoryError(f"{rs.out_dir / f}: is a directory, not replaced by a result file")
    payload = _manifest(rs, files)
    with open(rs.tmp / MANIFEST, "w") as fh:
        json.dump(jsonable(payload), fh, indent=2, allow_nan=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    _COMMIT["active"] = True
    try:
        _OPEN.remove(rs)
        with contextlib.suppress(FileNotFoundError):  # no manifest while the set is mixed
            os.unlink(rs.out_dir / MANIFEST)
        for f in files:
            (rs.out_dir / f).parent.mkdir(parents=True, exist_ok=True)
            os.replace(rs.tmp / f, rs.out_dir / f)
        os.replace(rs.tmp / MANIFEST, rs.out_dir / MANIFEST)
        _COMMIT["done"].append(os.fspath(rs.out_dir))
    finally:
        shutil.rmtree(rs.tmp, ignore_errors=True)
        _COMMIT["active"] = False
        deferred, _COMMIT["deferred"] = _COMMIT["deferred"], []
        for fn in deferred:
            fn()


@contextlib.contextmanager
def result_set(out_dir, command: str, argv=None, seed=None):
    """All files a run writes into ``out_dir``, committed together: yields the :class:`ResultSet`.

    On entry ``out_dir`` is checked (:func:`check_out_dir`, ``ValueError``) and
    created, stale temporaries of dead runs are removed (:func:`clean_stale`)
    and a temporary folder ``out_dir/.jaxpass.tmp-<pid>-<random>/`` is made;
    writes through :func:`atomic_path` into ``out_dir`` (or below) land there.
    On a normal exit the files replace their namesakes in ``out_dir`` (other
    files there are left alone) and ``run.json`` is written last: ``command``,
    ``argv``, ``seed``, ``jaxpass_version``, ``jax_version``, ``device``,
    ``files`` (``{name: {"sha256", "bytes"}}``) and ``env``
    (:func:`environment`); the old ``run.json`` is removed first, so a reader
    never finds a manifest that matches a mixed set. On an exception (or
    :meth:`ResultSet.cancel`) the temporary folder is removed, ``out_dir``
    keeps its previous set, and a folder created here is removed if empty.
    A set that staged no file writes nothing. Opening a set for the folder of
    a set that is already open joins that set (the outer one commits).
    """
    real = os.path.realpath(out_dir)
    for rs in _OPEN:
        if rs.real == real:
            yield rs
            return
    check_out_dir(out_dir)
    rs = ResultSet(out_dir, command, argv, seed)
    _OPEN.append(rs)
    try:
        _make_dirs(rs.out_dir, rs.created)
        clean_stale(rs.out_dir)
        rs.tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=rs.out_dir))
        yield rs
        if rs.cancelled:
            raise _Cancelled
        _commit(rs)
    except BaseException as err:
        if rs in _OPEN:
            _OPEN.remove(rs)
        _discard(rs)
        if isinstance(err, _Cancelled):
            return
        raise


class _Cancelled(Exception):
    pass


def writes_result_set(command: str):
    """Decorator: the files of a writer ``fn(..., out_dir, ...)`` form one :func:`result_set` of ``out_dir``.

    Its ``seed`` argument, if any, goes into the manifest. Called inside an open
    set for the same folder (a ``jaxpass`` command), it joins that set.
    """

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def writer(*args, **kwargs):
            bound = signature.bind(*args, **kwargs).arguments
            with result_set(bound["out_dir"], command, seed=bound.get("seed")):
                return fn(*args, **kwargs)

        return writer

    return decorate


def read_result_set(out_dir) -> dict:
    """The manifest of the result set in ``out_dir``, after checking every file's SHA-256.

    Raises ``ValueError`` when ``run.json`` is missing or a listed file (of
    this set, ``files``, or kept from earlier sets, ``kept``) is missing or
    differs (an incomplete or mixed set).
    """
    path = Path(out_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: missing (no complete result set in {out_dir})") from None
    for name, info in {**manifest.get("kept", {}), **manifest["files"]}.items():
        f = Path(out_dir) / name
        if not f.is_file():
            raise ValueError(f"{f}: listed in {path} but missing")
        if _sha256(f) != info["sha256"]:
            raise ValueError(f"{f}: SHA-256 differs from {path} (not this run's file)")
    return manifest


def abandon_open_sets() -> str:
    """For an interrupt handler about to exit: remove every open set's and loose temporary.

    Returns ``"kept"`` when a result folder still holds earlier files,
    ``"written"`` when this process committed a set and none was open,
    ``"nothing"`` otherwise.
    """
    kept = False
    opened = list(_OPEN)
    _OPEN.clear()
    for rs in opened:
        kept = _discard(rs) or kept
    for tmp in list(_LOOSE):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    if kept:
        return "kept"
    return "written" if _COMMIT["done"] and not opened else "nothing"


def after_commit(fn) -> bool:
    """If a result set is being committed, call ``fn()`` once it is done and return True; else return False.

    An interrupt handler uses it so a set is never left half moved.
    """
    if _COMMIT["active"]:
        _COMMIT["deferred"].append(fn)
        return True
    return False


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
