"""DepthNet and PoseNet sized to train from scratch on a CPU (no pretrained weights).

DepthNet keeps the layout of monodepth2's depth network (Godard et al., ICCV 2019): an encoder of
stride-2 stages, a decoder that convolves, upsamples by nearest neighbour, concatenates the encoder
feature of the same resolution and convolves again, and sigmoid disparity heads at scales 0..3. The
ResNet-18 encoder is replaced by two 3x3 convolutions per stage with configurable, thin widths.
PoseNet is monodepth2's / SfMLearner's pose CNN: strided convolutions over a frame pair, a 1x1
convolution to 6 numbers, a spatial mean and a 0.01 output scale so that training starts near
the identity motion (Zhou et al., CVPR 2017).

Throughput choices (2-core CPU; multiply-adds per 128x416 image: DepthNet 1.37 G with the default
widths, 0.20 G separable; PoseNet 0.16 G, 0.04 G at ``input_scale=0.5``):
  * thin widths and dense 3x3 convolutions by default; ``separable=True`` cuts the multiply-adds 7x and
    the parameters 8x (3.3 M -> 0.4 M) but measured only ~1.4x faster, because PyTorch's CPU depthwise
    convolutions are memory-bound;
  * BatchNorm in the encoder only, as monodepth2 (its ResNet encoder has it, its decoder does not), the
    usual aid to training a network from scratch; its cost was within the measurement noise.
    ``encoder_norm="none"`` builds the network without it (no train/eval difference). It is
    :class:`runner.distributed.GlobalBatchNorm2d`: plain BatchNorm in one process, statistics of the
    global batch in a data-parallel run (gloo on the CPU as NCCL on GPUs), so that N processes train
    exactly as one process with the same global batch;
  * PoseNet may read the pair at reduced resolution (``input_scale``): it regresses only 6 numbers;
  * both networks keep their weights and activations channels-last (NHWC), the layout oneDNN's CPU
    convolutions run fastest in: DepthNet forward + backward at 64x192, batch 8, one thread 90 ms
    against 140 ms in NCHW; outputs are the same numbers in either layout.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runner.distributed import GlobalBatchNorm2d
from runner.errors import ConfigError
from runner.geometry.transforms import invert_rigid, pose_vec_to_matrix

# monodepth2 normalises inputs with these before its ImageNet encoder; kept for the same input range.
_MEAN, _STD = 0.45, 0.225


class ImageSizeError(ConfigError, ValueError):
    """The image height or width is not a multiple of the network's stride (a data config problem)."""


def _conv3x3(c_in: int, c_out: int, stride: int, separable: bool, norm: bool) -> list[nn.Module]:
    """A 3x3 convolution, dense or depthwise-separable (Howard et al., MobileNets 2017), optionally with BN."""
    if separable:
        layers = [nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
                  nn.Conv2d(c_in, c_out, 1, bias=not norm)]
    else:
        layers = [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not norm)]
    return [*layers, GlobalBatchNorm2d(c_out)] if norm else layers


def _block(c_in: int, c_out: int, stride: int, separable: bool, norm: bool) -> nn.Sequential:
    return nn.Sequential(*_conv3x3(c_in, c_out, stride, separable, norm), nn.ELU(inplace=True))


class DepthNet(nn.Module):
    """Encoder-decoder with skip connections and multi-scale sigmoid disparities (monodepth2 layout).

    Args:
        encoder_channels: widths of the encoder stages; each stage halves the resolution, so the stride
            of the network is ``2 ** len(encoder_channels)``.
        decoder_channels: widths of the decoder at output scales 0 (full resolution) .. n-1, one per
            encoder stage (monodepth2: 16, 32, 64, 128, 256).
        num_scales: disparity outputs at scales 0 .. num_scales - 1 (monodepth2: 4).
        separable: depthwise-separable instead of dense 3x3 convolutions.
        encoder_norm: ``"batch"`` (BatchNorm after every encoder convolution) or ``"none"``.
        decoder_norm: ``"batch"`` (BatchNorm after every decoder convolution but the heads) or ``"none"``
            (monodepth2).
        init_disparity: the sigmoid disparity the heads start at (their bias is set to its logit); None
            keeps PyTorch's default bias (small, zero-mean: about 0.5). Where the depths of an image sit on
            the sigmoid decides which depths it can reach: the image's typical depth starts at disparity
            ``init_disparity`` and stays near it (the depth scale of monocular training is a free gauge,
            fixed by the start), so depths more than ``1 / init_disparity`` times nearer than typical need
            a disparity above 1. From 0.5, nothing can come within half the typical depth, and the sigmoid
            is already flat on the way there.
    """

    def __init__(self, encoder_channels: tuple[int, ...] = (16, 24, 32, 64, 96),
                 decoder_channels: tuple[int, ...] = (8, 16, 32, 48, 64), num_scales: int = 4,
                 separable: bool = False, encoder_norm: Literal["batch", "none"] = "batch",
                 decoder_norm: Literal["batch", "none"] = "none", init_disparity: float | None = 0.05):
        super().__init__()
        encoder_channels, decoder_channels = tuple(encoder_channels), tuple(decoder_channels)
        n = len(encoder_channels)
        if n == 0 or min(encoder_channels + decoder_channels) <= 0:
            raise ConfigError(f"depth network widths must be positive and non-empty, got encoder {encoder_channels}, "
                              f"decoder {decoder_channels}")
        if len(decoder_channels) != n:
            raise ConfigError(f"decoder_channels needs one width per encoder stage ({n}), got {decoder_channels}")
        if not 1 <= num_scales <= n:
            raise ConfigError(f"num_scales must be in 1..{n} (the number of encoder stages), got {num_scales}")
        for name, value in (("encoder_norm", encoder_norm), ("decoder_norm", decoder_norm)):
            if value not in ("batch", "none"):
                raise ConfigError(f"{name} must be 'batch' or 'none', got {value!r}")
        if init_disparity is not None and not 0 < init_disparity < 1:
            raise ConfigError(f"init_disparity must be in (0, 1) (a sigmoid output), got {init_disparity}")
        self.num_scales = int(num_scales)
        self.stride = 2**n
        self.init_disparity = init_disparity
        norm, decoder_bn = encoder_norm == "batch", decoder_norm == "batch"
        widths = (3, *encoder_channels)
        self.encoder = nn.ModuleList(
            nn.Sequential(_block(widths[k], widths[k + 1], 2, separable, norm),
                          _block(widths[k + 1], widths[k + 1], 1, separable, norm))
            for k in range(n))
        # Decoder level i produces scale i (resolution / 2^i) from the level below (or the bottleneck).
        self.upconv_in = nn.ModuleList()
        self.upconv_out = nn.ModuleList()
        for i in range(n):
            c_in = encoder_channels[-1] if i == n - 1 else decoder_channels[i + 1]
            skip = encoder_channels[i - 1] if i > 0 else 0  # encoder stage i has resolution / 2^i
            self.upconv_in.append(_block(c_in, decoder_channels[i], 1, separable, decoder_bn))
            self.upconv_out.append(_block(decoder_channels[i] + skip, decoder_channels[i], 1, separable, decoder_bn))
        self.heads = nn.ModuleList(nn.Conv2d(decoder_channels[s], 1, 3, 1, 1) for s in range(self.num_scales))
        if init_disparity is not None:
            for head in self.heads:
                nn.init.constant_(head.bias, math.log(init_disparity / (1 - init_disparity)))
        self.to(memory_format=torch.channels_last)

    def check_image_size(self, H: int, W: int) -> None:
        """Raise :class:`ImageSizeError` (a ValueError) naming the nearest valid sizes if H or W is not a
        multiple of :attr:`stride`."""
        s = self.stride
        if H % s or W % s:
            below = f"{max(s, H // s * s)}x{max(s, W // s * s)}"
            above = f"{-(-H // s) * s}x{-(-W // s) * s}"
            raise ImageSizeError(f"image size {H}x{W} is not divisible by {s}; the nearest sizes that work are "
                                 f"{below} or {above}")

    def forward(self, image: Tensor) -> list[Tensor]:
        """Disparities at every output scale.

        Args:
            image: (B, 3, H, W) in [0, 1]; H and W multiples of :attr:`stride`.
        Returns:
            ``num_scales`` tensors; entry s is (B, 1, H / 2^s, W / 2^s) in (0, 1) (sigmoid), to be mapped
            to depth by :func:`disp_to_depth`.
        """
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"DepthNet expects (B, 3, H, W) images, got {tuple(image.shape)}")
        self.check_image_size(*image.shape[-2:])
        x = ((image - _MEAN) / _STD).contiguous(memory_format=torch.channels_last)
        features = []
        for stage in self.encoder:
            x = stage(x)
            features.append(x)
        disparities = [None] * self.num_scales
        for i in reversed(range(len(self.encoder))):
            x = F.interpolate(self.upconv_in[i](x), scale_factor=2, mode="nearest")
            if i > 0:
                x = torch.cat([x, features[i - 1]], 1)
            x = self.upconv_out[i](x)
            if i < self.num_scales:
                disparities[i] = torch.sigmoid(self.heads[i](x))
        return disparities


def disp_to_depth(disp: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """Sigmoid output -> depth through a scaled disparity (monodepth2).

    ``depth = 1 / (1 / max_depth + (1 / min_depth - 1 / max_depth) * disp)``: disp 0 is max_depth and
    disp 1 is min_depth, and the network's output is linear in inverse depth.

    Args:
        disp: (B, 1, H, W) in [0, 1].
        min_depth, max_depth: depth range [scene units], 0 < min_depth < max_depth.
    Returns:
        (B, 1, H, W) depth in [min_depth, max_depth].
    """
    if not 0 < min_depth < max_depth:
        raise ConfigError(f"need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")
    min_disp, max_disp = 1 / max_depth, 1 / min_depth
    return 1 / (min_disp + (max_disp - min_disp) * disp)


class PoseNet(nn.Module):
    """Relative camera motion of a frame pair (the pose CNN of SfMLearner and monodepth2).

    Args:
        channels: widths of the stride-2 convolutions (monodepth2: 16, 32, 64, 128, 256, 256, 256);
            the kernels are 7, 5, then 3.
        input_scale: the pair is resized by this factor first (0.5 reads it at half resolution, ~4x cheaper).
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 96, 128), input_scale: float = 0.5):
        super().__init__()
        channels = tuple(channels)
        if len(channels) == 0 or min(channels) <= 0:
            raise ConfigError(f"pose network widths must be positive and non-empty, got {channels}")
        if not 0 < input_scale <= 1:
            raise ConfigError(f"input_scale must be in (0, 1], got {input_scale}")
        self.input_scale = float(input_scale)
        layers, c = [], 6
        for k, width in enumerate(channels):
            kernel = (7, 5)[k] if k < 2 else 3
            layers += [nn.Conv2d(c, width, kernel, 2, kernel // 2), nn.ReLU(inplace=True)]
            c = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 6, 1)
        self.to(memory_format=torch.channels_last)

    def forward(self, pair: Tensor) -> Tensor:
        """Motion between two frames.

        Args:
            pair: (B, 6, H, W) two RGB frames in [0, 1] concatenated along channels, ``(first, second)``.
        Returns:
            (B, 6): axis-angle [rad] (B, :3) and translation [scene units] (B, 3:) of ``second_from_first``,
            the transform taking points from the first camera's frame into the second's; turn it into a
            matrix with :func:`pose_to_matrix`.
        """
        if pair.dim() != 4 or pair.shape[1] != 6:
            raise ValueError(f"PoseNet expects (B, 6, H, W) frame pairs, got {tuple(pair.shape)}")
        x = (pair - _MEAN) / _STD
        if self.input_scale != 1:
            x = F.interpolate(x, scale_factor=self.input_scale, mode="area")
        x = x.contiguous(memory_format=torch.channels_last)
        return 0.01 * self.head(self.features(x)).mean((2, 3))


def pose_to_matrix(axisangle: Tensor, translation: Tensor, invert: bool = False) -> Tensor:
    """(B, 3) axis-angle [rad] and (B, 3) translation -> (B, 4, 4) rigid transform ``x -> R x + t``.

    With ``invert=True`` the inverse transform (monodepth2 feeds pairs in temporal order and inverts
    the motion for sources that precede the target).
    """
    if axisangle.shape != translation.shape or axisangle.dim() != 2 or axisangle.shape[1] != 3:
        raise ValueError(f"axisangle and translation must both be (B, 3), got {tuple(axisangle.shape)} and "
                         f"{tuple(translation.shape)}")
    M = pose_vec_to_matrix(axisangle, translation)
    return invert_rigid(M) if invert else M
