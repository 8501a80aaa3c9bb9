"""Truncated-SVD compression: rank rules, Eckart-Young factors, and whole models at full and low rank."""

import json

import pytest
import torch

from seqlab.compress import compress_svd
from seqlab.compress.svd import factor, rank_for
from seqlab.nn import Recurrent


def test_rank_rules():
    S = torch.tensor([3.0, 2.0, 1.0])  # energies kept: 9/14, 13/14, 1
    assert rank_for(S, (3, 5), energy=0.5) == 1
    assert rank_for(S, (3, 5), energy=0.9) == 2
    assert rank_for(S, (3, 5), energy=0.95) == 3
    assert rank_for(S, (3, 5), energy=1.0) == 3
    # fraction: the largest r with r (m + n) <= fraction m n, at least 1.
    assert rank_for(torch.ones(64), (64, 256), fraction=0.5) == 25  # 25 * 320 = 8000 <= 8192
    assert rank_for(torch.ones(64), (64, 256), fraction=0.001) == 1
    assert rank_for(torch.ones(64), (64, 256), fraction=1.0) == 64
    for bad in (dict(), dict(energy=0.9, fraction=0.5), dict(energy=0.0), dict(fraction=1.5)):
        with pytest.raises(ValueError):
            rank_for(S, (3, 5), **bad)


def test_factors_are_the_best_low_rank_approximation():
    torch.manual_seed(0)
    W = torch.randn(12, 7, dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    for r in (1, 3, 7):
        A, B = factor(W, r)
        assert A.shape == (12, r) and B.shape == (r, 7)
        torch.testing.assert_close(A @ B, (U[:, :r] * S[:r]) @ Vh[:r])
        # Eckart-Young: the error is the energy of the singular values left out.
        torch.testing.assert_close(torch.linalg.matrix_norm(W - A @ B) ** 2, (S[r:] ** 2).sum())


def test_full_rank_leaves_the_model_unchanged():
    torch.manual_seed(0)
    rnn = Recurrent("nested_lstm", 5, 6, 2).double()
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    want = rnn(x)[0]
    report = compress_svd(rnn, energy=1.0)
    names = {f.name for f in report}
    # Both layers' outer and inner matrices, inputs and recurrent; no biases.
    assert names == {f"cells.{k}.{n}" for k in (0, 1)
                     for n in ("weight_ih", "weight_hh", "inner_weight_ih", "inner_weight_hh")}
    assert all(f.rank == min(f.shape) and f.energy == pytest.approx(1.0) for f in report)
    torch.testing.assert_close(rnn(x)[0], want)


def test_low_rank_keeps_the_reported_energy_and_the_fraction_rule_halves_the_numbers():
    torch.manual_seed(0)
    rnn = Recurrent("lstm", 16, 32, 2, bidirectional=True)
    before = {n: p.detach().clone() for n, p in rnn.named_parameters()}
    report = compress_svd(rnn, energy=0.9)
    assert len(report) == 8  # 2 layers x 2 directions x (input, recurrent)
    for f in report:
        W0, W = before[f.name], dict(rnn.named_parameters())[f.name].detach()
        assert int(torch.linalg.matrix_rank(W, rtol=1e-4)) == f.rank < min(f.shape)  # float32 products
        assert f.energy >= 0.9
        kept = 1 - float(torch.linalg.matrix_norm(W0 - W) ** 2 / torch.linalg.matrix_norm(W0) ** 2)
        assert kept == pytest.approx(f.energy, abs=1e-5)
        # Random weights have a flat spectrum: 90% of the energy needs most of the rank, and the
        # factors would take more numbers than the matrix, which is then what a store would keep.
        assert f.params == min(f.rank * sum(f.shape), f.dense)
    for n, p in rnn.named_parameters():
        if "bias" in n:
            assert torch.equal(p, before[n])
    halved = Recurrent("lstm", 16, 32, 2, bidirectional=True)
    for f in compress_svd(halved, fraction=0.5):
        assert f.params == f.rank * sum(f.shape) <= 0.5 * f.dense < (f.rank + 1) * sum(f.shape)


def test_recurrent_only_and_input_only():
    rnn = Recurrent("gru", 4, 6)
    assert [f.name for f in compress_svd(rnn, fraction=0.5, inputs=False)] == ["cells.0.weight_hh"]
    assert [f.name for f in compress_svd(rnn, fraction=0.5, recurrent=False)] == ["cells.0.weight_ih"]
    with pytest.raises(ValueError, match="nothing to compress"):
        compress_svd(rnn, energy=0.9, recurrent=False, inputs=False)


def test_the_g2p_benchmark_scores_each_cut_and_full_rank_scores_as_the_original(tmp_path, monkeypatch):
    from conftest import TINY, load_benchmark, synthetic_g2p

    from seqlab.tasks.g2p import G2PConfig, G2PTask
    from seqlab.train import Trainer

    task = G2PTask(G2PConfig(**{**TINY, "epochs": 4}), synthetic_g2p())
    torch.manual_seed(0)
    Trainer(task.build_model(), task, task.config, tmp_path / "run").fit(log=lambda *_: None)
    bench = load_benchmark("svd_g2p")
    monkeypatch.setattr(bench, "load_g2p", lambda: synthetic_g2p(seed=1))
    monkeypatch.setattr(bench, "RULES", [("energy", 1.0), ("fraction", 0.25)])
    assert bench.main(["--checkpoint", str(tmp_path / "run" / "best"), "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "svd_g2p.json").read_text())
    original, full, quarter = rows
    assert full["wer"] == original["wer"] and full["per"] == original["per"]
    assert full["factored"] == full["dense"] > 0 and quarter["factored"] <= 0.25 * quarter["dense"]
    assert len(quarter["ranks"]) == quarter["matrices"] == 6  # input and recurrent of 2 encoder cells, 1 decoder cell
    page = (tmp_path / "out" / "svd_g2p.md").read_text()
    assert "| fraction 0.25 |" in page and "--checkpoint" in page
