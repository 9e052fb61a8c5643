"""Learning for PASS (JB §IV, TT §III-C; docs/model.md §3.4, §4): flax.nnx models and their decoders.

::

    from flax import nnx
    from jaxpass.learn import KDLTransformer, predict, sum_rate_loss
    model = KDLTransformer(cfg, rngs=nnx.Rngs(0))
    X, W = predict(model, cfg, users)          # users (B, K, 2) -> (B, N, L), (B, N, K)
    loss, aux = sum_rate_loss(model, cfg, users)

Needs the ``[learn]`` extra (flax, orbax-checkpoint): ``pip install 'jaxpass[learn]'``;
without it, importing this package raises one ``ModuleNotFoundError`` that says so.
"""

from jaxpass._extras import require as _require

_require("flax", "learn", "jaxpass.learn")  # before any model module imports flax: one clear line

from jaxpass.learn import decode, models, short_term  # noqa: E402
from jaxpass.learn.decode import predict, sum_rate_loss  # noqa: E402
from jaxpass.learn.models import (  # noqa: E402
    ARCHITECTURES,
    BlackBoxResNet,
    BlackBoxTransformer,
    KDLResNet,
    KDLTransformer,
    KDLTransformerOCA,
    ShortTermNet,
    count_parameters,
    duals_fn,
)
from jaxpass.learn.short_term import (  # noqa: E402
    GramShortTermNet,
    ShortTermOptions,
    fit_short_term,
    held_duals_fn,
    load_short_term,
    save_short_term,
    short_term_score,
)

__all__ = [
    "ARCHITECTURES",
    "BlackBoxResNet",
    "BlackBoxTransformer",
    "GramShortTermNet",
    "KDLResNet",
    "KDLTransformer",
    "KDLTransformerOCA",
    "ShortTermNet",
    "ShortTermOptions",
    "count_parameters",
    "decode",
    "duals_fn",
    "fit_short_term",
    "held_duals_fn",
    "load_short_term",
    "models",
    "predict",
    "save_short_term",
    "short_term",
    "short_term_score",
    "sum_rate_loss",
]
