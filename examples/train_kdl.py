"""Train a (tiny) KDL model for a few steps, checkpoint, resume, evaluate on held-out drops.

KKT-guided dual learning (JB §IV): the network predicts the pinch layout and the
KKT duals, the beamformer is the KKT map (JB eq. (44)); the loss is minus the
mean sum rate under the true channel. The same as::

    jaxpass train --model kdl-resnet --model-arg width=32 ... --out DIR
    jaxpass train ... --resume
    jaxpass evaluate --checkpoint DIR

Swap in ``model="kdl-transformer"`` (the paper's main model; its default size is
the paper's, d_model 256, 4 heads, 2 + 2 layers, FFN 512) for a real run; this
example keeps a tiny KDL-ResNet so it runs in seconds.
"""

import tempfile

import numpy as np

import jaxpass as jp
from jaxpass.learn.train import TrainOptions, load_checkpoint, train

cfg = jp.PassConfig.joint_beamforming()  # K = N = 4, L = 8, 30 GHz, P = 10 dBm
options = TrainOptions(
    model="kdl-resnet",
    model_kwargs={"width": 32, "hidden": 64, "num_blocks": 2},
    steps=12, batch_size=16, train_drops=256, test_drops=64, learning_rate=1e-3, warmup_steps=4,
    eval_every=6, log_every=3, checkpoint_every=6,
)


class Stop(Exception):
    pass


def stop_after_6(record):  # simulate an interrupted run (a crash, a pre-empted job)
    if record["step"] == 6:
        raise Stop


with tempfile.TemporaryDirectory() as out:
    try:
        train(cfg, options, out_dir=out, callback=stop_after_6, progress=False)
    except Stop:
        print("interrupted at step 6; checkpoint saved")
    result = train(cfg, options, out_dir=out, resume=True, progress=False)  # continues at step 6
    for r in result.history:
        if "test_sum_rate_mean" in r:
            print(f"step {r['step']:3d}: test sum rate {r['test_sum_rate_mean']:.2f} ± {r['test_sum_rate_std']:.2f} bps/Hz")
    model, cfg2, meta = load_checkpoint(out)  # what `jaxpass evaluate --checkpoint DIR` loads
    print(f"checkpoint at step {meta['step']}: {meta['model']} {meta['model_kwargs']}, "
          f"{result.samples_per_s:.0f} training samples/s on {result.devices} device(s)")

    from jaxpass.learn.data import sample_drops
    from jaxpass.learn.train import evaluate

    fresh = sample_drops(123, cfg2, 64)  # drops from another seed than the training and test drops
    rates = np.asarray(evaluate(model, cfg2, fresh))
    print(f"held-out sum rate (64 fresh drops): {rates.mean():.2f} ± {rates.std():.2f} bps/Hz")
