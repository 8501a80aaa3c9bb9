"""L2Norm: unit norms over the chosen axes, the per-channel scale, eps safety at zero."""

import pytest
import torch

from seqlab.nn import L2Norm


def test_rows_get_unit_norm_and_match_f_normalize():
    torch.manual_seed(0)
    x = torch.randn(4, 7, dtype=torch.float64)
    y = L2Norm()(x)
    torch.testing.assert_close(y.norm(dim=1), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(y, torch.nn.functional.normalize(x, dim=-1))


def test_channel_axis_of_an_image_batch_with_a_learnt_scale():
    # The notes' example: A[width, height, channel] normalized over the channels, then D = C s_z.
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)  # (B, C, H, W), channels at dim 1
    layer = L2Norm(1, channels=5, init=20.0).double()
    y = layer(x)
    torch.testing.assert_close(y.norm(dim=1), torch.full((2, 3, 4), 20.0, dtype=torch.float64))
    with torch.no_grad():
        layer.scale.copy_(torch.arange(1.0, 6.0))
    y = layer(x)
    c = x / x.pow(2).sum(1, keepdim=True).sqrt()
    torch.testing.assert_close(y, c * torch.arange(1.0, 6.0, dtype=torch.float64).view(1, 5, 1, 1))
    assert torch.autograd.gradcheck(lambda t: layer(t), (x.clone().requires_grad_(True),))
    assert "channels=5" in repr(layer)


def test_several_axes_and_whole_samples():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5)
    torch.testing.assert_close(L2Norm((1, 2))(x).flatten(1).norm(dim=1), torch.ones(3))
    torch.testing.assert_close(L2Norm(None)(x), L2Norm((1, 2))(x))
    torch.testing.assert_close(L2Norm(None)(x).flatten(1), L2Norm(-1)(x.flatten(1)))


def test_a_zero_vector_maps_to_zero_with_a_finite_gradient():
    x = torch.zeros(2, 3)
    x[1] = torch.tensor([3.0, 4.0, 0.0])
    x.requires_grad_(True)
    y = L2Norm(-1, channels=3)(x)
    y.sum().backward()
    assert torch.equal(y[0].detach(), torch.zeros(3))
    torch.testing.assert_close(y[1].detach(), torch.tensor([0.6, 0.8, 0.0]))
    assert torch.isfinite(x.grad).all()


def test_errors():
    with pytest.raises(ValueError, match="single dim"):
        L2Norm((1, 2), channels=3)
    with pytest.raises(ValueError, match="eps"):
        L2Norm(eps=0)
    with pytest.raises(ValueError, match="expected 3 channels along dim 1"):
        L2Norm(1, channels=3)(torch.randn(2, 4, 5))
