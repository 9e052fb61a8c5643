"""Differentiable decoding of network outputs into feasible ``(X, W)`` (JB §IV-C; docs/model.md §3.4, §4).

Pure functions of ``(cfg, outputs...)``: any number of leading batch axes, and
they work under a caller's ``jax.jit(jax.vmap(...))`` with ``cfg`` passed as an
argument (its physical fields may be traced). Shapes are checked always (one
line ``ValueError`` naming the argument); nothing here prints or converts to
NumPy.

* positions (JB eqs. (53)-(55)): ``x_end = L delta + sigmoid(a) (S_x - L delta)``,
  spacing weights ``z = sigmoid(b)``, ``omega_n = x_end_n P(z_n, delta / x_end_n)``,
  ``X = cumsum(omega)`` -- always inside ``[0, S_x]`` with every gap ``>= delta``
  (``jaxpass.positions_from_spacings``);
* KDL duals: ``lam = lam_max P / (K sigma^2) sigmoid(c)`` [1/|H|^2] and the
  shares ``p = mu / sum(mu)``, ``mu = sigmoid(d)`` (JB eq. (56)); the scale
  ``P / (K sigma^2)`` is where WMMSE's duals sit (``lam_k ~ P/(K sigma^2)`` on the
  JB preset, the MMSE regulariser of RZF), so ``lam_max = 2`` puts a zero logit on it;
* the KKT beamformer (JB eq. (44), docs/model.md §3.2) from ``beamforming.kkt``,
  which meets ``||W||_F^2 = P`` with equality;
* black box: ``W = Re + j Im`` of the predicted matrix scaled to ``||W||_F^2 = P``;
* the short-term duals (TT eq. (17)): ``lam = P / (K sigma^2) softplus(c) / ln 2``
  (a zero logit gives the MMSE scale, no upper bound) and ``share = softmax(d)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxpass import beamforming as bf
from jaxpass._checks import check_shape
from jaxpass.channel import effective_channel
from jaxpass.config import PassConfig
from jaxpass.geometry import positions_from_spacings
from jaxpass.metrics import sum_rate

__all__ = [
    "blackbox_decode",
    "channels",
    "check_model_config",
    "direct_beamformer",
    "kdl_decode",
    "kdl_duals",
    "kkt_beamformer",
    "mean_snr",
    "positions",
    "predict",
    "short_term_duals",
    "sum_rate_loss",
    "sum_rates",
]


def _dims(cfg: PassConfig):
    return cfg.num_users, cfg.num_waveguides, cfg.num_pinches


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _batched(fn, n_core: int, *arrays):
    """Apply the single-drop ``fn`` over the common leading axes of ``arrays`` (each with ``n_core[i]`` core dims)."""
    batch = jnp.broadcast_shapes(*(a.shape[: a.ndim - n] for a, n in zip(arrays, n_core)))
    flat = [jnp.broadcast_to(a, batch + a.shape[a.ndim - n:]).reshape((-1,) + a.shape[a.ndim - n:])
            for a, n in zip(arrays, n_core)]
    out = jax.vmap(fn)(*flat)
    return jax.tree.map(lambda o: o.reshape(batch + o.shape[1:]), out)


def check_model_config(model, cfg: PassConfig):
    """One-line ``ValueError`` when ``cfg``'s ``(K, N, L)`` differ from those ``model`` was built with."""
    if not isinstance(cfg, PassConfig):
        raise TypeError(f"cfg must be a PassConfig, got {type(cfg).__name__}")
    have = _dims(cfg)
    want = (model.num_users, model.num_waveguides, model.num_pinches)
    if have != want:
        raise ValueError(f"cfg has (num_users, num_waveguides, num_pinches) = {have} but "
                         f"{type(model).__name__} was built for {want}")


# --------------------------------------------------------------- positions
def positions(cfg: PassConfig, x_end, spacing):
    """Feasible positions from logits (JB eqs. (53)-(55)).

    Args:
      x_end: ``(..., N)`` logits of the last pinch's position (sigmoid, (53)).
      spacing: ``(..., N, L)`` logits of the spacing weights (sigmoid, (54)-(55)).

    Returns:
      ``(..., N, L)`` positions [m]: ``X[n, 0] >= delta``, gaps ``>= delta``,
      ``X[n, L-1] = x_end_n <= S_x``. Differentiable everywhere.
    """
    K, N, L = _dims(cfg)
    x_end, spacing = _float(x_end), _float(spacing)
    check_shape("x_end", x_end, (N,), batch=True)
    check_shape("spacing", spacing, (N, L), batch=True)
    return positions_from_spacings(cfg, jax.nn.sigmoid(x_end), jax.nn.sigmoid(spacing))


# ------------------------------------------------------------- beamformers
def kdl_duals(cfg: PassConfig, lam, mu, lam_max: float = 2.0):
    """KDL duals from logits: ``lam = lam_max P/(K sigma^2) sigmoid(lam_logit)`` [1/|H|^2],
    ``share = sigmoid(mu) / sum sigmoid(mu)`` (JB eq. (56); shares sum to one).

    Args:
      lam, mu: ``(..., K)`` logits. lam_max: dimensionless scale (> 0).

    Returns:
      ``(lam (..., K) >= 0, share (..., K) >= 0 summing to 1)``.
    """
    K = cfg.num_users
    lam, mu = _float(lam), _float(mu)
    check_shape("lam", lam, (K,), batch=True)
    check_shape("mu", mu, (K,), batch=True)
    scale = jnp.asarray(cfg.power / (K * cfg.noise_power), lam.dtype)
    weights = jax.nn.sigmoid(mu)
    return lam_max * scale * jax.nn.sigmoid(lam), weights / jnp.sum(weights, axis=-1, keepdims=True)


def short_term_duals(cfg: PassConfig, raw):
    """Short-term network logits ``raw (..., K, 2)`` -> ``(lam, share)`` (TT eq. (17); module docstring).

    ``lam = P/(K sigma^2) softplus(raw[..., 0]) / ln 2 >= 0`` [1/|H|^2] and
    ``share = softmax(raw[..., 1]) >= 0`` summing to one.
    """
    K = cfg.num_users
    raw = _float(raw)
    check_shape("raw", raw, (K, 2), batch=True)
    scale = jnp.asarray(cfg.power / (K * cfg.noise_power), raw.dtype)
    lam = scale * jax.nn.softplus(raw[..., 0]) / math.log(2.0)
    return lam, jax.nn.softmax(raw[..., 1], axis=-1)


def mean_snr(cfg: PassConfig, H):
    """Mean per-user SNR ``P ||H||_F^2 / (K sigma^2)`` of ``H (..., K, N)``, shape ``(...)`` (dimensionless)."""
    K = cfg.num_users
    check_shape("H", H, (K, None), batch=True)
    nrm2 = jnp.sum(jnp.real(H) ** 2 + jnp.imag(H) ** 2, axis=(-2, -1))
    return nrm2 * jnp.asarray(cfg.power / (K * cfg.noise_power), nrm2.dtype)


def kkt_beamformer(cfg: PassConfig, H, lam, share):
    """KKT beamformer (JB eq. (44), docs/model.md §3.2) for ``H (..., K, N)``, ``lam, share (..., K)``.

    Returns ``W (..., N, K)`` with ``||W||_F^2 = cfg.power`` (shares renormalised).
    """
    K, N, _ = _dims(cfg)
    check_shape("H", H, (K, N), batch=True)
    check_shape("lam", lam, (K,), batch=True)
    check_shape("share", share, (K,), batch=True)
    power = cfg.power
    return _batched(lambda h, a, s: bf.kkt(h, a, s, power), (2, 1, 1), jnp.asarray(H), jnp.asarray(lam),
                    jnp.asarray(share))


def direct_beamformer(cfg: PassConfig, w):
    """Black-box beamformer: ``w (..., N, K, 2)`` (real, imaginary) -> ``W (..., N, K)`` complex, ``||W||_F^2 = P``."""
    K, N, _ = _dims(cfg)
    w = _float(w)
    check_shape("w", w, (N, K, 2), batch=True)
    W = jax.lax.complex(w[..., 0], w[..., 1])
    power = cfg.power
    return _batched(lambda m: bf.normalize_power(m, power, "total"), (2,), W)


# ----------------------------------------------------------------- drops
def channels(cfg: PassConfig, X, users):
    """Effective channels ``H (..., K, N)`` for ``X (..., N, L)`` and ``users (..., K, 2)`` (broadcast batch)."""
    K, N, L = _dims(cfg)
    check_shape("X", X, (N, L), batch=True)
    check_shape("users", users, (K, 2), batch=True)
    X, users = _float(X), _float(users)
    return _batched(lambda x, u: effective_channel(cfg, x, u), (2, 2), X, users.astype(X.dtype))


def sum_rates(cfg: PassConfig, X, W, users):
    """Sum rate [bps/Hz] of each drop under the true channel ``jp.effective_channel``, shape ``(...)``."""
    H = channels(cfg, X, users)
    check_shape("W", W, (cfg.num_waveguides, cfg.num_users), batch=True)
    noise = cfg.noise_power
    return _batched(lambda h, w: sum_rate(h, w, noise), (2, 2), H, jnp.asarray(W))


def kdl_decode(cfg: PassConfig, raw, lam_max: float = 2.0):
    """KDL raw outputs -> ``(X (..., N, L), W (..., N, K))`` (JB Alg. 2 lines 11-13).

    ``raw``: dict with ``x_end (..., N)``, ``spacing (..., N, L)``, ``lam (..., K)``,
    ``mu (..., K)`` logits and ``users (..., K, 2)`` [m]. X from :func:`positions`,
    the channel of the decoded X, then the KKT map with :func:`kdl_duals`.
    """
    X = positions(cfg, raw["x_end"], raw["spacing"])
    lam, share = kdl_duals(cfg, raw["lam"], raw["mu"], lam_max)
    H = channels(cfg, X, raw["users"])
    return X, kkt_beamformer(cfg, H, lam.astype(X.dtype), share.astype(X.dtype))


def blackbox_decode(cfg: PassConfig, raw):
    """Black-box raw outputs (``x_end``, ``spacing``, ``w (..., N, K, 2)``) -> ``(X, W)``, W at full budget."""
    return positions(cfg, raw["x_end"], raw["spacing"]), direct_beamformer(cfg, raw["w"])


# ------------------------------------------------------------ model level
def predict(model, cfg: PassConfig, users):
    """``model.decode(cfg, model(users))``: ``users (B, K, 2)`` -> ``(X (B, N, L), W (B, N, K))``."""
    check_model_config(model, cfg)  # fail before the forward pass
    return model.decode(cfg, model(users))


def sum_rate_loss(model, cfg: PassConfig, users):
    """Unsupervised loss (JB §IV): ``-mean sum rate`` over the batch and ``{"sum_rate": (B,)}``.

    The sum rate of the decoded ``(X, W)`` under the true channel
    ``jp.effective_channel(cfg, X, users)`` [bps/Hz].
    """
    X, W = predict(model, cfg, users)
    r = sum_rates(cfg, X, W, users)
    return -jnp.mean(r), {"sum_rate": r}
