"""DepthNet / PoseNet (tasks.depth_from_video.models): shapes, ranges, the stride check, pose matrices."""

import pytest
import torch

from runner.errors import ConfigError
from runner.geometry.transforms import invert_rigid
from tasks.depth_from_video.models import DepthNet, ImageSizeError, PoseNet, disp_to_depth, pose_to_matrix

# Tiny widths keep every test fast; the layout is the one of the default widths.
TINY = dict(encoder_channels=(4, 8, 8, 16, 16), decoder_channels=(4, 4, 8, 8, 16))


@pytest.mark.parametrize("B", [1, 2])
@pytest.mark.parametrize("separable", [False, True])
def test_depth_net_multiscale_shapes_and_range(B, separable):
    torch.manual_seed(0)
    net = DepthNet(**TINY, separable=separable)
    assert net.stride == 32
    disps = net(torch.rand(B, 3, 64, 96))
    assert [tuple(d.shape) for d in disps] == [(B, 1, 64, 96), (B, 1, 32, 48), (B, 1, 16, 24), (B, 1, 8, 12)]
    for d in disps:
        assert ((d > 0) & (d < 1)).all()
    depth = disp_to_depth(disps[0], 0.1, 100.0)
    assert depth.shape == (B, 1, 64, 96) and (depth >= 0.1).all() and (depth <= 100.0).all()


def test_depth_net_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = DepthNet(**TINY, encoder_norm="none", num_scales=2)
    sum(d.mean() for d in net(torch.rand(2, 3, 32, 64))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_decoder_norm_puts_batchnorm_in_every_decoder_block_but_not_the_heads():
    def count(modules):
        return sum(isinstance(m, torch.nn.BatchNorm2d) for m in modules)

    net = DepthNet(**TINY, decoder_norm="batch")
    assert count(net.upconv_in.modules()) == count(net.upconv_out.modules()) == 5
    assert count(net.heads.modules()) == 0 and count(DepthNet(**TINY).upconv_in.modules()) == 0
    assert [tuple(d.shape) for d in net(torch.rand(2, 3, 32, 64))][0] == (2, 1, 32, 64)


def test_depth_net_eval_mode_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    net = DepthNet(**TINY)
    x = torch.rand(2, 3, 32, 32)
    net.train()
    net(x)  # update the running statistics once
    net.eval()
    with torch.no_grad():
        both = net(x)[0]
        first = net(x[:1])[0]
    assert torch.allclose(both[:1], first, atol=1e-6)


@pytest.mark.parametrize("init", [0.05, 0.5, None])
def test_depth_net_starts_at_init_disparity(init):
    torch.manual_seed(0)
    net = DepthNet(**TINY, init_disparity=init)
    with torch.no_grad():
        disps = net(torch.rand(2, 3, 64, 96))
    for d in disps:  # the heads' weights add a spread around the bias, not a shift of the median
        assert d.median().item() == pytest.approx(init or 0.5, rel=0.25)
    with pytest.raises(ConfigError, match=r"init_disparity must be in \(0, 1\)"):
        DepthNet(**TINY, init_disparity=1.0)


def test_disp_to_depth_end_points_and_monotone():
    disp = torch.tensor([0.0, 0.25, 0.5, 1.0]).reshape(1, 1, 1, 4)
    depth = disp_to_depth(disp, 0.1, 100.0)
    assert torch.allclose(depth[..., 0], torch.tensor(100.0)) and torch.allclose(depth[..., -1], torch.tensor(0.1))
    assert (depth.diff(dim=-1) < 0).all()
    # Linear in inverse depth: 1/depth at disp 0.5 is the mean of the end points' inverses.
    assert torch.allclose(1 / depth[..., 2], torch.tensor((10 + 0.01) / 2))
    with pytest.raises(ConfigError, match="0 < min_depth < max_depth"):
        disp_to_depth(disp, 1.0, 1.0)


def test_stride_check_names_the_nearest_valid_sizes():
    net = DepthNet(**TINY)
    with pytest.raises(ValueError, match=r"^image size 100x300 is not divisible by 32; the nearest sizes that work "
                                         r"are 96x288 or 128x320$"):
        net(torch.rand(1, 3, 100, 300))
    with pytest.raises(ImageSizeError, match="are 32x64 or 32x96"):  # never smaller than one stride
        net.check_image_size(20, 70)
    assert issubclass(ImageSizeError, ConfigError)  # the CLI prints it as a one-line user error
    net.check_image_size(96, 320)
    three_stages = DepthNet((4, 8, 8), (4, 4, 8), num_scales=3)
    assert three_stages.stride == 8
    assert [d.shape[-1] for d in three_stages(torch.rand(1, 3, 8, 24))] == [24, 12, 6]


def test_depth_net_config_errors():
    with pytest.raises(ConfigError, match="one width per encoder stage"):
        DepthNet((4, 8), (4, 4, 8))
    with pytest.raises(ConfigError, match=r"num_scales must be in 1..2"):
        DepthNet((4, 8), (4, 8), num_scales=3)
    with pytest.raises(ConfigError, match="encoder_norm"):
        DepthNet((4, 8), (4, 8), num_scales=2, encoder_norm="group")
    with pytest.raises(ConfigError, match="decoder_norm"):
        DepthNet((4, 8), (4, 8), num_scales=2, decoder_norm="layer")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        DepthNet(**TINY)(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("input_scale", [1.0, 0.5])
def test_pose_net_shape_and_small_initial_motion(input_scale):
    torch.manual_seed(0)
    net = PoseNet(channels=(8, 8, 16, 16), input_scale=input_scale)
    out = net(torch.rand(3, 6, 48, 80))
    assert out.shape == (3, 6)
    assert out.abs().max() < 0.05  # the 0.01 output scale starts training near the identity motion
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\)"):
        net(torch.rand(3, 3, 48, 80))
    with pytest.raises(ConfigError, match="input_scale"):
        PoseNet(input_scale=0.0)


def test_pose_to_matrix_and_inverse():
    g = torch.Generator().manual_seed(0)
    axisangle, translation = 0.3 * torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    M = pose_to_matrix(axisangle, translation)
    assert M.shape == (4, 4, 4)
    R = M[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-5)
    assert torch.allclose(M[:, :3, 3], translation)
    Minv = pose_to_matrix(axisangle, translation, invert=True)
    assert torch.allclose(Minv @ M, torch.eye(4).expand(4, 4, 4), atol=1e-5)
    assert torch.allclose(Minv, invert_rigid(M))
    with pytest.raises(ValueError, match=r"both be \(B, 3\)"):
        pose_to_matrix(axisangle, translation[:, :2])
