"""Photometric losses (runner.losses.photometric) and edge-aware smoothness (runner.losses.smoothness)."""

import pytest
import torch
import torch.nn.functional as F

from runner.losses.photometric import (
    automask,
    box_mean3x3,
    box_mean3x3_adjoint,
    mean_reprojection,
    min_reprojection,
    photometric_error,
    ssim,
)
from runner.losses.smoothness import edge_aware_smoothness


def images(B=2, C=3, H=8, W=10, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, C, H, W, generator=g, dtype=dtype), torch.rand(B, C, H, W, generator=g, dtype=dtype)


# ---------------------------------------------------------------------------------------------- SSIM
def test_ssim_zero_for_identical_images_and_symmetric():
    x, y = images()
    assert ssim(x, x).abs().max() == 0
    assert torch.allclose(ssim(x, y), ssim(y, x), atol=1e-15)
    d = ssim(x, y)
    assert d.shape == x.shape and d.min() >= 0 and d.max() <= 1
    assert d.mean() > 0.2  # independent noise images are far apart


def test_ssim_reference_value_at_an_interior_pixel():
    """Recompute SSIM at pixel (3, 4) from its 3x3 windows by the textbook formula."""
    x, y = images(B=1, C=1)
    wx, wy = x[0, 0, 2:5, 3:6], y[0, 0, 2:5, 3:6]
    mx, my = wx.mean(), wy.mean()
    vx, vy = ((wx - mx) ** 2).mean(), ((wy - my) ** 2).mean()
    cxy = ((wx - mx) * (wy - my)).mean()
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert torch.allclose(ssim(x, y)[0, 0, 3, 4], (1 - s) / 2, atol=1e-12)


def test_ssim_reflection_padding_at_the_corner():
    """Corner windows mirror the image without repeating the edge (reflect, not replicate)."""
    x, y = images(B=1, C=1)
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
    assert xp[0, 0, 0, 0] == x[0, 0, 1, 1]
    # Changing a pixel that only enters the corner window through reflection changes the corner value.
    x2 = x.clone()
    x2[0, 0, 1, 1] += 0.3
    assert ssim(x2, y)[0, 0, 0, 0] != ssim(x, y)[0, 0, 0, 0]


def test_ssim_grows_with_a_brightness_offset():
    """Luminance differences count: a brightness offset of one image raises the dissimilarity."""
    x, _ = images(B=1)
    x = 0.2 + 0.5 * x
    assert ssim(x, x + 0.2).mean() > ssim(x, x + 0.01).mean() > 0


# ----------------------------------------------------------------------------------- photometric error
def test_photometric_error_range_and_components():
    x, y = images()
    e = photometric_error(x, y)
    assert e.shape == (2, 1, 8, 10)
    assert e.min() >= 0 and e.max() <= 1
    assert photometric_error(x, x).abs().max() == 0
    l1 = (x - y).abs().mean(1, keepdim=True)
    assert torch.allclose(photometric_error(x, y, alpha=0.0), l1)
    assert torch.allclose(photometric_error(x, y, alpha=1.0), ssim(x, y).mean(1, keepdim=True))
    assert torch.allclose(e, 0.85 * ssim(x, y).mean(1, keepdim=True) + 0.15 * l1)
    # The largest possible value: black against white.
    assert torch.allclose(photometric_error(torch.zeros_like(x), torch.ones_like(x), alpha=0.0), torch.ones_like(e))


def test_photometric_error_gradcheck_float64():
    x, y = images(B=1, C=2, H=4, W=4)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: photometric_error(a, y), (x,), fast_mode=True)


def test_photometric_bad_inputs():
    x, y = images()
    with pytest.raises(ValueError, match="alpha"):
        photometric_error(x, y, alpha=1.5)
    with pytest.raises(ValueError, match="of one shape"):
        photometric_error(x, y[..., :5])
    with pytest.raises(ValueError, match="at least 2x2"):
        ssim(x[..., :1, :], y[..., :1, :])


# ------------------------------------------------------------------------------ reprojection combination
def hand_errors():
    a = torch.tensor([[0.1, 0.5], [0.3, 0.9]]).reshape(1, 1, 2, 2)
    b = torch.tensor([[0.2, 0.4], [0.3, 0.1]]).reshape(1, 1, 2, 2)
    return a, b


def test_min_and_mean_reprojection_by_hand():
    a, b = hand_errors()
    assert torch.equal(min_reprojection([a, b]), torch.tensor([[0.1, 0.4], [0.3, 0.1]]).reshape(1, 1, 2, 2))
    assert torch.allclose(mean_reprojection([a, b]), torch.tensor([[0.15, 0.45], [0.3, 0.5]]).reshape(1, 1, 2, 2))
    assert torch.equal(min_reprojection([a]), a)
    with pytest.raises(ValueError, match="at least one"):
        min_reprojection([])
    with pytest.raises(ValueError, match="of one shape"):
        mean_reprojection([a, b[..., :1]])


def test_automask_by_hand():
    a, b = hand_errors()  # warped errors; per-pixel minimum [[0.1, 0.4], [0.3, 0.1]]
    identity_a = torch.tensor([[0.05, 0.9], [0.8, 0.2]]).reshape(1, 1, 2, 2)
    identity_b = torch.tensor([[0.5, 0.45], [0.2, 0.9]]).reshape(1, 1, 2, 2)
    # identity minimum [[0.05, 0.45], [0.2, 0.2]]: warping wins at (0, 1) and (1, 1) only.
    mask = automask([a, b], [identity_a, identity_b], noise_std=0.0)
    assert torch.equal(mask, torch.tensor([[0.0, 1.0], [0.0, 1.0]]).reshape(1, 1, 2, 2))


def test_automask_tie_break_is_seeded_and_random_for_a_static_camera():
    """Identical warped and unwarped errors (a static camera) tie everywhere; the noise decides."""
    e = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    m1 = automask([e, e], [e, e], generator=torch.Generator().manual_seed(7))
    m2 = automask([e, e], [e, e], generator=torch.Generator().manual_seed(7))
    assert torch.equal(m1, m2)
    assert 0.15 < m1.mean() < 0.35  # kept only where both noise draws are positive: 1/4 of the pixels
    assert automask([e], [e], noise_std=0.0).sum() == 0  # without noise, ties are masked out
    with pytest.raises(ValueError, match="differ"):
        automask([e], [e, e])


def test_automask_has_no_gradient():
    e = torch.rand(1, 1, 4, 4, requires_grad=True)
    assert not automask([e], [e + 1]).requires_grad


# -------------------------------------------------------------------------------------------- smoothness
def test_smoothness_zero_for_constant_disparity():
    _, image = images(B=2)
    disp = torch.full((2, 1, 8, 10), 0.3, dtype=torch.float64)
    assert edge_aware_smoothness(disp, image) == 0


def test_smoothness_smaller_across_image_edges_than_flat_regions():
    """The same disparity step costs less where the image has an edge at the same place."""
    H, W = 8, 10
    disp = torch.ones(1, 1, H, W)
    disp[..., 5:] = 2.0  # a vertical disparity edge between columns 4 and 5
    flat = torch.full((1, 3, H, W), 0.5)
    edge = flat.clone()
    edge[..., 5:] = 1.0
    assert edge_aware_smoothness(disp, edge) < 0.7 * edge_aware_smoothness(disp, flat)


def test_smoothness_by_hand_and_scale_invariant():
    disp = torch.tensor([[1.0, 3.0], [1.0, 3.0]]).reshape(1, 1, 2, 2)  # mean 2 -> [[0.5, 1.5], ...]
    image = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    # x: |0.5 - 1.5| * exp(-1) per row; y: 0.
    expected = torch.exp(torch.tensor(-1.0))
    assert torch.allclose(edge_aware_smoothness(disp, image), expected)
    assert torch.allclose(edge_aware_smoothness(5 * disp, image), expected)


def test_smoothness_bad_inputs():
    x, _ = images()
    with pytest.raises(ValueError, match=r"disp must be \(B, 1, H, W\)"):
        edge_aware_smoothness(x, x)
    with pytest.raises(ValueError, match="image must be"):
        edge_aware_smoothness(x[:, :1], x[..., :4])


def test_box_mean_and_its_adjoint_against_avg_pool():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 7, 9, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, 3, 5, 7, generator=g, dtype=torch.float64)
    reference = F.avg_pool2d(x, 3, 1)
    assert torch.allclose(box_mean3x3(x), reference, atol=1e-14)
    (reference * w).sum().backward()
    assert torch.allclose(box_mean3x3_adjoint(w), x.grad, atol=1e-14)


def _ssim_by_autograd(x, y):
    """SSIM dissimilarity written plainly (avg_pool2d windows, autograd's gradient): the reference."""
    def pool(t):
        return F.avg_pool2d(F.pad(t, (1, 1, 1, 1), mode="reflect"), 3, 1)

    mu_x, mu_y = pool(x), pool(y)
    sx, sy, sxy = pool(x * x) - mu_x**2, pool(y * y) - mu_y**2, pool(x * y) - mu_x * mu_y
    s = (2 * mu_x * mu_y + 1e-4) * (2 * sxy + 9e-4) / ((mu_x**2 + mu_y**2 + 1e-4) * (sx + sy + 9e-4))
    return ((1 - s) / 2).clamp(0, 1)


@pytest.mark.parametrize("need", ["x", "y", "both"])
def test_ssim_hand_written_gradient_matches_autograd_and_finite_differences(need):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 6, 8, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.rand(2, 3, 6, 8, generator=g, dtype=torch.float64)).clamp(0, 1)
    x.requires_grad_(need in ("x", "both"))
    y.requires_grad_(need in ("y", "both"))
    w = torch.rand(2, 3, 6, 8, generator=g, dtype=torch.float64)
    inputs = [t for t in (x, y) if t.requires_grad]
    ours = torch.autograd.grad((ssim(x, y) * w).sum(), inputs)
    reference = torch.autograd.grad((_ssim_by_autograd(x, y) * w).sum(), inputs)
    assert torch.allclose(ssim(x, y), _ssim_by_autograd(x, y), atol=1e-12)
    for a, b in zip(ours, reference):
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.autograd.gradcheck(ssim, (x[:1], y[:1]))
