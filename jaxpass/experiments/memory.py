"""Peak-memory estimates of the ``jaxpass`` commands, checked before anything compiles.

Every command estimates its peak memory from its sizes with one simple formula
(below; good to within a factor of a few), compares it with the memory
available (:func:`available_bytes`) and refuses a run that cannot fit with one
line and a smaller value that would (:func:`check_fits` raises
:class:`~jaxpass.experiments.cli_args.UserError`, exit status 2), instead of
an out-of-memory traceback after a long wait. :func:`header_note` puts a large
estimate into the run's header line.

The formulas count bytes of the arrays that live at once, in units of one
complex channel coefficient (:data:`COMPLEX_BYTES`):

* uniform-position evaluation (``demo``): ``EVAL_FACTOR * K N L`` coefficients
  per drop (the ``(K, N, L)`` per-pinch channel and its intermediates);
* position tuning (``demo``, ``tune``, ``reproduce``, ``ssca``'s bound):
  ``TUNE_FACTOR * (candidates + starts) * K N L`` per drop, ``candidates =
  assignments * len(spacings) + random_starts + 1`` scored starts, plus the
  ``starts * steps`` history;
* EE Gauss-Seidel (``ee``): the ``G``-point grid (a few float arrays of ``G``)
  plus ``(D + D_held) * grid_batch * K`` values per vectorised block (times
  ``phase_samples`` with the random-phase gain);

times :data:`SAFETY`, plus :data:`BASE_BYTES` for the JAX runtime and compiled
programs.

Sharded batches (``--devices``/``--distributed``, :mod:`jaxpass.parallel`):
every estimate takes ``devices``, the number of memories a batch is split
over (:func:`shards`: the accelerators of the mesh, or its processes on CPU,
where the local devices share the host's memory). The batched part then counts
the ``ceil(B / devices)`` drops (the padded share, :func:`per_device`) one
memory holds, so the estimate is per device, as the memory it is compared with
(:func:`available_bytes`: one accelerator's, or the host's). Measured on CPU (``ru_maxrss``, float32, K = N = 4, L = 8):
evaluation ~5 coefficients per drop and tuning ~160 KiB per drop (2 x 83
starts x K N L x 8 B), which the factors round up.
"""

from __future__ import annotations

import math
import os

from jaxpass.experiments.cli_args import UserError

GiB = 2**30
MiB = 2**20
#: bytes of one complex64 value (the library computes in float32 unless float64 is asked for)
COMPLEX_BYTES = 8
#: JAX runtime, compiled programs and small arrays [bytes]
BASE_BYTES = 512 * MiB
#: multiplies every estimate (the formulas count the main arrays only)
SAFETY = 2.0
#: coefficients per (drop, K N L) of a vmapped evaluation (measured ~5)
EVAL_FACTOR = 6
#: coefficients per (drop, scored start, K N L) of position tuning (measured ~2)
TUNE_FACTOR = 2.5
#: an estimate above this goes into the run's header line
REPORT_ABOVE = 1 * GiB
#: environment variable overriding :func:`available_bytes` (bytes, or with a K/M/G/T suffix)
ENV_AVAILABLE = "JAXPASS_AVAILABLE_MEMORY"


def _total(working_bytes: float) -> int:
    return int(BASE_BYTES + SAFETY * working_bytes)


# ------------------------------------------------------------------ sharding
def per_device(drops: int, devices: int = 1) -> int:
    """Drops one memory holds when ``drops`` are sharded over ``devices``: ``ceil(drops / devices)`` (padded)."""
    if int(devices) < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    return -(-int(drops) // int(devices))


def shards(mesh) -> int:
    """How many memories a batch sharded over ``mesh`` is split over (1 for ``mesh=None``).

    Accelerators (GPU, TPU): the mesh's device count (each holds its share in its
    own memory). CPU devices share their host's memory, so on CPU it is the
    number of processes (hosts) the mesh spans: simulated CPU devices of one
    process divide nothing.
    """
    if mesh is None:
        return 1
    devices = list(mesh.devices.flat)
    if devices[0].platform == "cpu":
        return len({d.process_index for d in devices})
    return len(devices)


# ------------------------------------------------------------------ formulas
def eval_bytes(K: int, N: int, L: int, drops: int) -> float:
    """Working set of evaluating beamformers on uniform positions for ``drops`` drops [bytes]."""
    return EVAL_FACTOR * K * N * L * COMPLEX_BYTES * drops


def tune_bytes(K: int, N: int, L: int, drops: int, options=None) -> float:
    """Working set of :func:`jaxpass.optimize.tune_positions` on ``drops`` drops [bytes].

    ``options`` is a :class:`~jaxpass.optimize.positions.TuneOptions` or a dict of
    its fields (``starts``, ``steps``, ``assignments``, ``spacings``, ``random_starts``);
    missing fields take the library defaults.
    """
    from jaxpass.optimize.assignment import enumerable
    from jaxpass.optimize.positions import TuneOptions

    o = options if isinstance(options, TuneOptions) else TuneOptions(**dict(options or {}))
    candidates = o.assignments * len(o.spacings) + o.random_starts + 1
    per_drop = TUNE_FACTOR * (candidates + o.starts) * K * N * L * COMPLEX_BYTES + 8 * o.starts * o.steps
    if o.assignments and not enumerable(N, K):
        # Murty's k-best: a pool of 1 + k N subproblem masks (N x K) and N square problems per pop
        S = K * -(-N // K)
        per_drop += (1 + o.assignments * N) * (N * K + 4 * N + 8) + TUNE_FACTOR * N * (S + 1) ** 2 * 8
    return per_drop * drops


def demo_bytes(K: int, N: int, L: int, drops: int, *, tune_steps: int, devices: int = 1) -> int:
    """``jaxpass demo``: evaluation, and tuning (default options, ``tune_steps`` steps) when ``K <= N``;
    ``drops`` sharded over ``devices`` (:func:`shards`)."""
    drops = per_device(drops, devices)
    work = eval_bytes(K, N, L, drops)
    if tune_steps > 0 and K <= N:
        work += tune_bytes(K, N, L, drops, {"steps": tune_steps})
    return _total(work)


def tune_command_bytes(K: int, N: int, L: int, drops: int, options, *, devices: int = 1) -> int:
    """``jaxpass tune``: tuning ``drops`` drops with ``options``, sharded over ``devices``."""
    return _total(tune_bytes(K, N, L, per_device(drops, devices), options))


def ee_bytes(K: int, drops: int, held_out_drops: int, grid_points: int, options, *, devices: int = 1) -> int:
    """``jaxpass ee``: the Gauss-Seidel grid of ``grid_points`` points and its vectorised blocks.

    ``options`` is the :class:`~jaxpass.optimize.energy.DesignOptions` of the run;
    the held-out drops are sharded over ``devices`` (the design's drops are not).
    """
    held_out_drops = per_device(held_out_drops, devices) if held_out_drops else 0
    G = int(grid_points)
    phases = options.phase_samples if "random_phase" in (options.gain, options.static_gain) else 1
    batch = min(options.grid_batch, G)
    grid = 4 * G * 4  # t, grid, values, argmax scratch (float32)
    blocks = (drops + held_out_drops) * batch * K * phases * 4 * COMPLEX_BYTES
    return _total(grid + blocks)


def powermin_bytes(K: int, N: int, drops: int, *, chunk: int = 8192, samples: int = 0, devices: int = 1) -> int:
    """``jaxpass powermin``: the exhaustive reference's ``chunk`` evaluations per drop; ``samples`` masks (MC check);
    ``drops`` sharded over ``devices``."""
    return _total(per_device(drops, devices) * K * N * COMPLEX_BYTES * 4 * (chunk + samples))


def table_bytes(K: int, N: int, L: int, drops: int, tune=None, *, devices: int = 1) -> int:
    """``jaxpass reproduce``: a tuning row (``tune``: its options, the largest ``L``), twice for the
    baselines (MM-PDD, MIMO) beside it, and the evaluation, for ``drops`` drops sharded over ``devices``."""
    drops = per_device(drops, devices)
    return _total(2 * tune_bytes(K, N, L, drops, tune) + eval_bytes(K, N, L, drops))


def ssca_bytes(K: int, N: int, L: int, blocks: int, slots: int, bound_tune: dict | None = None, *,
               devices: int = 1) -> int:
    """``jaxpass ssca``: ``blocks x slots`` slot channels, and the single-timescale bound tuned per slot;
    the blocks (and the bound's ``blocks x slots`` drops) sharded over ``devices``."""
    work = eval_bytes(K, N, L, per_device(blocks, devices) * slots)
    if bound_tune is not None:
        work += tune_bytes(K, N, L, per_device(blocks * slots, devices), bound_tune)
    return _total(work)


def train_bytes(K: int, N: int, L: int, batch_size: int, train_drops: int, test_drops: int,
                *, stream: bool = False, float64: bool = False, devices: int = 1) -> int:
    """``jaxpass train``: a training batch's activations (a generous ``64 x`` the channel per sample),
    the stored training drops and the test drops' evaluation; the batch and the test drops sharded over
    ``devices`` (the training drops stay on the host)."""
    scale = 2 if float64 else 1
    activations = 64 * K * N * L * COMPLEX_BYTES * per_device(batch_size, devices) * scale
    data = 0 if stream else train_drops * K * 2 * 4 * scale
    return _total(activations + data + eval_bytes(K, N, L, per_device(test_drops, devices)) * scale)


def evaluate_bytes(K: int, N: int, L: int, drops: int, *, float64: bool = False, devices: int = 1) -> int:
    """``jaxpass evaluate``: a learned model's inference on all ``drops`` at once (activations counted as a
    training batch's, ``64 x`` the channel per drop), the drops on the host and their sum-rate evaluation;
    the drops sharded over ``devices``."""
    scale = 2 if float64 else 1
    share = per_device(drops, devices)
    activations = 64 * K * N * L * COMPLEX_BYTES * share * scale
    return _total(activations + drops * K * 2 * 4 * scale + eval_bytes(K, N, L, share) * scale)


# ------------------------------------------------------------------ available memory
def _parse_size(text: str) -> int:
    """``"8G"`` -> bytes (K/M/G/T, binary, optional ``B``/``iB``); a size must be a finite number > 0."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:], 1)
    value = float(text[:-1] if mult > 1 else text)
    if not (0 < value < float("inf")):
        raise ValueError(f"size must be > 0, got {text}")
    return int(value * mult)


def host_available_bytes() -> int | None:
    """Free host memory [bytes]: ``MemAvailable`` of ``/proc/meminfo``, else free pages; ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def device_available_bytes() -> int | None:
    """Free memory of the first accelerator [bytes] (``bytes_limit - bytes_in_use``); ``None`` on CPU.

    Reads ``jax.devices()[0].memory_stats()``, which only starts JAX's backend
    (no computation, no compilation).
    """
    try:
        import jax

        dev = jax.devices()[0]
        if dev.platform == "cpu":
            return None
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - no stats on this backend: fall back to the host
        return None
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def available_bytes() -> int | None:
    """Memory a run can use [bytes]: the accelerator's when there is one, else the host's.

    ``$JAXPASS_AVAILABLE_MEMORY`` (e.g. ``8G``) overrides both; ``None`` when unknown
    (then nothing is refused).
    """
    env = os.environ.get(ENV_AVAILABLE)
    if env:
        try:
            return _parse_size(env)
        except ValueError:
            raise UserError(f"${ENV_AVAILABLE} must be a positive size like 8G or 500M, got {env!r}") from None
    dev = device_available_bytes()
    return dev if dev is not None else host_available_bytes()


# ------------------------------------------------------------------ checks
def format_bytes(n: float) -> str:
    """``1.5e9`` -> ``"1.4 GiB"`` (MiB below 1 GiB, TiB from 1 TiB on)."""
    if n >= 2**40:
        return f"{n / 2**40:.3g} TiB" if n < 1000 * 2**40 else f"{n / 2**40:.0f} TiB"
    return f"{n / GiB:.3g} GiB" if n >= GiB else f"{n / MiB:.3g} MiB"


def header_note(need: int) -> str:
    """``", peak memory ~12 GiB (estimate)"`` for the header line when ``need`` is large, else ``""``."""
    return f", peak memory ~{format_bytes(need)} (estimate)" if need > REPORT_ABOVE else ""


def _fmt(v) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _round_down(x: float) -> float:
    """Two significant digits, rounded towards zero (``9_123_456 -> 9_100_000``)."""
    if x <= 0:
        return 0.0
    p = 10 ** (math.floor(math.log10(x)) - 1)
    return math.floor(x / p) * p


def _round_up(x: float) -> float:
    p = 10 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / p) * p


def largest_fitting(need_fn, value, available: int, *, decreasing: bool = False, integer: bool = True):
    """The value of a size nearest ``value`` whose estimate ``need_fn(v)`` fits in ``available``.

    For an increasing estimate (drops, points): the largest ``v <= value`` that fits,
    rounded down to two significant digits. For a ``decreasing`` one (a spacing):
    the smallest ``v >= value`` that fits, rounded up. ``None`` when none does.
    """
    if decreasing:
        lo, hi = float(value), float(value)
        while need_fn(hi) > available:
            if hi > 1e12 * max(float(value), 1e-300):
                return None
            lo, hi = hi, hi * 2
        for _ in range(60):
            mid = math.sqrt(lo * hi) if lo > 0 else (lo + hi) / 2
            lo, hi = (lo, mid) if need_fn(mid) <= available else (mid, hi)
        for out in (float(f"{hi:.2g}"), _round_up(hi)):  # two significant digits when they fit
            if out >= value and need_fn(out) <= available:
                return out
        return hi
    if need_fn(1) > available:
        return None
    lo, hi = 1, int(value)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if need_fn(mid) <= available else (lo, mid - 1)
    out = _round_down(lo) or lo
    return int(out) if integer else out


def check_fits(need_fn, value, *, flag: str, available: int | None = None, decreasing: bool = False,
               integer: bool = True, hint: str = " or run in batches", others: dict | None = None) -> int:
    """Refuse a run whose estimate does not fit; return the estimate [bytes].

    Args:
      need_fn: ``size -> bytes``, the command's estimate as a function of the size ``flag`` sets.
      value: that size as given.
      flag: how the user sets it, e.g. ``"--drops"`` (used in the message).
      available: bytes available (default :func:`available_bytes`; ``None`` refuses nothing).
      decreasing: the estimate falls as the size grows (a grid spacing).
      integer: the size is an integer (a count).
      hint: appended to the suggestion.
      others: ``{flag: (need_fn, value)}`` of the other sizes the estimate grows with (e.g.
        ``--steps``). When no value of ``flag`` fits, or another size shrunk alone to its given
        value would, the message names the one that dominates and a value of it that fits.

    Raises:
      UserError: ``"--drops 50000000 needs ~120 GiB, 22 GiB available; use --drops <= 9000000
        or run in batches"``.
    """
    need = int(need_fn(value))
    if available is None:
        available = available_bytes()
    if available is None or need <= available:
        return need
    best = largest_fitting(need_fn, value, available, decreasing=decreasing, integer=integer)
    msg = f"{flag} {_fmt(value)} needs ~{format_bytes(need)} of memory, {format_bytes(available)} available"
    for other, (other_fn, other_value) in (others or {}).items():
        # the size that dominates: none of `flag` fits, or setting the other to 1 saves more than setting `flag` to 1
        if best is None or (not decreasing and other_fn(1) < need_fn(1)):
            fit = largest_fitting(other_fn, other_value, available)
            if fit is not None and fit < other_value:
                raise UserError(f"{other} {_fmt(other_value)} needs ~{format_bytes(other_fn(other_value))} of memory "
                                f"(with {flag} {_fmt(value)}), {format_bytes(available)} available; it dominates the "
                                f"estimate: use {other} <= {_fmt(fit)}")
    if best is None:
        raise UserError(msg + "; no value of " + flag + " fits: use smaller sizes or a larger machine")
    raise UserError(msg + f"; use {flag} {'>=' if decreasing else '<='} {_fmt(best)}{hint}")
