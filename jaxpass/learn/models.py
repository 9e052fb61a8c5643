"""The learning models of JB §IV (KDL, Table I) and TT §III-C in ``flax.nnx`` (docs/model.md §3.4, §4).

Every model is built as ``Model(cfg, *, <sizes>, rngs=nnx.Rngs(seed))`` and reads
only the static shapes of ``cfg`` (K users, N waveguides, L pinches) plus the
area size ``S_x x S_y`` as plain Python floats (the input normalisation). Sizes
default to the papers' (authors' code): ``d_model = 256``, 4 heads, 2 encoder +
2 decoder layers, FFN 512, dropout 0.1.

* ``model(users)``: users ``(B, K, 2)`` [m] -> raw outputs, a dict of arrays with
  leading batch axis ``B`` (pre-activation logits; KDL models also pass the users
  through, the KKT map needs their channel).
* ``model.decode(cfg, raw) -> (X (B, N, L) [m], W (B, N, K) complex)``: always
  feasible positions (JB eqs. (53)-(55)) and a beamformer meeting ``cfg.power``
  with equality (the functions of :mod:`jaxpass.learn.decode`).
* ``model.train()`` switches dropout on, ``model.eval()`` off (nnx's switch).

Input normalisation (all models): the user coordinates are mapped to
``[-1, 1]`` by ``2 x / S_x - 1`` and ``2 y / S_y - 1`` with the ``S_x, S_y`` of
the ``cfg`` the model was built with. The user sequence is ``z = [x_1..x_K,
y_1..y_K]`` (JB eq. (45)).

Transformer layers follow the authors' PyTorch ``nn.Transformer*Layer`` reading
of JB eqs. (46)-(52): post-LayerNorm residual blocks (self-attention, then
cross-attention in the decoder, then a ReLU FFN), dropout on the attention
weights and on every residual branch, attention logits scaled by
``1/sqrt(d_model / heads)`` (the per-head width; JB eq. (47) prints
``sqrt(N_model)``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jax.tree_util import Partial

from jaxpass._checks import check_int, check_number, check_shape
from jaxpass.config import PassConfig
from jaxpass.learn import decode as _decode

__all__ = [
    "ARCHITECTURES",
    "BlackBoxResNet",
    "BlackBoxTransformer",
    "KDLResNet",
    "KDLTransformer",
    "KDLTransformerOCA",
    "ShortTermNet",
    "count_parameters",
    "duals_fn",
    "sinusoidal_positions",
]


# ----------------------------------------------------------------- helpers
def sinusoidal_positions(length: int, d_model: int, dtype=jnp.float32):
    """Sinusoidal position codes (JB Alg. 2 line 6), shape ``(length, d_model)``.

    ``PE[pos, 2i] = sin(pos / 10000^(2i/d))``, ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d))``.
    """
    pos = jnp.arange(length, dtype=jnp.float32)[:, None]
    i2 = jnp.arange(0, d_model, 2, dtype=jnp.float32)
    angle = pos / jnp.power(10000.0, i2 / d_model)
    pe = jnp.zeros((length, d_model), jnp.float32)
    pe = pe.at[:, 0::2].set(jnp.sin(angle))
    pe = pe.at[:, 1::2].set(jnp.cos(angle[:, : d_model // 2]))
    return pe.astype(dtype)


def count_parameters(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` entries) of ``model``."""
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _shapes(cfg: PassConfig):
    if not isinstance(cfg, PassConfig):
        raise TypeError(f"cfg must be a PassConfig, got {type(cfg).__name__}")
    return int(cfg.num_users), int(cfg.num_waveguides), int(cfg.num_pinches)


def _area(cfg: PassConfig):
    try:
        return float(cfg.length_x), float(cfg.width_y)
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise ValueError("build the model from a concrete, unstacked PassConfig (length_x and width_y "
                         "must be plain numbers: they set the input normalisation)") from None


def _check_sizes(d_model, num_heads, ffn, dropout):
    check_int("d_model", d_model, low=1)
    check_int("num_heads", num_heads, low=1)
    check_int("ffn", ffn, low=1)
    check_number("dropout", dropout, low=0.0, high=1.0)
    if d_model % num_heads:
        raise ValueError(f"d_model must be a multiple of num_heads, got d_model={d_model}, num_heads={num_heads}")
    if d_model % 2:
        raise ValueError(f"d_model must be even (sinusoidal positions), got {d_model}")


class _ModelBase(nnx.Module):
    """Shape bookkeeping shared by the user-to-(X, W) models."""

    direct = False  # True: black-box head (X and W directly), False: KDL head (X and KKT duals)

    def _init_shapes(self, cfg, lam_max):
        self.num_users, self.num_waveguides, self.num_pinches = _shapes(cfg)
        self.length_x, self.width_y = _area(cfg)
        check_number("lam_max", lam_max, low=0.0, low_open=True)
        self.lam_max = float(lam_max)

    @property
    def num_outputs(self) -> int:
        """Scalars per drop: ``N + N L + 2K`` (KDL, JB Alg. 2 line 11) or ``N + N L + 2 N K`` (black box)."""
        K, N, L = self.num_users, self.num_waveguides, self.num_pinches
        return N + N * L + (2 * N * K if self.direct else 2 * K)

    def _tokens(self, users):
        """Normalised user sequence ``z (B, 2K)`` in ``[-1, 1]`` (module docstring)."""
        users = jnp.asarray(users)
        check_shape("users", users, (None, self.num_users, 2))
        if not jnp.issubdtype(users.dtype, jnp.floating):
            users = users.astype(jnp.result_type(float))
        scale = jnp.asarray([self.length_x, self.width_y], users.dtype)
        u = 2.0 * users / scale - 1.0
        return jnp.concatenate([u[..., 0], u[..., 1]], axis=-1)

    def _split(self, out, users):
        """Flat head output ``(B, num_outputs)`` -> the raw dict the decoders read."""
        K, N, L = self.num_users, self.num_waveguides, self.num_pinches
        B = out.shape[0]
        raw = {"x_end": out[:, :N], "spacing": out[:, N : N + N * L].reshape(B, N, L)}
        rest = out[:, N + N * L :]
        if self.direct:
            raw["w"] = rest.reshape(B, N, K, 2)
        else:
            raw["lam"], raw["mu"] = rest[:, :K], rest[:, K:]
            raw["users"] = jnp.asarray(users)
        return raw

    def decode(self, cfg: PassConfig, raw):
        """Raw outputs -> ``(X (B, N, L) [m], W (B, N, K) complex)``, feasible, ``||W||_F^2 = P``.

        KDL: JB eqs. (53)-(55) and the KKT map JB eq. (44) with the predicted duals
        (:func:`jaxpass.learn.decode.kdl_decode`); black box: the same positions and
        the predicted matrix scaled to the budget (:func:`jaxpass.learn.decode.blackbox_decode`).
        """
        _decode.check_model_config(self, cfg)
        if self.direct:
            return _decode.blackbox_decode(cfg, raw)
        return _decode.kdl_decode(cfg, raw, lam_max=self.lam_max)


class _Layer(nnx.Module):
    """Post-LN Transformer layer: self-attention, optional cross-attention, ReLU FFN."""

    def __init__(self, d_model, num_heads, ffn, dropout, *, cross: bool, param_dtype, rngs):
        kw = dict(param_dtype=param_dtype, rngs=rngs)

        def attention():
            return nnx.MultiHeadAttention(num_heads, d_model, dropout_rate=dropout, decode=False,
                                          deterministic=False, **kw)

        self.self_attn = attention()
        self.norm1 = nnx.LayerNorm(d_model, epsilon=1e-5, **kw)
        self.drop1 = nnx.Dropout(dropout, rngs=rngs)
        if cross:
            self.cross_attn = attention()
            self.norm_c = nnx.LayerNorm(d_model, epsilon=1e-5, **kw)
            self.drop_c = nnx.Dropout(dropout, rngs=rngs)
        else:
            self.cross_attn = None
        self.ff1 = nnx.Linear(d_model, ffn, **kw)
        self.ff2 = nnx.Linear(ffn, d_model, **kw)
        self.drop_ff = nnx.Dropout(dropout, rngs=rngs)
        self.drop2 = nnx.Dropout(dropout, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d_model, epsilon=1e-5, **kw)

    def __call__(self, x, memory=None):
        x = self.norm1(x + self.drop1(self.self_attn(x)))  # bidirectional: no mask (JB eq. (47))
        if self.cross_attn is not None:
            x = self.norm_c(x + self.drop_c(self.cross_attn(x, memory)))  # JB eqs. (50)-(52)
        h = self.ff2(self.drop_ff(jax.nn.relu(self.ff1(x))))
        return self.norm2(x + self.drop2(h))


# ------------------------------------------------------------ Transformers
class KDLTransformer(_ModelBase):
    """KDL-Transformer (JB §IV-B, Alg. 2; docs/model.md §3.4).

    Encoder: the ``2K`` normalised user coordinates, one scalar per token, a
    linear embedding ``z^T w_E`` (JB eq. (45)) plus sinusoidal positions, then
    ``num_encoder_layers`` bidirectional self-attention layers. Decoder: ``N + N L
    + 2K`` learnable output tokens plus sinusoidal positions (Alg. 2 line 6),
    ``num_decoder_layers`` layers of bidirectional self-attention, cross-attention
    to the encoder output and FFN; a linear head gives one scalar per output token:
    ``[x_end (N), spacing (N L), lam (K), mu (K)]`` (Alg. 2 line 11), decoded by
    :func:`jaxpass.learn.decode.kdl_decode`.

    ``cross_attention=False`` is the OCA variant (JB Table I, "without cross
    attn."): the encoder output and the output tokens are concatenated and the
    decoder layers run self-attention over both together (no cross-attention
    sub-layer); the outputs are read at the output-token positions.

    Args:
      cfg: the scenario (static shapes and the area size are read).
      d_model, num_heads, num_encoder_layers, num_decoder_layers, ffn, dropout: sizes.
      lam_max: dual scale; ``lam = lam_max P / (K sigma^2) sigmoid(.)`` (see
        :func:`jaxpass.learn.decode.kdl_duals`).
      cross_attention: ``None`` = the class default (True here, False for OCA and
        the black-box Transformer).
      param_dtype: parameter dtype (``jnp.float64`` with x64 enabled for float64 training).
      rngs: ``nnx.Rngs`` with a ``params`` and a ``dropout`` stream (or a default).
    """

    cross_attention = True

    def __init__(self, cfg: PassConfig, *, d_model: int = 256, num_heads: int = 4, num_encoder_layers: int = 2,
                 num_decoder_layers: int = 2, ffn: int = 512, dropout: float = 0.1, lam_max: float = 2.0,
                 cross_attention: bool | None = None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self._init_shapes(cfg, lam_max)
        _check_sizes(d_model, num_heads, ffn, dropout)
        check_int("num_encoder_layers", num_encoder_layers, low=1)
        check_int("num_decoder_layers", num_decoder_layers, low=1)
        if cross_attention is not None:
            self.cross_attention = bool(cross_attention)
        self.d_model = int(d_model)
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.embed = nnx.Linear(1, d_model, **kw)
        self.embed_drop = nnx.Dropout(dropout, rngs=rngs)
        self.queries = nnx.Param(
            nnx.initializers.normal(1.0)(rngs.params(), (self.num_outputs, d_model), param_dtype))
        self.query_drop = nnx.Dropout(dropout, rngs=rngs)
        layer = dict(d_model=d_model, num_heads=num_heads, ffn=ffn, dropout=dropout, **kw)
        self.encoder = nnx.List([_Layer(cross=False, **layer) for _ in range(num_encoder_layers)])
        self.decoder = nnx.List([_Layer(cross=self.cross_attention, **layer) for _ in range(num_decoder_layers)])
        self.head = nnx.Linear(d_model, 1, **kw)

    def __call__(self, users):
        z = self._tokens(users)  # (B, 2K)
        B, T_in = z.shape
        dt = self.embed.kernel[...].dtype
        h = self.embed(z[..., None].astype(dt)) + sinusoidal_positions(T_in, self.d_model, dt)
        h = self.embed_drop(h)
        for layer in self.encoder:
            h = layer(h)
        T = self.num_outputs
        q = self.queries[...] + sinusoidal_positions(T, self.d_model, dt)
        q = self.query_drop(jnp.broadcast_to(q, (B, T, self.d_model)))
        if self.cross_attention:
            for layer in self.decoder:
                q = layer(q, h)
        else:
            s = jnp.concatenate([h, q], axis=1)
            for layer in self.decoder:
                s = layer(s)
            q = s[:, T_in:]
        return self._split(self.head(q)[..., 0], users)


class KDLTransformerOCA(KDLTransformer):
    """KDL-Transformer-OCA (JB Table I): :class:`KDLTransformer` with ``cross_attention=False``."""

    cross_attention = False


class BlackBoxTransformer(KDLTransformer):
    """Black-box Transformer (JB §V; Table I "without cross attn."): predicts X and W directly.

    The architecture of :class:`KDLTransformerOCA` with ``N + N L + 2 N K`` output
    tokens ``[x_end, spacing, Re/Im W]``; positions decoded as JB eqs. (53)-(55),
    W scaled to the budget (:func:`jaxpass.learn.decode.blackbox_decode`), no KKT map.
    """

    cross_attention = False
    direct = True


# ------------------------------------------------------------------ ResNets
class _Block(nnx.Module):
    """Pre-LN residual MLP block ``x + Drop(W2 ReLU(W1 LN(x)))``."""

    def __init__(self, width, hidden, dropout, *, param_dtype, rngs):
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.norm = nnx.LayerNorm(width, epsilon=1e-5, **kw)
        self.lin1 = nnx.Linear(width, hidden, **kw)
        self.lin2 = nnx.Linear(hidden, width, **kw)
        self.drop = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x):
        return x + self.drop(self.lin2(jax.nn.relu(self.lin1(self.norm(x)))))


class KDLResNet(_ModelBase):
    """KDL-ResNet (JB Table I, "50 layers"): a residual MLP with the KDL head.

    ``z (2K) -> Linear(width) -> num_blocks x [x + Drop(W2 ReLU(W1 LN(x)))] -> LN ->
    Linear(N + N L + 2K)``. Each block holds two linear layers, so the default
    ``num_blocks = 24`` is 2 * 24 + 2 = 50 linear layers (the paper's "50-layer
    ResNet"; its block layout is not printed). ``num_blocks`` in ``[1, 50]``.
    Decoded by :func:`jaxpass.learn.decode.kdl_decode`.
    """

    def __init__(self, cfg: PassConfig, *, width: int = 256, hidden: int = 512, num_blocks: int = 24,
                 dropout: float = 0.1, lam_max: float = 2.0, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self._init_shapes(cfg, lam_max)
        check_int("width", width, low=1)
        check_int("hidden", hidden, low=1)
        check_int("num_blocks", num_blocks, low=1, high=50)
        check_number("dropout", dropout, low=0.0, high=1.0)
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.inp = nnx.Linear(2 * self.num_users, width, **kw)
        self.blocks = nnx.List([_Block(width, hidden, dropout, **kw) for _ in range(num_blocks)])
        self.norm = nnx.LayerNorm(width, epsilon=1e-5, **kw)
        self.head = nnx.Linear(width, self.num_outputs, **kw)

    def __call__(self, users):
        z = self._tokens(users)
        h = self.inp(z.astype(self.inp.kernel[...].dtype))
        for block in self.blocks:
            h = block(h)
        return self._split(self.head(self.norm(h)), users)


class BlackBoxResNet(KDLResNet):
    """Black-box ResNet (JB §V, Table I): :class:`KDLResNet` predicting X and W directly
    (``N + N L + 2 N K`` outputs, :func:`jaxpass.learn.decode.blackbox_decode`)."""

    direct = True


# --------------------------------------------------------- short-term net
class ShortTermNet(nnx.Module):
    """Two-timescale short-term network (TT §III-C, eq. (17); docs/model.md §4): H -> KKT duals.

    Input: the slot's effective channel ``H (B, K, N)`` complex (the package's
    ``(K, N)`` convention: row k is user k) and its mean per-user SNR
    ``snr = P ||H||_F^2 / (K sigma^2)`` ``(B,)`` (dimensionless, linear), which
    the normalised channel no longer carries. Normalisation: ``Hn = H / ||H||_F``
    per slot; user k's token is ``[Re Hn[k], Im Hn[k], log10(snr) - 2]`` (``2N +
    1`` features; ``log10(snr) - 2`` is ``(SNR_dB - 20) / 10``). A linear embedding
    and ``num_layers`` bidirectional self-attention layers over the K user tokens
    (no positional code: permuting the users permutes the outputs), then a linear
    head to two scalars per user. This reads TT's "Transformer of [9]" as its
    encoder over the slot's CSI; the output is decoded by
    :func:`jaxpass.learn.decode.short_term_duals` to ``lam (B, K) >= 0``
    [1/|H|^2] and ``share (B, K) >= 0`` summing to one, for
    ``beamforming.kkt(H, lam, share, P)``.

    Use :meth:`duals` for batches and :func:`duals_fn` for
    ``jaxpass.optimize.ssca.kkt_solver``.
    """

    def __init__(self, cfg: PassConfig, *, d_model: int = 256, num_heads: int = 4, num_layers: int = 2,
                 ffn: int = 512, dropout: float = 0.1, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.num_users, self.num_waveguides, self.num_pinches = _shapes(cfg)
        _check_sizes(d_model, num_heads, ffn, dropout)
        check_int("num_layers", num_layers, low=1)
        kw = dict(param_dtype=param_dtype, rngs=rngs)
        self.embed = nnx.Linear(2 * self.num_waveguides + 1, d_model, **kw)
        self.embed_drop = nnx.Dropout(dropout, rngs=rngs)
        layer = dict(d_model=d_model, num_heads=num_heads, ffn=ffn, dropout=dropout, **kw)
        self.layers = nnx.List([_Layer(cross=False, **layer) for _ in range(num_layers)])
        self.head = nnx.Linear(d_model, 2, **kw)

    def _inputs(self, H, snr):
        """Checked ``H (B, K, N)``, ``snr (B,)`` and the parameters' dtype (shared by the subclasses)."""
        H = jnp.asarray(H)
        check_shape("H", H, (None, self.num_users, self.num_waveguides))
        snr = jnp.asarray(snr)
        check_shape("snr", snr, (H.shape[0],))
        return H, snr, self.embed.kernel[...].dtype

    def __call__(self, H, snr):
        """``H (B, K, N)`` complex, ``snr (B,)`` -> raw logits ``(B, K, 2)`` (``[..., 0]`` lam, ``[..., 1]`` share)."""
        H, snr, dt = self._inputs(H, snr)
        re, im = jnp.real(H).astype(dt), jnp.imag(H).astype(dt)
        nrm = jnp.sqrt(jnp.sum(re**2 + im**2, axis=(-2, -1), keepdims=True))
        nrm = jnp.where(nrm > 0, nrm, 1.0)
        snr_feat = jnp.log10(jnp.maximum(snr.astype(dt), jnp.finfo(dt).tiny)) - 2.0
        feat = jnp.concatenate(
            [re / nrm, im / nrm, jnp.broadcast_to(snr_feat[:, None, None], re.shape[:-1] + (1,))], axis=-1)
        h = self.embed_drop(self.embed(feat))
        for layer in self.layers:
            h = layer(h)
        return self.head(h)

    def duals(self, cfg: PassConfig, H):
        """``(lam (B, K) >= 0, share (B, K) >= 0, summing to 1)`` for ``H (B, K, N)`` (TT eq. (17))."""
        _decode.check_model_config(self, cfg)
        return _decode.short_term_duals(cfg, self(H, _decode.mean_snr(cfg, H)))


@dataclasses.dataclass(frozen=True)
class _ShortTermApply:
    """``(params, rest, cfg, H (K, N)) -> (lam (K,), share (K,))``; hashable by the graph definition."""

    graphdef: object

    def __call__(self, params, rest, cfg, H):
        model = nnx.merge(self.graphdef, params, rest)
        lam, share = model.duals(cfg, H[None])
        return lam[0], share[0]


def duals_fn(model: ShortTermNet):
    """A ``duals(cfg, H (K, N)) -> (lam (K,), share (K,))`` for ``jaxpass.optimize.ssca.kkt_solver``.

    A ``jax.tree_util.Partial`` holding the model's ``nnx.Param`` state and its
    other state as traced leaves (``nnx.split``; merged back inside the call), so
    it can be a ``jax.jit`` argument and a later parameter update needs no
    recompilation. The model's current mode is kept: call ``model.eval()`` first
    for deterministic duals (in train mode the dropout key is not advanced
    between calls).
    """
    if not isinstance(model, ShortTermNet):
        raise TypeError(f"duals_fn needs a ShortTermNet, got {type(model).__name__}")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return Partial(_ShortTermApply(graphdef), params, rest)


ARCHITECTURES: dict[str, type] = {
    "kdl-transformer": KDLTransformer,
    "kdl-transformer-oca": KDLTransformerOCA,
    "kdl-resnet": KDLResNet,
    "blackbox-transformer": BlackBoxTransformer,
    "blackbox-resnet": BlackBoxResNet,
}
"""Registry of the user-to-(X, W) models by name (``ARCHITECTURES[name](cfg, rngs=...)``)."""
