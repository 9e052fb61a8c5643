"""JB Table I learned rows (jaxpass.experiments.table1.learned_row) and the training-throughput benchmark."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from benchmarks import learn_table1
from jaxpass.cli import main
from jaxpass.experiments import table1

ROWS = ("kdl_resnet", "aligned", "aligned_refine")


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learned")
    s = dataclasses.replace(table1.quick_settings(), rows=ROWS, learned_dir=str(folder))
    return s, folder, table1.run_table1(s)


def test_learned_rows_train_evaluate_and_refine(learned):
    s, folder, results = learned
    rows = {r.row: r for r in results["tables"][8]}
    assert list(rows) == list(ROWS)
    for r in rows.values():
        assert r.rates.shape == (s.drops,) and np.all(np.isfinite(r.rates)) and bool(np.all(r.feasible))
        assert r.seconds > 0 and r.model is not None
    kdl = rows["kdl_resnet"].summary()
    assert kdl["paper"] == 43.03 and kdl["source"].startswith("trained here")
    assert kdl["train"]["steps"] == s.learn["steps"] and kdl["train"]["samples_per_s"] > 0
    assert kdl["train"]["in_sample_sum_rate"] is not None
    evals = [h for h in kdl["history"] if h.get("test_sum_rate_mean") is not None]
    assert [h["step"] for h in evals] == [0, 2, 4]  # eval_every = 2 on the table's drops
    assert evals[-1]["test_sum_rate_mean"] == pytest.approx(float(np.mean(rows["kdl_resnet"].rates)), rel=1e-4)
    assert (folder / "kdl-resnet-L8" / "checkpoints").is_dir()
    # the refined layout starts at the aligned model's decode (the same model) and never loses
    assert rows["aligned_refine"].model is rows["aligned"].model
    assert np.all(rows["aligned_refine"].rates >= rows["aligned"].rates - 1e-3)
    assert rows["aligned"].summary()["train"]["steps"] == s.aligned["steps"]
    text = table1.markdown(results)
    assert "KDL-ResNet (JB)" in text and "43.03" in text and "KDL-Transformer (JB, paper)" in text
    assert "(with learned rows)" in text and f"- KDL-ResNet (JB): trained here (saved to {folder}" in text
    assert "- aligned model + refinement (jaxpass): the aligned row's model" in text
    json.dumps(table1.payload(results))  # serialisable: the model is not in the JSON


def test_learned_row_loads_a_saved_model_and_refuses_another_scenario(learned):
    s, folder, results = learned
    first = results["tables"][8][0]
    cfg = table1.table_config(8, s.power_dbm)
    users = table1.table_drops(cfg, s.drops, s.seed)
    again = table1.learned_row(cfg, users, "kdl_resnet", s)
    assert again.extra["source"].startswith("checkpoint")
    assert again.extra["history"] == first.extra["history"]  # train.read_metrics: the run's metrics.jsonl
    np.testing.assert_allclose(again.rates, first.rates, rtol=1e-6)
    shutil.copytree(folder / "kdl-resnet-L8", folder / "kdl-resnet-L4")
    cfg4 = table1.table_config(4, s.power_dbm)
    with pytest.raises(ValueError, match="trained on another scenario"):
        table1.learned_row(cfg4, table1.table_drops(cfg4, s.drops, s.seed), "kdl_resnet", s)
    with pytest.raises(ValueError, match="holds this table's test drops"):
        table1.learned_row(cfg, users, "kdl_resnet", dataclasses.replace(s, seed=s.learn_seed))
    with pytest.raises(ValueError, match="unknown learned row"):
        table1.learned_row(cfg, users, "uniform_zf", s)


def test_learned_dir_is_checked_against_the_request(learned, monkeypatch, capsys):
    """The saved model's name (not the folder's), scenario and steps must match the row and --train-steps; checked
    before any row runs. A relative --learned-dir works."""
    s, folder, results = learned
    cfg = table1.table_config(8, s.power_dbm)
    users = table1.table_drops(cfg, s.drops, s.seed)
    shutil.copytree(folder / "kdl-resnet-L8", folder / "kdl-transformer-L8")  # a ResNet under a Transformer's name
    try:
        with pytest.raises(ValueError, match="holds model 'kdl-resnet', not 'kdl-transformer'"):
            table1.learned_row(cfg, users, "kdl_transformer", s)
        with pytest.raises(ValueError, match="is at step 4, but the table asks for 8 training steps"):
            table1.learned_row(cfg, users, "kdl_resnet", dataclasses.replace(s, learn={**s.learn, "steps": 8}))
        monkeypatch.chdir(folder.parent)
        quick = ["reproduce", "table1", "--quick", "--learned-dir", folder.name, "--out", "t1"]
        for argv, needle in [(["--rows", "kdl_transformer"], "holds model 'kdl-resnet', not 'kdl-transformer'"),
                             (["--rows", "kdl_resnet", "--train-steps", "8"], "give --train-steps 4 to use it")]:
            assert main(quick + argv) == 2
            out, err = capsys.readouterr()
            assert out == "" and needle in err and len(err.strip().splitlines()) == 1, err
    finally:
        shutil.rmtree(folder / "kdl-transformer-L8")
    assert main(quick + ["--rows", "kdl_resnet", "--quiet"]) == 0  # relative folders, loaded (not trained)
    out = capsys.readouterr().out
    assert f"KDL-ResNet (JB): checkpoint {folder / 'kdl-resnet-L8'} (step 4)" in out, out
    assert (folder.parent / "t1" / "table1.json").is_file()


def test_reproduce_table1_learned_dir_must_be_a_folder(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert main(["reproduce", "table1", "--quick", "--rows", "aligned", "--learned-dir", str(path),
                 "--out", str(tmp_path / "o")]) == 2
    assert "--learned-dir" in capsys.readouterr().err


def test_throughput_measures_the_peak_fraction_and_reports():
    s = learn_table1.quick_settings()
    tp = learn_table1.throughput(table1.table_config(8), s)
    for name in ("train step", "inference"):
        d = tp[name]
        assert d["seconds"] > 0 and d["samples_per_s"] == pytest.approx(s.throughput_batch / d["seconds"])
        assert d["flops"] is not None and d["flops"] > 0
        # both fractions are this row's FLOP rate over the named peak, exactly
        assert d["peak_fraction"] == pytest.approx(d["flops"] / d["seconds"] / tp["peak_flops_per_s"])
        assert d["nominal_peak_fraction"] == pytest.approx(d["flops"] / d["seconds"] / tp["nominal_peak"]["flops_per_s"])
    assert tp["train step"]["flops"] > 2 * tp["inference"]["flops"]  # backward + update cost more than forward
    assert tp["acceptance"]["status"] in ("PASS", "FAIL") and tp["peak_flops_per_s"] > 0
    # a measured matmul cannot run much above the CPU's nominal peak (turbo clocks: 1.5x margin)
    assert 0 < tp["matmul_nominal_fraction"] < 1.5
    text = learn_table1.report({"throughput": tp, "rows": []})
    assert "fraction of the f32 matmul peak (same run)" in text and "fraction of the nominal f32 peak" in text
    assert "of the nominal" in text and "train step" in text


def test_nominal_peak_from_the_cpu_model():
    from benchmarks.common import nominal_peak_flops

    info = "model name\t: Test CPU @ 2.00GHz\ncpu MHz\t\t: 2000.000\nflags\t\t: fpu sse avx avx2 fma\n"
    nom = nominal_peak_flops(info, cores=2)
    assert nom["flops_per_s"] == 2 * 8 * 2 * 2 * 2.0e9 and nom["model"] == "Test CPU @ 2.00GHz"
    assert nominal_peak_flops(info.replace("avx2 fma", "avx2 fma avx512f"), cores=1)["simd_f32_lanes"] == 16
    assert nominal_peak_flops("", cores=1)["flops_per_s"] is None
