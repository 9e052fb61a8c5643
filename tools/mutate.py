"""Mutation check: plant classic bugs in the core, one at a time, and see the tests catch each.

Usage: ``python tools/mutate.py [--only NAME ...] [--timeout S] [--list]`` (``make mutate``).

The repository is copied to a temporary directory (sources and tests only; the
working tree is never modified), each mutant is applied there by replacing one
exact snippet of one file (the snippet must occur exactly once), and the tests
relevant to it run in a fresh ``python -m pytest -x -q -p no:cacheprovider``
with the copy first on ``sys.path`` and one persistent XLA compilation cache
(so a run recompiles only what its mutant changed). A mutant is *caught* when pytest reports a
test failure (exit status 1), *survived* when the tests pass (``--jobs`` runs,
default 2, go at a time, each in its own copy); a timeout or any
other status (collection or usage error) is reported as such and, like a
survivor, makes the script exit with status 1. Before the mutants, each test file's
selections (their union) run once on the unmodified copy (``--no-baseline``
skips this): a selection that fails there would make its mutants look caught.

Prints one row per mutant (name, file, outcome, seconds) and the total.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parent.parent
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache",
                                     "build", "dist", "results", "*.png", "*.npz", "*.ckpt", "shared")


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # file, relative to the repository root
    original: str  # exact snippet (occurs exactly once in the file)
    replacement: str
    tests: tuple[str, ...]  # pytest arguments: files / node ids
    select: str = ""  # pytest -k expression ("" = all of ``tests``)


# Left out as equivalent mutants (no test can tell them apart; checked with this script):
# - the Dinkelbach powers' stop_gradient in energy.drop_metrics: by the envelope theorem the
#   derivative through the converged powers is zero (interior: dEE/dp = 0; at a bound: dp/dg = 0);
# - eigh(stop_gradient(S)) in power_min.max_eigenvalue: d(u^T S u) = u^T dS u for a unit
#   eigenvector u, and the top eigenvalue is simple, so no 1/(w_i - w_j) blows up;
# - the WMMSE receiver u = s/J conjugated: it rotates each column of W by a phase, no rate changes;
# - stop_gradient(value) in channel._value_of: value is computed from stop_gradient inputs.
# Left out, undecided: WMMSE's implicit mu derivative without its stop_gradient
# (``-(F - stop_gradient(F))`` -> ``-(F - F)``, i.e. dmu = 0) survives the WMMSE gradient tests
# (finite differences); whether the final rescaling to ||W||_F^2 = 1 makes it equivalent is open.
MUTANTS = (
    # ------------------------------------------------------------------ channel
    Mutant("channel: conjugated effective channel (sign of the phase)", "jaxpass/channel.py",
           "return jax.lax.complex(re, -im)", "return jax.lax.complex(re, im)",
           ("tests/test_channel.py",), "loop_reference and joint_beamforming"),
    Mutant("channel: waveguide loss in power dB (/10 instead of /20)", "jaxpass/channel.py",
           "jnp.exp(-(jnp.log(10.0) / 20.0)", "jnp.exp(-(jnp.log(10.0) / 10.0)",
           ("tests/test_channel.py",), "loop_reference and joint_beamforming"),
    Mutant("channel: sign of the float32 in-waveguide phase derivative", "jaxpass/channel.py",
           "return _value_of(df_frac(m_h, m_l), X * (jnp.asarray(cfg.n_eff, dt) * inv_lam[0]))",
           "return _value_of(df_frac(m_h, m_l), -X * (jnp.asarray(cfg.n_eff, dt) * inv_lam[0]))",
           ("tests/test_channel.py",), "channel_gradient_float32"),
    # --------------------------------------------------------------- projection
    Mutant("projection: clip bound S_x - L delta instead of S_x - (L-1) delta", "jaxpass/geometry.py",
           "upper = jnp.asarray(cfg.length_x, X.dtype) - (L - 1) * delta",
           "upper = jnp.asarray(cfg.length_x, X.dtype) - L * delta",
           ("tests/test_geometry.py",), "projection_equals_independent_qp"),
    Mutant("projection: pool-adjacent-violators merges ordered blocks", "jaxpass/geometry.py",
           "merge = (m > 0) & (below[0] / below[1] > top[0] / top[1])",
           "merge = (m > 0) & (below[0] / below[1] < top[0] / top[1])",
           ("tests/test_geometry.py",), "projection_equals_independent_qp"),
    # -------------------------------------------------------------- beamformers
    Mutant("beamforming: MRT without the conjugate", "jaxpass/beamforming.py",
           'return normalize_power(jnp.conj(H).T, power, "columns")', 'return normalize_power(H.T, power, "columns")',
           ("tests/test_beamforming.py",), "mrt_is_the_matched_filter"),
    Mutant("beamforming: KKT map without the conjugate", "jaxpass/beamforming.py",
           "Hh = jnp.conj(H).T\n    M = jnp.eye(N, dtype=H.dtype)", "Hh = H.T\n    M = jnp.eye(N, dtype=H.dtype)",
           ("tests/test_beamforming.py",), "kkt_with_wmmse_duals"),
    Mutant("beamforming: WMMSE receiver without the noise term", "jaxpass/beamforming.py",
           "J = jnp.diagonal(P) + interference + 1.0", "J = jnp.diagonal(P) + interference",
           ("tests/test_beamforming.py",), "stationary_point"),
    # --------------------------------------------------------------------- ssca
    Mutant("ssca: envelope mode without the stop_gradient on W (the total gradient)", "jaxpass/optimize/ssca.py",
           "W = jax.lax.stop_gradient(W)", "W = W",
           ("tests/test_ssca.py",), "explicit_plus_implicit"),
    # ------------------------------------------------------------------- energy
    Mutant("energy: water level 1/q instead of 1/(q ln 2)", "jaxpass/optimize/energy/dinkelbach.py",
           "level = 1.0 / (_LN2 * jnp.maximum(q, tiny))", "level = 1.0 / jnp.maximum(q, tiny)",
           ("tests/test_energy.py",), "water_filling_is_the_stationary or dinkelbach_matches"),
    Mutant("energy: water-filling clip at 2 P_max", "jaxpass/optimize/energy/dinkelbach.py",
           "jnp.clip(level - inv, 0.0, p_max)", "jnp.clip(level - inv, 0.0, 2.0 * p_max)",
           ("tests/test_energy.py",), "water_filling_is_the_stationary or dinkelbach_matches"),
    Mutant("energy: coupling projection clip at 1.5", "jaxpass/optimize/energy/coupling.py",
           "cands = jnp.clip(split[None, :] + steps[:, None] * direction[None, :], 0.0, 1.0)",
           "cands = jnp.clip(split[None, :] + steps[:, None] * direction[None, :], 0.0, 1.5)",
           ("tests/test_energy.py",), "coupling_step"),
    # ---------------------------------------------------------------- power-min
    Mutant("power-min: smallest instead of largest eigenvalue (N = 2)", "jaxpass/optimize/power_min.py",
           "return scale * (0.5 * (a + d) + root)", "return scale * (0.5 * (a + d) - root)",
           ("tests/test_power_min.py",), "max_eigenvalue"),
    Mutant("power-min: closed-form beamformer without the conjugate phase", "jaxpass/optimize/power_min.py",
           "phase = jnp.where(mag > 0, jnp.conj(hbar) / jnp.where(mag > 0, mag, 1.0), 1.0)",
           "phase = jnp.where(mag > 0, hbar / jnp.where(mag > 0, mag, 1.0), 1.0)",
           ("tests/test_power_min.py",), "closed_form"),
    Mutant("power-min: line-search projection clip at 2 D", "jaxpass/optimize/power_min.py",
           "cand = jnp.clip(x[None, :] + steps[:, None] * d[None, :], 0.0, hi)",
           "cand = jnp.clip(x[None, :] + steps[:, None] * d[None, :], 0.0, 2.0 * hi)",
           ("tests/test_power_min.py",), "lbfgs_respects"),
)


def copy_repo(dest: pathlib.Path, name: str = "repo") -> pathlib.Path:
    """Sources, tests and project files of the repository under ``dest/name``."""
    repo = dest / name
    repo.mkdir()
    for name in ("jaxpass", "tests"):
        shutil.copytree(ROOT / name, repo / name, ignore=COPY_IGNORE)
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, repo / name)
    return repo


def _env(repo: pathlib.Path) -> dict:
    # one persistent XLA compilation cache for all runs: a mutant recompiles only the
    # computations it changes (the cache key is the compiled program itself)
    env = dict(os.environ, PYTHONPATH=str(repo), PYTHONDONTWRITEBYTECODE="1",
               JAX_COMPILATION_CACHE_DIR=str(repo.parent / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_import_path(repo: pathlib.Path) -> None:
    """The tests must import ``jaxpass`` from the copy, not from an installed checkout."""
    out = subprocess.run([sys.executable, "-c", "import jaxpass; print(jaxpass.__file__)"], cwd=repo, env=_env(repo),
                         capture_output=True, text=True, check=True).stdout.strip()
    if not pathlib.Path(out).resolve().is_relative_to(repo.resolve()):
        raise SystemExit(f"jaxpass imports from {out}, not from the copy {repo}")


def run_tests(repo: pathlib.Path, tests, select: str, timeout: float) -> tuple[str, float, str]:
    """``(status, seconds, output tail)``; status: passed / failed / timeout / error N."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    if select:
        cmd += ["-k", select]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=repo, env=_env(repo), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    seconds = time.perf_counter() - t0
    tail = (res.stdout + res.stderr)[-1500:]
    status = {0: "passed", 1: "failed"}.get(res.returncode, f"error {res.returncode}")
    return status, seconds, tail


def apply(repo: pathlib.Path, mutant: Mutant) -> str:
    """Apply ``mutant`` to the copy; returns the original file text (to restore)."""
    path = repo / mutant.path
    text = path.read_text()
    count = text.count(mutant.original)
    if count != 1:
        raise SystemExit(f"{mutant.name}: snippet found {count} times in {mutant.path} (expected once):\n"
                         f"{mutant.original}")
    path.write_text(text.replace(mutant.original, mutant.replacement))
    return text


def baseline_selections(mutants):
    """One ``(tests, -k)`` per test file set: the union of its mutants' selections."""
    groups = {}
    for m in mutants:
        groups.setdefault(m.tests, []).append(m.select)
    return [(tests, "" if "" in sel else " or ".join(f"({k})" for k in dict.fromkeys(sel)))
            for tests, sel in groups.items()]


def run_mutant(repo: pathlib.Path, mutant: Mutant, timeout: float):
    original = apply(repo, mutant)
    try:
        status, seconds, _ = run_tests(repo, mutant.tests, mutant.select, timeout)
    finally:
        (repo / mutant.path).write_text(original)
    outcome = {"failed": "caught", "passed": "SURVIVED"}.get(status, status.upper())
    print(f"  {outcome:9s} {seconds:6.1f} s  {mutant.name}", flush=True)
    return mutant.name, mutant.path, outcome, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, metavar="WORD",
                        help="run the mutants whose name contains any of these words")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per test run (default 600)")
    parser.add_argument("--jobs", type=int, default=2, help="test runs at a time, each in its own copy (default 2)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmodified copy")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if args.only is None or any(w in m.name for w in args.only)]
    if args.list or not mutants:
        for m in mutants:
            print(f"{m.name}  [{m.path}; {' '.join(m.tests)} -k '{m.select}']")
        return 0 if mutants else 2
    start = time.perf_counter()
    jobs = max(1, min(args.jobs, len(mutants)))
    with tempfile.TemporaryDirectory(prefix="jaxpass-mutate-") as tmp:
        repos = [copy_repo(pathlib.Path(tmp), f"repo{i}") for i in range(jobs)]
        check_import_path(repos[0])
        for m in mutants:  # every snippet present once, before spending time on tests
            apply(repos[0], m)
            (repos[0] / m.path).write_text((ROOT / m.path).read_text())
        with ThreadPoolExecutor(jobs) as pool:
            if not args.no_baseline:
                sel = baseline_selections(mutants)
                results = pool.map(lambda i: run_tests(repos[i % jobs], *sel[i], args.timeout), range(len(sel)))
                for (tests, select), (status, seconds, tail) in zip(sel, results):
                    print(f"baseline {' '.join(tests)} -k '{select}': {status} ({seconds:.1f} s)", flush=True)
                    if status != "passed":
                        print(tail)
                        return 1
            free = queue.Queue()
            for r in repos:
                free.put(r)

            def one(m):
                repo = free.get()
                try:
                    return run_mutant(repo, m, args.timeout)
                finally:
                    free.put(repo)

            rows = list(pool.map(one, mutants))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'mutant':{width}s}  {'file':38s}  {'outcome':8s}  seconds")
    for name, path, outcome, seconds in rows:
        print(f"{name:{width}s}  {path:38s}  {outcome:8s}  {seconds:7.1f}")
    caught = sum(r[2] == "caught" for r in rows)
    print(f"\n{caught}/{len(rows)} mutants caught in {time.perf_counter() - start:.0f} s ({jobs} at a time)")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
