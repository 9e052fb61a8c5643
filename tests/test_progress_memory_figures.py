"""Progress output, memory estimates and refusals, figure layouts, and the README's list of written files."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxpass.cli import main
from jaxpass.experiments import memory
from jaxpass.experiments.cli_args import UserError
from jaxpass.runtime import progress

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


@pytest.fixture(autouse=True)
def _not_quiet():
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


# ------------------------------------------------------------------ progress
def test_plain_progress_is_occasional_lines_without_carriage_returns():
    s = _Stream(tty=False)
    with progress.Progress("x", 100, stream=s, interval=3600) as bar:
        for i in range(1, 101):
            bar.update(i, "step")
    lines = s.getvalue().splitlines()
    assert "\r" not in s.getvalue()
    assert len(lines) == 2  # the first and the last; the rest within the interval
    assert lines[0].startswith("[x] 1/100 [") and lines[-1].startswith("[x] 100/100 [####################] step")


def test_tty_progress_redraws_in_place_and_ends_the_line():
    s = _Stream(tty=True)
    with progress.Progress("x", 4, stream=s, title="scheme", unit="outer") as bar:
        for i in range(1, 3):
            bar.update(i, "obj")
    out = s.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n") and out.count("\n") == 1
    assert "[x] scheme: outer 2/4 [##########          ] obj" in out


def test_progress_shows_the_fraction_done_and_the_time_left():
    s = _Stream(tty=False)
    with progress.Progress("train", 4, stream=s, interval=0) as bar:
        for i in range(1, 5):
            time.sleep(0.02)
            bar.update(i, "loss 1")
    lines = s.getvalue().splitlines()
    assert "left" not in lines[0] and "left" not in lines[-1]  # no rate yet; done
    assert re.fullmatch(r"\[train\] 2/4 \[#+ *\] loss 1 \d+\.\d s, 50 % done, ~0\.\d s left", lines[1]), lines


def test_phase_ticks_and_reports_its_time():
    s = _Stream(tty=False)
    bar = progress.Progress("t", stream=s, interval=0.05)
    with bar.phase("compiling"):
        time.sleep(0.3)
    lines = s.getvalue().splitlines()
    assert any(re.fullmatch(r"\[t\] compiling \.\.\. \d+\.\d s", ln) for ln in lines)  # ticks while it runs
    assert re.fullmatch(r"\[t\] compiling: done in 0\.\d s", lines[-1])


def test_quiet_silences_progress_and_log(capsys):
    progress.set_quiet(True)
    s = _Stream(tty=True)
    bar = progress.Progress("q", 3, stream=s)
    bar.update(1)
    with bar.phase("compiling"):
        pass
    bar.close()
    progress.log("hello")
    assert s.getvalue() == "" and capsys.readouterr().err == ""


def test_compile_and_run_shows_phases_and_matches_io():
    import jax.numpy as jnp

    from jaxpass.runtime import io as xio

    s = _Stream(tty=False)
    bar = progress.Progress("p", stream=s)
    x = jnp.arange(4.0)
    out, seconds, compile_s = progress.compile_and_run(lambda v: v * 2, x, progress=bar, what="double", repeats=2)
    ref = xio.compile_and_run(lambda v: v * 2, x)[0]
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
    assert seconds >= 0 and compile_s > 0
    text = s.getvalue()
    assert "[p] double: compiling: done in" in text and "[p] double: running (1 + 2 timed calls): done in" in text


# ------------------------------------------------------------------ memory
def test_check_fits_names_a_value_that_fits():
    def need(d):
        return 1000 * d

    assert memory.check_fits(need, 1000, flag="--drops", available=10**8) == 10**6
    with pytest.raises(UserError) as err:
        memory.check_fits(need, 10**6, flag="--drops", available=10**8)
    assert str(err.value) == ("--drops 1000000 needs ~954 MiB of memory, 95.4 MiB available; "
                              "use --drops <= 100000 or run in batches")
    assert need(100000) <= 10**8
    with pytest.raises(UserError, match=r"^--grid-spacing 1e-08 needs ~.*; use --grid-spacing >= 1e-07$"):
        memory.check_fits(lambda sp: 1.0 / sp, 1e-8, flag="--grid-spacing", available=10**7, decreasing=True,
                          integer=False, hint="")
    with pytest.raises(UserError, match="no value of --drops fits"):
        memory.check_fits(lambda d: 10**9 + d, 5, flag="--drops", available=10**6)


def test_check_fits_names_the_size_that_dominates(monkeypatch, tmp_path, capsys):
    """``tune --steps 1e9 --drops 2``: the steps, not the drops, blow the estimate; the message says so."""
    def need(drops, steps):
        return 1000 * drops + 100 * drops * steps

    def check(drops, steps):
        return memory.check_fits(lambda d: need(d, steps), drops, flag="--drops", available=10**6,
                                 others={"--steps": (lambda t: need(drops, t), steps)})

    with pytest.raises(UserError, match=r"^--steps 1000000000 needs .* \(with --drops 2\), .*; it dominates the "
                                        r"estimate: use --steps <= 4900$"):
        check(2, 10**9)
    with pytest.raises(UserError, match=r"^--drops 100000 needs .*; use --drops <= 500 or run in batches$"):
        check(10**5, 10)  # the drops dominate: reducing --steps alone would not fit
    monkeypatch.setenv(memory.ENV_AVAILABLE, "8G")
    assert main(["tune", "--steps", "1000000000", "--drops", "2", "--out", str(tmp_path / "o")]) == 2
    assert "it dominates the estimate: use --steps <= " in capsys.readouterr().err



def test_unknown_available_memory_refuses_nothing(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    assert memory.check_fits(lambda d: 1000 * d, 10**9, flag="--drops") == 10**12


def test_available_bytes_override_and_host(monkeypatch):
    monkeypatch.setenv(memory.ENV_AVAILABLE, "8G")
    assert memory.available_bytes() == 8 * 2**30
    monkeypatch.setenv(memory.ENV_AVAILABLE, "500M")
    assert memory.available_bytes() == 500 * 2**20
    for bad in ("lots", "-5G", "0", "inf", "nanM"):  # a size is a finite number > 0
        monkeypatch.setenv(memory.ENV_AVAILABLE, bad)
        with pytest.raises(UserError, match="JAXPASS_AVAILABLE_MEMORY must be a positive size"):
            memory.available_bytes()
    monkeypatch.delenv(memory.ENV_AVAILABLE)
    host = memory.host_available_bytes()
    assert host is None or host > 0


def test_header_note_only_for_large_estimates():
    assert memory.header_note(100 * memory.MiB) == ""
    assert memory.header_note(3 * memory.GiB) == ", peak memory ~3 GiB (estimate)"


def _demo_estimate(drops):
    return memory.demo_bytes(4, 4, 8, drops, tune_steps=300)


@pytest.mark.parametrize("argv,flag", [
    (["demo", "--drops", "50000000"], "--drops"),
    (["ee", "--grid-spacing", "1e-8"], "--grid-spacing"),
    (["ee", "--grid-points", "2000000000"], "--grid-points"),
    (["ee", "--drops", "2000000000"], "--drops"),
    (["tune", "--drops", "50000000"], "--drops"),
    (["powermin", "--drops", "50000000"], "--drops"),
    (["reproduce", "table1", "--drops", "50000000"], "--drops"),
    (["reproduce", "sweeps", "--drops", "50000000"], "--drops"),
    (["ssca", "--blocks", "10000000"], "--blocks"),
    (["train", "--batch-size", "20000000", "--train-drops", "40000000"], "--batch-size"),
])
def test_cli_refuses_runs_that_cannot_fit_before_compiling(argv, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(memory.ENV_AVAILABLE, "8G")
    out = tmp_path / "out"
    t0 = time.perf_counter()
    assert main(argv + ["--out", str(out)]) == 2
    assert time.perf_counter() - t0 < 20  # nothing compiled (a compilation of any of these takes longer)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    m = re.fullmatch(rf"jaxpass \w+: error: {flag} \S+ needs ~[\d.]+ [GT]iB of memory, 8 GiB available; "
                     rf"use {flag} ([<>]=) (\S+)( or run in batches)?", err)
    assert m, err
    assert not out.exists() or not any(out.iterdir())


def test_demo_refusal_suggests_the_largest_fitting_drops(monkeypatch, capsys):
    monkeypatch.setenv(memory.ENV_AVAILABLE, "22G")
    assert main(["demo", "--drops", "50000000"]) == 2
    err = capsys.readouterr().err
    best = int(re.search(r"--drops <= (\d+) or run in batches", err).group(1))
    assert _demo_estimate(best) <= 22 * 2**30 < _demo_estimate(int(best * 1.02) + 1)


def test_header_line_carries_a_large_estimate(tmp_path, monkeypatch, capsys):
    # the estimate in the header: ee's grid at 1e-7 m needs ~10 GiB; stop the run right after the header
    from jaxpass.experiments import ee

    monkeypatch.setenv(memory.ENV_AVAILABLE, "1T")

    def stop(*a, **k):
        raise UserError("stopped after the header")

    monkeypatch.setattr(ee, "run_all", stop)
    assert main(["ee", "--grid-spacing", "1e-7", "--held-out-drops", "0", "--out", str(tmp_path / "e")]) == 2
    header = capsys.readouterr().out.splitlines()[0]
    assert re.search(r", peak memory ~[\d.]+ GiB \(estimate\)$", header), header


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_demo_estimate_bounds_the_measured_peak():
    """Peak RSS growth of a mid-size demo (no tuning) against the estimate: within a factor of a few."""
    drops = 20000
    # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak across exec)
    code = ("import jax\n"
            "from jaxpass.experiments import demo\n"
            "def hwm():\n"
            "    return int(next(ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')).split()[1]) * 1024\n"
            "cfg = demo.preset('joint_beamforming')\n"
            "base = hwm()\n"
            f"demo.run_demo(cfg, drops={drops}, tune_steps=0, wmmse_iterations=2)\n"
            "print(hwm() - base)\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    grown = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                               env=env).stdout.split()[-1])
    est = memory.demo_bytes(4, 4, 8, drops, tune_steps=0)
    assert grown <= est <= 8 * grown, (grown, est)


# ------------------------------------------------------------------ figures
def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _texts(ax):
    """The drawn tick labels (ticks inside the view), title and axis labels of ``ax`` (non-empty)."""
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    items = [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]
    items += [t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1]
    items += [ax.title, ax.xaxis.label, ax.yaxis.label]
    return [t for t in items if t.get_visible() and t.get_text().strip()]


def _summary(ee_value, history=None):
    s = {"mean_ee": ee_value, "ms_per_drop": 1.0}
    if history is not None:
        s["history"] = history
    return s


def _ee_results(*keys):
    out = {}
    if "convergence" in keys:
        out["convergence"] = {4: {"dynamic_ee_tunable": _summary(3.0, [1.0, 2.0, 3.0]),
                                  "static_ee_tunable": _summary(2.5, [1.0, 2.0, 2.5])}}
    if "power" in keys:
        out["power"] = {"powers_dbm": [0.0, 10.0],
                        "schemes": {"dynamic_ee_tunable": [_summary(1.0), _summary(2.0)],
                                    "fixed_antenna": [_summary(0.5), _summary(0.7)]}}
    if "elements" in keys:
        out["elements"] = {"element_counts": [2, 4], "schemes": {"static_ee_fixed": [_summary(1.0), _summary(1.5)]}}
    if "length" in keys:
        out["length"] = {"lengths_m": [10.0, 20.0], "schemes": {"static_ee_tunable": [_summary(2.0), _summary(1.0)]}}
    return out


@pytest.mark.parametrize("keys", [("convergence",), ("power",), ("convergence", "length"),
                                  ("convergence", "power", "elements"), ("convergence", "power", "elements", "length")])
def test_ee_figure_draws_one_panel_per_figure_with_data(keys):
    from jaxpass.experiments import ee
    from jaxpass.plotting import plt

    fig = ee.plot_figures(_ee_results(*keys), "t")
    try:
        axes = fig.get_axes()
        assert len(axes) == len(keys)
        titles = {"convergence": "Fig. 1", "power": "Fig. 2", "elements": "Fig. 3", "length": "Fig. 4"}
        assert [ax.get_title().split(":")[0] for ax in axes] == [titles[k] for k in keys]
        for ax in axes:
            assert ax.get_lines() and all(len(line.get_xdata()) >= 2 for line in ax.get_lines())
        fig.canvas.draw()
        boxes = [(i, t.get_window_extent()) for i, ax in enumerate(axes) for t in _texts(ax)]
        assert not [(i, j) for n, (i, a) in enumerate(boxes) for j, b in boxes[n + 1:] if i != j and _overlaps(a, b)]
    finally:
        plt.close(fig)


def test_ee_figure_skips_panels_without_data():
    from jaxpass.experiments import ee
    from jaxpass.plotting import plt

    res = _ee_results("convergence")
    res["power"] = {"powers_dbm": [0.0], "schemes": {"dynamic_ee_tunable": []}}  # requested, nothing in it
    res["convergence"][8] = {"static_ee_tunable": {"mean_ee": 1.0, "history": []}}
    res["monotone"], res["wall_s"] = [], 1.0
    fig = ee.plot_figures(res)
    assert len(fig.get_axes()) == 1 and len(fig.get_axes()[0].get_lines()) == 2
    plt.close(fig)
    fig = ee.plot_figures({"wall_s": 1.0})
    assert len(fig.get_axes()) == 1 and not fig.get_axes()[0].axison and not fig.get_axes()[0].get_lines()
    plt.close(fig)


@pytest.mark.parametrize("tuned", [False, True])
def test_demo_figure_labels_do_not_overlap(tuned):
    from jaxpass.experiments import demo
    from jaxpass.geometry import uniform_positions
    from jaxpass.plotting import plt

    cfg = demo.preset("joint_beamforming")
    rng = np.random.default_rng(0)
    users = rng.uniform([0, 0], [20, 10], size=(3, cfg.num_users, 2))
    X = np.asarray(uniform_positions(cfg))
    names = ["MRT", "ZF", "RZF", "WMMSE"] + (["tuned + ZF"] if tuned else [])
    results = [demo.MethodResult(n, rng.normal(10 * i + 5, 2, 3), 0.1, 1.0) for i, n in enumerate(names)]
    fig = demo.demo_figure(cfg, results, users, X, preset_name="joint_beamforming",
                           tuned=np.repeat(X[None], 3, 0) if tuned else None)
    try:
        axes = fig.get_axes()
        assert len(axes) == (3 if tuned else 2)
        for ax in axes[:-1]:
            assert ax.get_lines()  # waveguides, pinches, users
        rates = axes[-1]
        assert len(rates.patches) + len(rates.get_lines()) >= len(names)  # a box (lines) per method
        fig.canvas.draw()
        labels = [t for t in _texts(rates) if t.get_text().split("\n")[0] in names]
        assert sorted(t.get_text().split("\n")[0] for t in labels) == sorted(names)
        extents = [t.get_window_extent() for t in labels]
        assert not [1 for n, a in enumerate(extents) for b in extents[n + 1:] if _overlaps(a, b)]
        boxes = [(i, t.get_text(), t.get_window_extent()) for i, ax in enumerate(axes) for t in _texts(ax)]
        clashes = [(s, u) for n, (i, s, a) in enumerate(boxes) for j, u, b in boxes[n + 1:]
                   if _overlaps(a, b) and not (i == j and s == u)]
        assert not clashes
    finally:
        plt.close(fig)


# ------------------------------------------------------------------ CLI: quiet, progress, README's files
def _readme_files(command: str) -> list:
    """The files the README's "Command line" section says ``command`` writes (``\\`cmd\\` a, b, c;``)."""
    text = " ".join(open(README).read().split())
    m = re.search(rf"`{re.escape(command)}` ([\w./]+(?:, [\w./]+)*)[;.]", text)
    assert m, f"README names no files for {command}"
    return m.group(1).split(", ")


def test_readme_lists_files_for_every_command():
    for command in ("demo", "tune", "reproduce table1", "reproduce sweeps", "ee", "powermin", "ssca", "train"):
        assert _readme_files(command)
    assert _readme_files("demo") == ["demo.json", "demo.md", "demo.png"]


def test_demo_quiet_keeps_stdout_and_silences_stderr(tmp_path, capsys):
    argv = ["demo", "--preset", "power_min_blockage", "--drops", "3", "--wmmse-iterations", "3"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    loud = capsys.readouterr()
    assert main(argv + ["--quiet", "--out", str(tmp_path / "b")]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == ""
    assert "[demo] MRT: compiling: done in" in loud.err and "[demo] WMMSE: running" in loud.err
    assert "\r" not in loud.err  # stderr is not a terminal here: plain lines

    def shape(text):  # stdout without the numbers and the folder
        return re.sub(r"[\d.]+", "#", text.replace(str(tmp_path / "a"), "OUT").replace(str(tmp_path / "b"), "OUT"))

    assert shape(loud.out) == shape(quiet.out)
    for name in _readme_files("demo"):
        assert (tmp_path / "b" / name).is_file(), name


@pytest.mark.slow
def test_tune_shows_phases_and_writes_the_readme_files(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["tune", "--preset", "power_min_blockage", "--beamformer", "rzf", "--drops", "2", "--steps", "2",
                 "--starts", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"\[tune\] 2 drops: compiling: done in [\d.]+ s", err)
    assert re.search(r"\[tune\] 2 drops: running: done in [\d.]+ s", err)
    for name in _readme_files("tune"):
        assert (out / name).is_file(), name
