"""Matplotlib figures (headless: the Agg backend is selected on import).

Every function draws on a given ``matplotlib.axes.Axes`` (or creates one) and
returns it, so callers compose figures freely.
"""

from __future__ import annotations

from jaxpass._extras import require

# the numerical core does not need matplotlib; figures do (the [plot] extra): one clear line without it
matplotlib = require("matplotlib", "plot", "jaxpass.plotting")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxpass.config import PassConfig  # noqa: E402


def plot_layout(cfg: PassConfig, X, users, ax=None, title: str | None = None):
    """Top view of one drop: waveguides (lines), pinches (dots), users (stars) [m].

    Args:
      cfg: the scenario.
      X: ``(N, L)`` pinch positions.
      users: ``(K, 2)`` user coordinates.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    X, users = np.asarray(X), np.asarray(users)
    lanes = np.asarray(cfg.lane_y)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, y in enumerate(lanes):
        c = colors[n % len(colors)]
        ax.plot([0, float(cfg.length_x)], [y, y], color=c, lw=2, alpha=0.35, solid_capstyle="butt")
        ax.plot(X[n], np.full(X.shape[1], y), "o", color=c, ms=4, label="pinches" if n == 0 else None)
        ax.plot([0], [y], "s", color=c, ms=6)  # feed point
    ax.plot(users[:, 0], users[:, 1], "*", color="black", ms=11, label="users")
    for k, (ux, uy) in enumerate(users):
        ax.annotate(f"{k}", (ux, uy), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlim(-0.5, float(cfg.length_x) + 0.5)
    ax.set_ylim(-0.5, float(cfg.width_y) + 0.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(title or f"layout: N={cfg.num_waveguides} waveguides, L={cfg.num_pinches} pinches, K={cfg.num_users} users")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8, frameon=False)
    return ax


def plot_method_rates(rates: dict, ax=None, ylabel: str = "sum rate [bps/Hz]", title: str | None = None):
    """Per-method distribution over drops: horizontal box plots, the mean marked (triangle) and in the label.

    Method names (with the mean) go on the y axis, one per row, so long names
    never overlap (horizontal text, any number of methods); the first method is on top.
    A long ``title`` is wrapped to the panel.

    Args:
      rates: ``{method name: 1-D array of per-drop values}``.
      ylabel: the quantity (drawn on the x axis, the value axis).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 0.5 * len(rates) + 1.5))
    names = list(rates)
    data = [np.asarray(rates[n], dtype=float) for n in names]
    pos = np.arange(len(names), 0, -1)  # first method on top
    ax.boxplot(data, positions=pos, orientation="horizontal", showmeans=True, widths=0.6)
    ax.set_yticks(pos, [f"{n}\n(mean {d.mean():.1f})" for n, d in zip(names, data)], fontsize=8)
    ax.set_xlabel(ylabel)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(_wrap(title, 34), fontsize=10)
    return ax


def _wrap(text: str, width: int) -> str:
    """Wrap a title at ``", "`` into lines of about ``width`` characters (a part longer than that stays whole)."""
    lines: list = []
    for part in text.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            if lines:
                lines[-1] += ","
            lines.append(part)
    return "\n".join(lines)


def save_figure(fig, path):
    """Save ``fig`` to ``path`` atomically (unique temp name then rename) and close it; returns ``path``.

    No half-written PNG is left behind; inside an open
    :func:`jaxpass.runtime.io.result_set` covering ``path`` the figure is
    part of that set (it appears at ``path`` when the set commits).
    """
    import os

    from jaxpass.runtime.io import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return os.fspath(path)
