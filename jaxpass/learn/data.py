"""Training data for the learned models: user drops and a deterministic batch order.

A *drop* is one draw of the K users, uniform over the ``S_x x S_y`` area
(:func:`jaxpass.sample_users`, docs/model.md §1). Two sources:

* a **fixed split** (the authors' protocol, JB §V: 30 000 training and 64 test
  drops, each from its own seed): the training drops are shuffled once per epoch
  by a permutation that depends only on ``(data_seed, epoch)``;
* a **stream**: every step draws ``batch_size`` fresh drops from
  ``fold_in(key(data_seed), step)``.

Either way batch ``s`` is a pure function of ``(seeds, s)``, so a run resumed at
step ``s`` sees exactly the batches an uninterrupted run would
(:func:`batch_indices`, :func:`stream_batch`). The test drops come from
``test_seed`` (different from ``data_seed``) and never appear in training.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxpass._checks import check_int
from jaxpass.config import PassConfig
from jaxpass.geometry import sample_users


def sample_drops(seed: int, cfg: PassConfig, count: int, dtype=None) -> np.ndarray:
    """``count`` drops ``(count, K, 2)`` [m] from ``jax.random.key(seed)``, as a host NumPy array.

    Drawn in float32 (so float32 and float64 runs train on the same drops) and
    cast to ``dtype`` (default float32).
    """
    check_int("count", count, low=1, unit="drops")
    with jax.enable_x64(False):
        users = sample_users(jax.random.key(int(seed)), cfg, (int(count),))
        users = np.asarray(users, np.float32)
    return users.astype(dtype or np.float32)


def steps_per_epoch(train_drops: int, batch_size: int) -> int:
    """Full batches per pass over the training split (the last partial batch is dropped)."""
    check_int("train_drops", train_drops, low=1, unit="drops")
    check_int("batch_size", batch_size, low=1, high=train_drops, unit="drops")
    return train_drops // batch_size


def epoch_permutation(data_seed: int, epoch: int, train_drops: int) -> np.ndarray:
    """The order of the training drops in ``epoch``: a permutation of ``range(train_drops)``.

    A NumPy ``Generator`` seeded with ``(data_seed, epoch)`` (a ``SeedSequence``):
    the same on every host and platform, independent of the other epochs.
    """
    rng = np.random.default_rng([int(data_seed) & 0xFFFFFFFF, int(epoch)])
    return rng.permutation(int(train_drops))


def position(step: int, per_epoch: int) -> tuple[int, int]:
    """``(epoch, batch index within the epoch)`` of global step ``step`` (0-based)."""
    return divmod(int(step), int(per_epoch))


def batch_indices(step: int, *, data_seed: int, train_drops: int, batch_size: int) -> np.ndarray:
    """Indices into the training split of the batch of global step ``step``: ``(batch_size,)`` ints."""
    per_epoch = steps_per_epoch(train_drops, batch_size)
    epoch, i = position(step, per_epoch)
    perm = epoch_permutation(data_seed, epoch, train_drops)
    return perm[i * batch_size:(i + 1) * batch_size]


def stream_batch(step: int, cfg: PassConfig, *, data_seed: int, batch_size: int, dtype=None) -> np.ndarray:
    """Fresh drops ``(batch_size, K, 2)`` [m] of step ``step`` of a stream (key ``fold_in(key(data_seed), step)``)."""
    with jax.enable_x64(False):
        key = jax.random.fold_in(jax.random.key(int(data_seed)), int(step))
        users = np.asarray(sample_users(key, cfg, (int(batch_size),)), np.float32)
    return users.astype(dtype or np.float32)
