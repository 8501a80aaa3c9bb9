"""BatchNorm folding: the same outputs, the norms gone, the original model untouched."""

import pytest
import torch
from torch import nn

from seqlab.compress.fold import fold_batchnorm


def _trained_stats(model, x):
    model.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics that differ from the init
            model(x + torch.randn_like(x))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            with torch.no_grad():
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1.0, 1.0)
    return model.eval()


def _cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, affine=False), nn.ReLU()),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4),
    )


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_folded_model_gives_the_same_outputs_without_its_norms(dtype, tol):
    torch.manual_seed(0)
    x = torch.randn(10, 3, 6, 6, dtype=dtype)
    model = _trained_stats(_cnn().to(dtype), x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded, count = fold_batchnorm(model)
    assert count == 3
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=tol, rtol=tol)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # original untouched


def test_norms_that_cannot_fold_stay():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.BatchNorm1d(4),                      # first in its Sequential
        nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4),  # after a ReLU
        nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False),  # no running statistics
    ).eval()
    folded, count = fold_batchnorm(model)
    assert count == 0
    assert sum(isinstance(m, nn.BatchNorm1d) for m in folded.modules()) == 3


def test_the_benchmark_folds_every_norm_and_reports_the_same_outputs():
    from conftest import load_benchmark

    bench = load_benchmark("bn_fold")
    result = bench.measure(repeats=3, batch=4, widths=(4, 8), size=8)
    assert result["pairs"] == 5 and result["difference"] < 1e-4  # 4 convolutions and the linear layer
    assert result["original_ms"] > 0 and result["folded_ms"] > 0 and result["interval"][0] <= result["ratio"]
    assert "| folded |" in bench.render(result)
