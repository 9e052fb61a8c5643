"""Progress on stderr for the ``jaxpass`` commands: one shared, light implementation.

A :class:`Progress` shows ``[label] 3/8 [#####     ] text 12.0 s, 38 % done, ~20.0 s left``
(the time left from the rate since its first update) updated in place
(``\\r``) when stderr is a terminal, and plain lines otherwise: the first, the
last and at most one per ``interval`` seconds between, so a log file stays
readable. :meth:`Progress.phase` announces a phase (``"compiling"``,
``"running"``, a method name), ticks its elapsed time while one long jitted
call runs (a background timer; JAX releases the GIL while it computes) and
prints the phase's time when it ends. :func:`compile_and_run` is
:func:`jaxpass.runtime.io.compile_and_run` with those two phases shown.

``--quiet`` (every command) calls :func:`set_quiet`, which silences every
:class:`Progress` and :func:`log` line; stdout (tables, ``wrote ...`` lines)
is unchanged.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

_QUIET = False

#: seconds between plain (non-terminal) progress lines
PLAIN_INTERVAL_S = 10.0
#: seconds between in-place (terminal) redraws of a ticking phase
TTY_TICK_S = 0.5


def set_quiet(quiet: bool) -> None:
    """Silence (``True``) or restore (``False``) all progress and :func:`log` output of this process."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """Whether progress output is silenced (:func:`set_quiet`)."""
    return _QUIET


def log(msg: str) -> None:
    """One line on stderr, unless quiet."""
    if not _QUIET:
        print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet_stderr(quiet: bool):
    """``with quiet_stderr(args.quiet): ...``: with ``quiet``, discard what the block writes to ``sys.stderr``
    (for experiment modules that print their own progress lines) and silence :func:`log`."""
    if not quiet:
        yield
        return
    import os

    was = _QUIET
    set_quiet(True)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
            yield
    finally:
        set_quiet(was)


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class Progress:
    """A progress bar over ``total`` steps (or phases only, ``total=None``) on stderr.

    Args:
      label: prefix of every line, e.g. ``"tune"`` -> ``[tune] ...``.
      total: number of steps of :meth:`update` (``None``: phases and messages only).
      enabled: ``None`` (default) means "unless quiet" (:func:`set_quiet`).
      stream: where to write (default ``sys.stderr``); a terminal gets ``\\r`` redraws.
      interval: seconds between plain lines when not a terminal (default :data:`PLAIN_INTERVAL_S`).
      title, unit: optional words before the count: ``[ee] static N=4: outer 2/3 [###   ] ...``.

    Use as a context manager (or call :meth:`close`) so the last line ends with a newline.
    """

    def __init__(self, label: str, total: int | None = None, *, enabled: bool | None = None, stream=None,
                 interval: float | None = None, title: str = "", unit: str = ""):
        self.label, self.total, self.title, self.unit = label, total, title, unit
        self.enabled = (not _QUIET) if enabled is None else bool(enabled)
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = PLAIN_INTERVAL_S if interval is None else float(interval)
        self.t0 = time.perf_counter()
        self._width = 0  # length of the open \r line (0: none open)
        self._last_plain = -float("inf")
        self._first = None  # (step, time) of the first update: the rate behind the time-left estimate
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ output
    def _write(self, line: str, *, final: bool) -> None:
        with self._lock:
            if self.tty:
                pad = " " * max(self._width - len(line), 0)
                self.stream.write("\r" + line + pad + ("\n" if final else ""))
                self._width = 0 if final else len(line)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (ends an open bar line first)."""
        if not self.enabled:
            return
        self._end_line()
        self._write(f"[{self.label}] {text}", final=True)

    def _end_line(self) -> None:
        with self._lock:
            if self.tty and self._width:
                self.stream.write("\n")
                self.stream.flush()
                self._width = 0

    def update(self, step: int, text: str = "") -> None:
        """Show ``step`` of ``total`` done (a bar when ``total`` is known) with ``text``."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._first is None:
            self._first = (step, now)
        last = self.total is not None and step >= self.total
        if not self.tty and not last and step > 1 and now - self._last_plain < self.interval:
            return
        self._last_plain = now
        head = f"{self.title}: " if self.title else ""
        head += f"{self.unit} " if self.unit else ""
        if self.total:
            frac = min(max(step / self.total, 0.0), 1.0)
            head += f"{step}/{self.total} [{'#' * int(20 * frac):<20}]"
        else:
            head += f"{step}"
        clock = _fmt_s(now - self.t0)
        done0, t_first = self._first
        if self.total and not last and step > done0 and now > t_first:  # the rate since the first update
            left = (now - t_first) / (step - done0) * (self.total - step)
            clock += f", {100 * step / self.total:.0f} % done, ~{_fmt_s(left)} left"
        parts = (f"[{self.label}]", head, text, clock)
        self._write(" ".join(p for p in parts if p), final=last)

    @contextlib.contextmanager
    def phase(self, name: str):
        """``with bar.phase("compiling"): ...``: announce, tick the elapsed time, print the phase's time."""
        if not self.enabled:
            yield self
            return
        self._end_line()
        start = time.perf_counter()
        stop = threading.Event()
        if self.tty:  # plain output: the ticks and the end line only (a log stays short)
            self._write(f"[{self.label}] {name} ...", final=False)

        def tick():
            wait = TTY_TICK_S if self.tty else self.interval
            while not stop.wait(wait):
                self._write(f"[{self.label}] {name} ... {_fmt_s(time.perf_counter() - start)}", final=not self.tty)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        failed = False
        try:
            yield self
        except BaseException:
            failed = True
            raise
        finally:
            stop.set()
            ticker.join()
            took = _fmt_s(time.perf_counter() - start)
            self._write(f"[{self.label}] {name}: {'stopped after' if failed else 'done in'} {took}", final=True)

    def close(self) -> None:
        """End an open in-place line with a newline."""
        if self.enabled:
            self._end_line()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def iteration_callback(label: str, title: str, total: int, unit: str = "outer"):
    """A ``callback(t, value)`` for iterative solvers: outer iteration ``t`` of ``total`` and the objective."""
    bar = Progress(label, total, title=title, unit=unit)

    def callback(t, value):
        bar.update(int(t), f"objective {float(value):.6g}")

    return callback


def compile_and_run(fn, *args, progress: Progress | None = None, what: str = "", repeats: int = 1, **static):
    """:func:`jaxpass.runtime.io.compile_and_run` with ``compiling``/``running`` phases on ``progress``.

    Returns ``(output, seconds, compile_s)`` exactly as the io version (``seconds``:
    the best of ``repeats`` blocked calls after a warm-up when ``repeats > 1``).
    """
    import jax

    bar = progress if progress is not None else Progress("jaxpass", enabled=False)
    prefix = f"{what}: " if what else ""
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    with bar.phase(prefix + "compiling"):
        t0 = time.perf_counter()
        compiled = jitted.lower(*args, **static).compile()
        compile_s = time.perf_counter() - t0
    with bar.phase(prefix + ("running" if repeats == 1 else f"running (1 + {repeats} timed calls)")):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        seconds = time.perf_counter() - t0
        if repeats > 1:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(*args))
                times.append(time.perf_counter() - t0)
            seconds = min(times)
    return out, seconds, compile_s
