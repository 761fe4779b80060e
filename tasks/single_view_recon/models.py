"""A CPU-sized image encoder, a template-offset decoder and the smooth offset parametrisation.

The recipe follows SoftRas (Liu et al., "Soft Rasterizer", ICCV 2019, after Kato et al., "Neural 3D Mesh
Renderer", CVPR 2018): a small convolutional encoder maps the input image to a latent code, and fully
connected layers decode it into per-vertex offsets of a fixed template sphere plus a global scale and
translation. Narrower than the papers' networks so that training fits in minutes on two CPU cores.

Offsets, whether optimised directly (``mode=fit``) or predicted (``mode=learn``), pass through
:func:`smoothing_operator`, the ``(I + lambda L)^-1`` reparametrisation of Nicolet et al. ("Large Steps in
Inverse Rendering of Geometry", SIGGRAPH Asia 2021): Adam's per-coordinate steps then move smooth
patches of the surface instead of single vertices, which keeps the template from crumpling.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ImageEncoder(nn.Module):
    """Strided convolutions from an RGBA image to a latent vector.

    Args:
        image_size: input height = width in pixels (a multiple of 16).
        channels: output channels of the four stride-2 stages.
        latent: size of the latent code.
    """

    def __init__(self, image_size: int = 64, channels: tuple[int, ...] = (32, 64, 128, 256), latent: int = 512):
        super().__init__()
        layers, c_in = [], 4
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 5, stride=2, padding=2), nn.GroupNorm(8, c), nn.ReLU(inplace=True)]
            c_in = c
        self.convs = nn.Sequential(*layers)
        side = image_size // 2 ** len(channels)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, latent), nn.ReLU(inplace=True))

    def forward(self, images: Tensor) -> Tensor:
        """(B, 4, H, W) RGB + mask in [0, 1] -> (B, latent)."""
        return self.fc(self.convs(images))


class OffsetDecoder(nn.Module):
    """Latent code -> per-vertex offsets, log-scale and translation of the template.

    The last layer starts at zero, so an untrained decoder returns the template itself.

    Args:
        num_verts: V, vertices of the template.
        latent: size of the latent code.
        hidden: width of the hidden layer.
    """

    def __init__(self, num_verts: int, latent: int = 512, hidden: int = 1024):
        super().__init__()
        self.num_verts = num_verts
        self.mlp = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(inplace=True))
        self.out = nn.Linear(hidden, num_verts * 3 + 6)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, code: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, latent) -> offsets (B, V, 3), log_scale (B, 3), translation (B, 3) [scene units]."""
        out = self.out(self.mlp(code))
        V = self.num_verts
        return out[:, : V * 3].reshape(-1, V, 3), out[:, V * 3 : V * 3 + 3], out[:, V * 3 + 3 :]


class ReconNet(nn.Module):
    """Encoder + decoder: an RGBA image to a deformation of the template."""

    def __init__(self, num_verts: int, image_size: int = 64, latent: int = 512):
        super().__init__()
        self.encoder = ImageEncoder(image_size, latent=latent)
        self.decoder = OffsetDecoder(num_verts, latent)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 4, H, W) -> offsets (B, V, 3), log_scale (B, 3), translation (B, 3)."""
        return self.decoder(self.encoder(images))


def smoothing_operator(num_verts: int, faces: Tensor, lam: float) -> Tensor:
    """``(I + lam L)^-1`` for the uniform graph Laplacian ``L = D - A`` of a mesh's edges.

    Args:
        num_verts: V.
        faces: (F, 3) int64 triangles.
        lam: smoothing strength >= 0 (0 gives the identity).
    Returns:
        (V, V) dense matrix P; ``P @ u`` (u (V, 3) raw parameters) gives smooth offsets.
    """
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(1).values.unique(dim=0)
    A = torch.zeros(num_verts, num_verts, dtype=torch.float64)
    A[edges[:, 0], edges[:, 1]] = 1.0
    A[edges[:, 1], edges[:, 0]] = 1.0
    M = torch.eye(num_verts, dtype=torch.float64) + lam * (torch.diag(A.sum(1)) - A)
    return torch.cholesky_inverse(torch.linalg.cholesky(M)).float()


def deform(template: Tensor, offsets: Tensor, log_scale: Tensor, translation: Tensor) -> Tensor:
    """Vertices of the deformed template: ``(template + offsets) * exp(log_scale) + translation``.

    Args:
        template: (V, 3) template vertices [scene units].
        offsets: (B, V, 3) per-vertex offsets.
        log_scale: (B, 3) log of the per-axis scale.
        translation: (B, 3).
    Returns:
        (B, V, 3) vertices in the world frame.
    """
    return (template + offsets) * log_scale.exp()[:, None] + translation[:, None]
