"""A learned model that works under the true physics: a student of the physics-guided search.

Why not the papers' decoding
----------------------------
With the real wavenumber the phase of pinch ``(n, l)`` at user ``k``,
``kappa (r[k,n,l] + n_eff x[n,l])``, turns once every 4-25 mm of movement
(docs/model.md §1-§2), so the sum rate as a function of free positions is a
landscape of millions of local optima. A network that outputs positions
directly (the KDL decoding, JB (53)-(55)) lands on a random phase pattern;
trained unsupervised it follows a noise-dominated gradient. The structure of
good layouts is known, though (:mod:`jaxpass.optimize.positions`): waveguide
``n`` is dedicated to one user ``a_n`` and its ``L`` pinches are placed around
that user's ``x`` so that their phases add coherently there
(:func:`jaxpass.optimize.positions.aligned_positions`, an exact Newton solve
per pinch). What remains is a *discrete* choice -- the assignment ``a`` (a
row of :func:`~jaxpass.optimize.positions.assignment_table`, 24 for
K = N = 4) and the nominal spacing ``s`` (one of ``spacings``) -- which
``tune_positions`` makes by scoring all ``C = A x S`` candidates (~72) with the
beamformer. Which candidate wins depends partly on the geometry (users close
to a lane, users at a similar ``x``: smooth, learnable) and partly on the
exact interference phases (chaotic on the mm scale: not learnable, but cheap
to *evaluate* once a layout is decoded).

The model
---------
:class:`AlignedNet` therefore learns to *rank* the candidates and the decode
evaluates only its ``top_k`` best (default 4) exactly:

1. user tokens ``e_k = MLP(x_k / S_x, y_k / S_y, (y_k - y_n) / S_y,
   log((h^2 + (y_k - y_n)^2) / h^2) for every lane n)`` followed by ``layers``
   pre-norm self-attention blocks over the K users (permutation-equivariant:
   permuting the users permutes the tokens);
2. candidate scores, for candidate ``c = (a, s)``:
   ``score_c = sum_n u[a_n, n, s] + v^T relu(sum_n P_n e_{a_n} + q_s)``: a
   unary term (waveguide n serving user a_n at spacing s) plus a joint term
   (an MLP on the concatenated tokens of the assigned users, its first layer
   applied per (user, waveguide) before the gather so the cost is ``O(K N d
   h + C N h)``, not ``O(C N d h)``), plus a learned multiple of the physics
   prior ``-sum_n log(1 + dy_n^2 / h^2)`` (the interference-free coherent gain
   of the assignment, the score ``tune_positions`` ranks assignments by when it
   cannot try them all), so the network learns a correction to a strong prior.
   Relabelling the users relabels the candidates: the ranking is equivariant
   by construction;
3. a continuous head: a per-(user, waveguide) centre shift
   ``max_shift tanh(w_n^T e_k)`` [m] (zero-initialised) of the waveguide's
   pinch grid when it serves that user (coherence is still solved at the user);
4. decode (:meth:`AlignedNet.decode`): the ``top_k`` highest-scoring
   candidates are decoded with :func:`aligned_layout` (the phase-aligned
   placement of ``aligned_positions`` with the shift; always feasible: it ends
   with ``project_positions``), their zero-forcing beamformers (``bf.zf``,
   equal power per user, ``||W||_F^2 = P``) and sum rates under the true
   channel (``effective_channel``) are computed, and the best is returned.
   ``top_k = 1`` decodes exactly one layout.

Training
--------
* Teacher labels (:func:`teacher_labels`): every candidate's ZF sum rate on
  training drops (the screening of ``tune_drop`` restricted to the aligned
  candidates, in :func:`~jaxpass.optimize.positions.candidate_labels` order,
  so the label equals ``tune_drop``'s chosen start when that is aligned).
  Training drops come from a key different from the test drops'.
* :func:`teacher_loss`: cross-entropy of ``softmax(scores)`` against the soft
  target ``softmax(rates / temperature)`` (``temperature`` in bps/Hz; ``0``:
  the hard label ``argmax rates``). A small temperature spreads the target over
  near-ties, which suits a top-k decode.
* :func:`finetune_loss`: minus the mean sum rate of the decoded layout with
  the candidate *teacher-forced* (the label) and the shift head's output: the
  unsupervised term for the continuous outputs (its gradients reach the
  shift head through the Newton placement, ``effective_channel`` and ZF).
* :func:`fit_aligned`: a plain optax Adam loop (warm-up + cosine decay) on
  ``teacher_loss + finetune_weight * finetune_loss`` (the fine-tuning term
  only in the last ``finetune_steps``). The loss functions are separable so a
  generic trainer can take them instead.

What it earns is measured, not asserted here: ``python -m benchmarks --only
learn_aligned`` scores every ``top_k``, the teacher's own choice, the same
decode with zeroed weights and the non-learned geometric shortlist on
held-out drops, and the README's learning section is generated from its
result file. In those runs the learned ranking was about as good as the
geometric prior's and a short list beat a single layout (the top-1 candidate
is often not the teacher's: the rest is the chaotic, phase-level part of the
landscape); the shift head moves the rate very little.

Execution (docs/execution_model.md): :meth:`AlignedNet.__call__`,
:meth:`AlignedNet.decode`, :func:`aligned_layout`, :func:`teacher_labels` and
the losses are pure and work under the caller's ``jax.jit``/``nnx.jit`` with
``cfg`` traced (its shapes, ``carrier_freq``, ``n_eff`` static);
:func:`make_teacher_labels`, :func:`predict_aligned` and :func:`fit_aligned`
are the drivers (validation, batching, compiled calls).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpass import beamforming as bf
from jaxpass._checks import (
    check_finite,
    check_int,
    check_key,
    check_number,
    check_positive_int,
    check_shape,
    check_spacings,
    check_users_in_area,
    is_tracer,
    shape_of,
)
from jaxpass._options import Options, option
from jaxpass.channel import effective_channel
from jaxpass.config import PassConfig
from jaxpass.geometry import sample_users
from jaxpass.metrics import sum_rate
from jaxpass.optimize.positions import TuneOptions, TuneResult, aligned_positions, assignment_table, refine_drop

DEFAULT_SPACINGS = (0.0, 0.03, 0.1)


# ------------------------------------------------------------------ candidates and layouts
def candidate_table(cfg: PassConfig, spacings=DEFAULT_SPACINGS):
    """The candidate list ``c = a * S + s``: ``(assignments (C, N) int32, spacings (C,) float)`` NumPy arrays.

    ``a`` runs over every row of :func:`~jaxpass.optimize.positions.assignment_table`
    (``A`` rows), ``s`` over ``spacings`` [m]: the aligned candidates of
    ``tune_drop`` in :func:`~jaxpass.optimize.positions.candidate_labels` order
    (when every assignment is tried).
    """
    _check_cfg(cfg)
    spacings = check_spacings("spacings", spacings)
    table = assignment_table(cfg.num_waveguides, cfg.num_users)
    S = len(spacings)
    return np.repeat(table, S, axis=0), np.tile(np.asarray(spacings, np.float64), table.shape[0])


#: the phase-aligned layout with a per-waveguide centre shift (one implementation: the search's own)
aligned_layout = aligned_positions


def _zf_rate(cfg: PassConfig, X, users):
    """``(W, sum rate)`` of zero-forcing at the budget under the true channel."""
    H = effective_channel(cfg, X, users)
    W = bf.zf(H, cfg.power)
    return W, sum_rate(H, W, cfg.noise_power)


class TeacherLabels(NamedTuple):
    """Teacher targets for a batch of drops.

    Attributes:
      best: ``(B,)`` int index of the best candidate (:func:`candidate_table` order).
      rates: ``(B, C)`` ZF sum rate of every candidate [bps/Hz].
    """

    best: jax.Array
    rates: jax.Array


def teacher_labels(cfg: PassConfig, users, spacings=DEFAULT_SPACINGS) -> TeacherLabels:
    """Score every aligned candidate of every drop with ZF (the physics-guided search's screening).

    Pure (works under ``jit``; ``spacings`` static). ``users``: ``(B, K, 2)`` [m].
    ``best`` equals ``tune_drop``'s chosen ``start`` (ZF, every assignment tried,
    the same ``spacings``) whenever the search's best start is an aligned one.
    """
    _check_cfg(cfg, zf=True)
    check_shape("users", users, (None, cfg.num_users, 2))
    assign, spac = candidate_table(cfg, spacings)
    assign = jnp.asarray(assign)
    spac = jnp.asarray(spac, users.dtype)

    def one(u):
        return jax.vmap(lambda a, s: _zf_rate(cfg, aligned_layout(cfg, u, a, s), u)[1])(assign, spac)

    rates = jax.vmap(one)(users)
    rates = jnp.where(jnp.isfinite(rates), rates, -jnp.inf)
    return TeacherLabels(jnp.argmax(rates, axis=-1).astype(jnp.int32), rates)


_teacher_labels_jit = jax.jit(teacher_labels, static_argnames="spacings")


def make_teacher_labels(cfg: PassConfig, users, *, spacings=DEFAULT_SPACINGS, chunk: int = 1024) -> TeacherLabels:
    """Driver of :func:`teacher_labels`: validates, runs compiled chunks of ``chunk`` drops, concatenates."""
    _check_cfg(cfg, zf=True)
    batch = _check_users(cfg, users, batch=True)
    spacings = check_spacings("spacings", spacings)
    check_positive_int("chunk", chunk)
    parts = []
    B = batch.shape[0]
    for i in range(0, B, chunk):
        part = batch[i:i + chunk]
        if part.shape[0] < chunk and B > chunk:  # pad the tail so every chunk shares one compilation
            pad = jnp.broadcast_to(part[:1], (chunk - part.shape[0],) + part.shape[1:])
            out = _teacher_labels_jit(cfg, jnp.concatenate([part, pad]), spacings)
            out = jax.tree.map(lambda a, n=part.shape[0]: a[:n], out)
        else:
            out = _teacher_labels_jit(cfg, part, spacings)
        parts.append(out)
    return jax.tree.map(lambda *a: jnp.concatenate(a), *parts)


# ------------------------------------------------------------------ the network
class _Block(nnx.Module):
    """Pre-norm self-attention + MLP block over the user tokens."""

    def __init__(self, d: int, heads: int, dropout: float, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(d, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, d, decode=False, dropout_rate=dropout, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, rngs=rngs)
        self.ff1 = nnx.Linear(d, 2 * d, rngs=rngs)
        self.ff2 = nnx.Linear(2 * d, d, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, h):
        h = h + self.drop(self.attn(self.norm1(h)))
        return h + self.drop(self.ff2(jax.nn.gelu(self.ff1(self.norm2(h)))))


class AlignedOutput(NamedTuple):
    """Raw outputs of :class:`AlignedNet` (leading batch axis ``B``).

    Attributes:
      users: ``(B, K, 2)`` the input drops [m] (the decode places pinches around them).
      scores: ``(B, C)`` candidate logits (:func:`candidate_table` order).
      shift: ``(B, K, N)`` centre shift [m] of waveguide n's grid when it serves user k.
    """

    users: jax.Array
    scores: jax.Array
    shift: jax.Array


class Decoded(NamedTuple):
    """Output of :meth:`AlignedNet.decode_info`: the chosen layout and its diagnostics.

    Attributes:
      positions: ``(B, N, L)`` feasible positions [m].
      W: ``(B, N, K)`` ZF beamformer, ``||W||_F^2 = P``.
      sum_rate: ``(B,)`` [bps/Hz] under the true channel.
      choice: ``(B,)`` int candidate index decoded.
    """

    positions: jax.Array
    W: jax.Array
    sum_rate: jax.Array
    choice: jax.Array


class AlignedNet(nnx.Module):
    """Ranks the phase-aligned candidate layouts and decodes the best ``top_k`` exactly (module docstring).

    Args:
      cfg: the scenario; only its static shapes (K, N, L) and, as Python floats,
        ``length_x``, ``width_y``, ``height`` and the lane ``y`` (feature scales)
        are read. ZF decoding needs ``K <= N``.
      hidden: token width ``d`` (also the joint scorer's width).
      heads: attention heads (``hidden % heads == 0``).
      layers: self-attention blocks over the users.
      dropout: dropout rate (on after ``model.train()``, off after ``model.eval()``).
      spacings: the candidates' nominal pinch spacings [m] (0 = guided wavelength).
      top_k: candidates decoded and evaluated at inference (1 = exactly one layout).
      max_shift: bound of the continuous centre shift [m] (0 disables the head).
      rngs: ``nnx.Rngs`` (``params``; ``dropout`` when ``dropout > 0``).
    """

    def __init__(self, cfg: PassConfig, *, hidden: int = 32, heads: int = 4, layers: int = 0,
                 dropout: float = 0.0, spacings=DEFAULT_SPACINGS, top_k: int = 4, max_shift: float = 0.05,
                 rngs: nnx.Rngs):
        _check_cfg(cfg, zf=True)
        check_positive_int("hidden", hidden)
        check_positive_int("heads", heads)
        if hidden % heads:
            raise ValueError(f"hidden must be a multiple of heads, got hidden={hidden}, heads={heads}")
        check_int("layers", layers, low=0)
        check_number("dropout", dropout, low=0.0, high=1.0)
        self.spacings = check_spacings("spacings", spacings)
        assign, spac = candidate_table(cfg, self.spacings)
        check_int("top_k", top_k, low=1, high=len(spac))
        check_number("max_shift", max_shift, unit="m", low=0.0)
        self.K, self.N, self.L, self.S = cfg.num_users, cfg.num_waveguides, cfg.num_pinches, len(self.spacings)
        self.top_k, self.max_shift = int(top_k), float(max_shift)
        self.length_x, self.width_y = float(cfg.length_x), float(cfg.width_y)
        self.height = float(cfg.height)
        self.lanes = tuple(float(v) for v in np.asarray(cfg.lane_y))
        # candidate tables as static Python tuples (never traced arrays)
        self.assign = tuple(tuple(int(v) for v in row) for row in assign)
        self.cand_spacing = tuple(float(v) for v in spac)
        d, N, S = hidden, self.N, self.S
        self.embed1 = nnx.Linear(2 + 2 * N, d, rngs=rngs)
        self.embed2 = nnx.Linear(d, d, rngs=rngs)
        self.blocks = nnx.List([_Block(d, heads, dropout, rngs=rngs) for _ in range(layers)])
        self.norm = nnx.LayerNorm(d, rngs=rngs)
        self.unary = nnx.Linear(d, N * S, rngs=rngs)
        self.pair = nnx.Linear(d, N * d, rngs=rngs)
        self.spacing_bias = nnx.Param(jnp.zeros((S, d)))
        self.joint = nnx.Linear(d, 1, rngs=rngs)
        self.geo_scale = nnx.Param(jnp.ones(()))
        self.shift_head = nnx.Linear(d, N, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def features(self, users):
        """``(B, K, 2 + 2N)`` per-user features (dimensionless)."""
        lanes = jnp.asarray(self.lanes, users.dtype)
        x, y = users[..., 0], users[..., 1]
        dy = y[..., None] - lanes  # (B, K, N)
        h2 = self.height ** 2
        return jnp.concatenate([
            jnp.stack([x / self.length_x - 0.5, y / self.width_y - 0.5], axis=-1),
            dy / self.width_y,
            jnp.log1p(dy * dy / h2) / 4.0,
        ], axis=-1)

    def __call__(self, users) -> AlignedOutput:
        """``users (B, K, 2)`` [m] -> :class:`AlignedOutput`."""
        check_shape("users", users, (None, self.K, 2))
        users = jnp.asarray(users)
        h = self.embed2(jax.nn.gelu(self.embed1(self.features(users))))
        for block in self.blocks:
            h = block(h)
        h = self.norm(h)  # (B, K, d)
        B, d = h.shape[0], h.shape[-1]
        assign = jnp.asarray(self.assign)  # (C, N)
        s_idx = jnp.asarray([c % self.S for c in range(len(self.assign))])  # (C,) spacing index
        n_idx = jnp.arange(self.N)
        u = self.unary(h).reshape(B, self.K, self.N, self.S)
        unary = jnp.sum(u[:, assign, n_idx[None, :], s_idx[:, None]], axis=-1)  # (B, C)
        p = self.pair(h).reshape(B, self.K, self.N, d)
        joint_in = jnp.sum(p[:, assign, n_idx[None, :]], axis=-2) + self.spacing_bias[...][s_idx]  # (B, C, d)
        joint = self.joint(jax.nn.gelu(joint_in))[..., 0]
        shift = self.max_shift * jnp.tanh(self.shift_head(h))  # (B, K, N)
        # physics prior: interference-free coherent gain of the assignment, -sum_n log(h^2 + dy_n^2)
        dy = users[..., 1][:, assign] - jnp.asarray(self.lanes, users.dtype)  # (B, C, N)
        geo = -jnp.sum(jnp.log1p(dy * dy / self.height ** 2), axis=-1)
        return AlignedOutput(users, unary + joint + self.geo_scale[...] * geo, shift)

    def _layout(self, cfg, users, shift, c):
        """Decode candidate ``c`` (traced int) of one drop: ``(X, W, rate)``."""
        assign = jnp.asarray(self.assign)[c]
        spacing = jnp.asarray(self.cand_spacing, users.dtype)[c]
        sh = shift[assign, jnp.arange(self.N)]
        X = aligned_layout(cfg, users, assign, spacing, sh)
        W, r = _zf_rate(cfg, X, users)
        return X, W, r

    def decode_info(self, cfg: PassConfig, raw: AlignedOutput, *, top_k: int | None = None,
                    choice=None) -> Decoded:
        """Decode the ``top_k`` best-scored candidates (or the forced ``choice (B,)``), keep the best.

        Pure; ``cfg`` may be traced. ``top_k`` defaults to the model's.
        """
        _check_cfg(cfg, zf=True)
        k = self.top_k if top_k is None else check_int("top_k", top_k, low=1, high=len(self.assign))
        if choice is None:
            _, cands = jax.lax.top_k(raw.scores, k)  # (B, k)
        else:
            cands = jnp.asarray(choice).astype(jnp.int32)[:, None]

        def one(users, shift, cs):
            X, W, r = jax.vmap(lambda c: self._layout(cfg, users, shift, c))(cs)
            i = jnp.argmax(jnp.where(jnp.isfinite(r), r, -jnp.inf))
            return X[i], W[i], r[i], cs[i]

        return Decoded(*jax.vmap(one)(raw.users, raw.shift, cands))

    def decode(self, cfg: PassConfig, raw: AlignedOutput):
        """``raw`` -> ``(X (B, N, L) [m], W (B, N, K))``: the shared ``model.decode`` interface."""
        out = self.decode_info(cfg, raw)
        return out.positions, out.W


def refine(model: AlignedNet, cfg: PassConfig, users, options: TuneOptions, *, top_k: int | None = None) -> TuneResult:
    """Learned start + gradient refinement (issue 13 item 5): the decoded layout polished by ``tune_positions``' ascent.

    The model's decoded positions (``top_k`` candidates scored, the best kept)
    start :func:`jaxpass.optimize.positions.refine_drop` (one start,
    ``options.steps`` projected Adam steps through ``options.beamformer``,
    ``"zf"`` as the decode; the best iterate is kept, so never worse than the
    decode when both use ZF). Pure: works under ``jax.jit``/``nnx.jit``.

    Args:
      model: a trained :class:`AlignedNet`.
      cfg: the scenario it was built for (``K <= N``).
      users: ``(B, K, 2)`` drops [m].
      options: :class:`~jaxpass.optimize.positions.TuneOptions` (``steps``, ``beamformer``, learning rates).
      top_k: candidates decoded (default: the model's).

    Returns:
      batched :class:`~jaxpass.optimize.positions.TuneResult` (``start_rate``: the decoded layout's rate).
    """
    start = model.decode_info(cfg, model(users), top_k=top_k)
    return jax.vmap(lambda u, X: refine_drop(cfg, u, X, options))(users, start.positions)


# ------------------------------------------------------------------ losses
def teacher_loss(model: AlignedNet, cfg: PassConfig, users, labels: TeacherLabels, *, temperature: float = 0.05):
    """Cross-entropy of the candidate ranking against the teacher: ``(loss, aux)``.

    Target ``softmax(rates / temperature)`` (``temperature`` [bps/Hz]; ``0``: the
    one-hot ``labels.best``). ``aux = {"accuracy": (B,) argmax == best,
    "regret": (B,) best rate - rate of the argmax candidate [bps/Hz]}``.
    """
    raw = model(users)
    logp = jax.nn.log_softmax(raw.scores, axis=-1)
    if temperature > 0:
        target = jax.nn.softmax(labels.rates / temperature, axis=-1)
    else:
        target = jax.nn.one_hot(labels.best, raw.scores.shape[-1], dtype=logp.dtype)
    loss = -jnp.mean(jnp.sum(jnp.where(target > 0, target * logp, 0.0), axis=-1))
    pick = jnp.argmax(raw.scores, axis=-1)
    chosen = jnp.take_along_axis(labels.rates, pick[:, None], axis=-1)[:, 0]
    aux = {"accuracy": (pick == labels.best).astype(logp.dtype),
           "regret": jnp.max(labels.rates, axis=-1) - chosen}
    return loss, aux


def finetune_loss(model: AlignedNet, cfg: PassConfig, users, labels: TeacherLabels | None = None):
    """Minus the mean sum rate of the decoded layout (the unsupervised term): ``(loss, {"sum_rate": (B,)})``.

    The candidate is teacher-forced to ``labels.best`` (or the model's own
    ``top_k`` choice when ``labels`` is ``None``); gradients flow to the shift
    head (and the shared trunk) through :func:`aligned_layout`, the channel and ZF.
    """
    raw = model(users)
    out = model.decode_info(cfg, raw, choice=None if labels is None else labels.best)
    return -jnp.mean(out.sum_rate), {"sum_rate": out.sum_rate}


def sum_rate_loss(model: AlignedNet, cfg: PassConfig, users):
    """The shared unsupervised loss signature ``loss_fn(model, cfg, users) -> (loss, aux)`` (model's own choice)."""
    return finetune_loss(model, cfg, users, None)


# ------------------------------------------------------------------ options and drivers
@dataclasses.dataclass(frozen=True)
class AlignedOptions(Options):
    """Options of :func:`fit_aligned` (model sizes, teacher labels, optimiser)."""

    hidden: int = option(32, "token width of the aligned model")
    heads: int = option(4, "attention heads over the users")
    layers: int = option(0, "self-attention blocks over the users")
    dropout: float = option(0.0, "dropout rate during training")
    spacings: tuple = option(DEFAULT_SPACINGS, "nominal pinch spacings of the candidates [m] (0 = guided wavelength)")
    top_k: int = option(4, "candidates decoded and evaluated exactly at inference")
    max_shift: float = option(0.05, "bound of the learned centre shift [m] (0 disables it)")
    train_drops: int = option(16384, "training drops labelled by the teacher")
    batch_size: int = option(256, "drops per optimisation step")
    steps: int = option(600, "teacher (cross-entropy) steps")
    finetune_steps: int = option(0, "extra steps with the unsupervised sum-rate term added")
    finetune_weight: float = option(0.1, "weight of the sum-rate term [per bps/Hz] during fine-tuning")
    learning_rate: float = option(2e-3, "peak Adam step size")
    warmup_steps: int = option(100, "linear warm-up steps")
    temperature: float = option(0.05, "soft-target temperature of the teacher loss [bps/Hz] (0 = hard labels)")
    weight_decay: float = option(1e-4, "AdamW weight decay")

    def validate(self):
        for name in ("hidden", "heads", "train_drops", "batch_size", "steps", "top_k"):
            check_positive_int(name, getattr(self, name))
        for name in ("layers", "finetune_steps", "warmup_steps"):
            check_int(name, getattr(self, name), low=0)
        if self.hidden % self.heads:
            raise ValueError(f"hidden must be a multiple of heads, got hidden={self.hidden}, heads={self.heads}")
        check_number("dropout", self.dropout, low=0.0, high=1.0)
        check_number("max_shift", self.max_shift, unit="m", low=0.0)
        check_number("finetune_weight", self.finetune_weight, low=0.0)
        check_number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_number("temperature", self.temperature, unit="bps/Hz", low=0.0)
        check_number("weight_decay", self.weight_decay, low=0.0)
        object.__setattr__(self, "spacings", check_spacings("spacings", self.spacings))


def build_aligned(cfg: PassConfig, options: AlignedOptions, rngs: nnx.Rngs) -> AlignedNet:
    """An untrained :class:`AlignedNet` with the sizes of ``options``."""
    return AlignedNet(cfg, hidden=options.hidden, heads=options.heads, layers=options.layers,
                      dropout=options.dropout, spacings=options.spacings, top_k=options.top_k,
                      max_shift=options.max_shift, rngs=rngs)


class FitResult(NamedTuple):
    """Output of :func:`fit_aligned`.

    Attributes:
      model: the trained :class:`AlignedNet` (in ``eval`` mode).
      history: ``(steps + finetune_steps, 3)`` per step: total loss, teacher loss, batch accuracy.
      labels: the :class:`TeacherLabels` of the training drops.
      users: ``(train_drops, K, 2)`` the training drops [m].
    """

    model: AlignedNet
    history: np.ndarray
    labels: TeacherLabels
    users: jax.Array


def _schedule(options: AlignedOptions):
    import optax

    total = options.steps + options.finetune_steps
    return optax.warmup_cosine_decay_schedule(0.0, options.learning_rate, max(options.warmup_steps, 1),
                                              max(total, options.warmup_steps + 1), end_value=0.01 * options.learning_rate)


def fit_aligned(key, cfg: PassConfig, options: AlignedOptions | None = None, *, users=None, labels=None,
                **changes) -> FitResult:
    """Train an :class:`AlignedNet` as a student of the physics-guided search (module docstring).

    Args:
      key: ``jax.random`` key: training drops (unless ``users`` given), init, batch order.
        Use a key different from the test drops'.
      cfg: the scenario (ZF: ``K <= N``).
      options: :class:`AlignedOptions`; ``**changes`` override fields.
      users: optional ``(B, K, 2)`` training drops [m] (default: ``train_drops`` fresh ones).
      labels: optional precomputed :class:`TeacherLabels` for ``users``.

    Returns:
      :class:`FitResult`.
    """
    import optax

    opts = AlignedOptions.resolve(options, **changes)
    _check_cfg(cfg, zf=True)
    k_data, k_init, k_order = jax.random.split(check_key(key), 3)
    if users is None:
        users = sample_users(k_data, cfg, (opts.train_drops,))
    users = _check_users(cfg, users, batch=True)
    if labels is None:
        labels = make_teacher_labels(cfg, users, spacings=opts.spacings)
    elif not isinstance(labels, TeacherLabels) or shape_of(labels.rates)[0] != users.shape[0]:
        raise ValueError("labels must be the TeacherLabels of users (make_teacher_labels(cfg, users))")
    B = users.shape[0]
    bs = min(opts.batch_size, B)
    model = build_aligned(cfg, opts, nnx.Rngs(params=k_init, dropout=jax.random.fold_in(k_init, 1)))
    model.train()
    tx = optax.adamw(_schedule(opts), weight_decay=opts.weight_decay)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    def make_step(weight):
        @nnx.jit
        def step(model, optimizer, cfg, u, lab):
            def loss_fn(m):
                lt, aux = teacher_loss(m, cfg, u, lab, temperature=opts.temperature)
                if weight:
                    lf, _ = finetune_loss(m, cfg, u, lab)
                    return lt + weight * lf, (lt, aux)
                return lt, (lt, aux)

            (loss, (lt, aux)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
            optimizer.update(model, grads)
            return loss, lt, jnp.mean(aux["accuracy"])

        return step

    history = []
    total = opts.steps + opts.finetune_steps
    per_epoch = max(B // bs, 1)
    order = None
    steps = {0.0: make_step(0.0)}
    if opts.finetune_steps:
        steps[opts.finetune_weight] = make_step(opts.finetune_weight)
    for t in range(total):
        if t % per_epoch == 0:
            order = jax.random.permutation(jax.random.fold_in(k_order, t // per_epoch), B)
        idx = order[(t % per_epoch) * bs:(t % per_epoch + 1) * bs]
        weight = opts.finetune_weight if t >= opts.steps else 0.0
        lab = TeacherLabels(labels.best[idx], labels.rates[idx])
        out = steps[weight](model, optimizer, cfg, users[idx], lab)
        history.append(out)
    model.eval()
    hist = np.asarray([[float(v) for v in row] for row in jax.device_get(history)]).reshape(-1, 3)
    return FitResult(model, hist, labels, users)


def predict_aligned(model: AlignedNet, cfg: PassConfig, users, *, top_k: int | None = None) -> Decoded:
    """Driver: validate ``users`` (``(K, 2)`` or ``(B, K, 2)`` [m]) and decode (compiled with ``nnx.jit``)."""
    if not isinstance(model, AlignedNet):
        raise TypeError(f"model must be an AlignedNet, got {type(model).__name__}")
    _check_cfg(cfg, zf=True)
    if (cfg.num_users, cfg.num_waveguides, cfg.num_pinches) != (model.K, model.N, model.L):
        raise ValueError(f"cfg has (K, N, L) = {(cfg.num_users, cfg.num_waveguides, cfg.num_pinches)} but the "
                         f"model was built for {(model.K, model.N, model.L)}")
    single = len(shape_of(users)) == 2
    batch = _check_users(cfg, users[None] if single else users, batch=True)
    out = _predict_jit(model, cfg, batch, top_k)
    return jax.tree.map(lambda a: a[0], out) if single else out


@nnx.jit(static_argnums=3)
def _predict_jit(model, cfg, users, top_k):
    return model.decode_info(cfg, model(users), top_k=top_k)


# ------------------------------------------------------------------ checks
def _check_cfg(cfg, *, zf: bool = False):
    if not isinstance(cfg, PassConfig):
        raise TypeError(f"cfg must be a PassConfig, got {type(cfg).__name__}")
    if zf and cfg.num_users > cfg.num_waveguides:
        raise ValueError(f"the aligned model decodes with ZF, which needs K <= N; got K={cfg.num_users} users and "
                         f"N={cfg.num_waveguides} waveguides")


def _check_users(cfg: PassConfig, users, *, batch: bool):
    if is_tracer(users):
        raise TypeError("this is a batching driver: inside jit/vmap call the pure functions instead")
    K = cfg.num_users
    shape = shape_of(users)
    if len(shape) != 3 or tuple(shape[1:]) != (K, 2) or shape[0] < 1:
        raise ValueError(f"users must have shape (B, {K}, 2) with B >= 1, got {tuple(shape)}")
    check_finite("users", users)
    check_users_in_area(cfg, users)
    users = jnp.asarray(users)
    if not jnp.issubdtype(users.dtype, jnp.floating):
        users = users.astype(jnp.result_type(float))
    return users


__all__ = ["AlignedNet", "AlignedOptions", "AlignedOutput", "DEFAULT_SPACINGS", "Decoded", "FitResult",
           "TeacherLabels", "aligned_layout", "build_aligned", "candidate_table", "finetune_loss", "fit_aligned",
           "make_teacher_labels", "predict_aligned", "refine", "sum_rate_loss", "teacher_labels", "teacher_loss"]
