"""Learning for PASS (JB §IV, TT §III-C; docs/model.md §3.4, §4): flax.nnx models and their decoders.

::

    from flax import nnx
    from jaxpass.learn import KDLTransformer, predict, sum_rate_loss
    model = KDLTransformer(cfg, rngs=nnx.Rngs(0))
    X, W = predict(model, cfg, users)          # users (B, K, 2) -> (B, N, L), (B, N, K)
    loss, aux = sum_rate_loss(model, cfg, users)
"""

from jaxpass.learn import decode, models
from jaxpass.learn.decode import predict, sum_rate_loss
from jaxpass.learn.models import (
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

__all__ = [
    "ARCHITECTURES",
    "BlackBoxResNet",
    "BlackBoxTransformer",
    "KDLResNet",
    "KDLTransformer",
    "KDLTransformerOCA",
    "ShortTermNet",
    "count_parameters",
    "decode",
    "duals_fn",
    "models",
    "predict",
    "sum_rate_loss",
]
