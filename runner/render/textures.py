"""Procedural surface textures: checkerboard, stripes, bricks, windows and value-noise fBm.

Textures are functions of 2D surface coordinates ``uv = (s, t)`` in metres (the ray caster gives each
primitive a chart: a plane's tangent frame, a box face's local axes, a sphere's longitude x height), so
a pattern keeps its size in the world whatever the camera. Every pattern is a smooth function of ``uv``:
hard edges are replaced by steep sigmoids and the noise uses a quintic fade, so a photometric loss has
gradients with respect to where a ray hits the surface. (The per-brick and per-window random tints
switch at cell borders, where the mortar or wall covers them up to a weight of ~3e-4.) Every
non-constant pattern is multiplied by a fine fBm "grain" at a quarter of its period so that no textured region is flat.

Noise is value noise on the integer lattice (Perlin, "An image synthesizer", SIGGRAPH 1985) with the
quintic fade of Perlin, "Improving noise", SIGGRAPH 2002, summed over octaves into fractional Brownian
motion (Musgrave, in Ebert et al., "Texturing and Modeling: A Procedural Approach", 1994). Lattice
values come from a deterministic integer hash of (i, j, seed): the same seed gives the same texture on
every machine and device, and different seeds give different textures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_HASH_MUL = 0x45D9F3B  # odd multiplier < 2**27: products of 32-bit values stay inside int64
_EDGE_SHARPNESS = 8.0  # sigmoid slope of smoothed pattern edges (transition ~2% of a period)


class TextureKind(IntEnum):
    """The procedural patterns, stored as int64 in :class:`Material.kind`."""

    CONSTANT = 0  # color_a everywhere (no grain)
    CHECKER = 1  # squares of side scale/2, alternating color_a / color_b
    STRIPES = 2  # stripes along t of period scale
    BRICKS = 3  # bricks scale x scale/3 in color_a with per-brick tint, mortar in color_b
    NOISE = 4  # fBm of base period scale, blending color_a -> color_b
    WINDOWS = 5  # facade: wall color_a, one window per scale x scale cell in color_b


@dataclass(frozen=True)
class Material:
    """Per-primitive texture parameters; all fields share the leading shape ``S`` (e.g. (B, P)).

    Attributes:
        kind: S int64, :class:`TextureKind` values.
        color_a: S + (3,) primary albedo, linear RGB in [0, 1].
        color_b: S + (3,) secondary albedo (checks, stripes, mortar, windows, noise), in [0, 1].
        scale: S pattern period [m], > 0.
        seed: S int64 seed of the pattern's noise and random tints.
    """

    kind: Tensor
    color_a: Tensor
    color_b: Tensor
    scale: Tensor
    seed: Tensor

    def __post_init__(self):
        shape = tuple(self.kind.shape)
        for name in ("scale", "seed"):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Material.{name} must have the shape of kind {shape}, "
                                 f"got {tuple(getattr(self, name).shape)}")
        for name in ("color_a", "color_b"):
            if tuple(getattr(self, name).shape) != shape + (3,):
                raise ValueError(f"Material.{name} must be {shape + (3,)}, got {tuple(getattr(self, name).shape)}")
        for name in ("kind", "seed"):
            if getattr(self, name).dtype != torch.int64:
                raise ValueError(f"Material.{name} must be int64, got {getattr(self, name).dtype}")
        if self.kind.numel() and (self.kind.min() < 0 or self.kind.max() >= len(TextureKind)):
            raise ValueError(f"Material.kind values must be in [0, {len(TextureKind) - 1}] (TextureKind)")
        if self.scale.numel() and not bool((self.scale > 0).all()):
            raise ValueError("Material.scale (pattern period [m]) must be > 0")

    @staticmethod
    def constant(colors: Tensor) -> Material:
        """Untextured albedo ``colors`` (..., 3)."""
        shape = colors.shape[:-1]
        zeros = torch.zeros(shape, dtype=torch.int64, device=colors.device)
        return Material(zeros, colors, colors, torch.ones(shape, dtype=colors.dtype, device=colors.device), zeros)

    @staticmethod
    def cat(materials: list[Material], dim: int) -> Material:
        """Concatenate materials along leading dimension ``dim``."""
        return Material(*(torch.cat([getattr(m, f) for m in materials], dim)
                          for f in ("kind", "color_a", "color_b", "scale", "seed")))

    def expand(self, batch: int) -> Material:
        """Broadcast a (1, P) material to (batch, P)."""
        return Material(self.kind.expand(batch, -1), self.color_a.expand(batch, -1, -1),
                        self.color_b.expand(batch, -1, -1), self.scale.expand(batch, -1),
                        self.seed.expand(batch, -1))

    def item(self, index: int) -> Material:
        """Row ``index`` of a (B, P) material, as (1, P)."""
        i = slice(index, index + 1)
        return Material(self.kind[i], self.color_a[i], self.color_b[i], self.scale[i], self.seed[i])

    def take(self, batch_index: Tensor, index: Tensor) -> Material:
        """Pick entries of a (B, P) material: ``batch_index``, ``index`` (M,) int64 -> (M,) material."""
        return Material(self.kind[batch_index, index], self.color_a[batch_index, index],
                        self.color_b[batch_index, index], self.scale[batch_index, index],
                        self.seed[batch_index, index])


def evaluate_texture(material: Material, uv: Tensor) -> Tensor:
    """Albedo of surface points.

    Args:
        material: (M,) material of each point.
        uv: (M, 2) surface coordinates (s, t) [m]; t is "up" on walls.

    Returns:
        (M, 3) albedo, linear RGB in [0, 1]; differentiable w.r.t. ``uv``, colours and scale.
    """
    if material.kind.dim() != 1 or uv.shape != (material.kind.shape[0], 2):
        raise ValueError(f"evaluate_texture expects an (M,) material and (M, 2) uv, got "
                         f"{tuple(material.kind.shape)} and {tuple(uv.shape)}")
    out = torch.zeros(uv.shape[0], 3, dtype=uv.dtype, device=uv.device)
    for kind in torch.unique(material.kind).tolist():
        sel = material.kind == kind
        m = _select(material, sel)
        xy = uv[sel] / m.scale[:, None]
        x, y = xy.unbind(-1)
        albedo = _PATTERNS[TextureKind(kind)](x, y, m)
        if kind != TextureKind.CONSTANT:
            albedo = albedo * (0.8 + 0.4 * fbm(4 * x, 4 * y, m.seed + 7919, octaves=3))[:, None]
        out[sel] = albedo.clamp(0.0, 1.0)
    return out


def _select(material: Material, sel: Tensor) -> Material:
    return Material(material.kind[sel], material.color_a[sel], material.color_b[sel], material.scale[sel],
                    material.seed[sel])


# ---------------------------------------------------------------------------------------------- noise
def hash_uniform(i: Tensor, j: Tensor, seed: Tensor) -> Tensor:
    """Deterministic pseudo-random numbers in [0, 1) from int64 lattice coordinates and seeds (broadcast)."""
    h = _mix32(seed)
    h = _mix32(h + j)
    h = _mix32(h + i)
    return h.double() / 2.0**32


def _mix32(h: Tensor) -> Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply) computed in int64 without overflow."""
    h = h & _MASK32
    h = (((h >> 16) ^ h) * _HASH_MUL) & _MASK32
    h = (((h >> 16) ^ h) * _HASH_MUL) & _MASK32
    return (h >> 16) ^ h


def value_noise(x: Tensor, y: Tensor, seed: Tensor) -> Tensor:
    """Smooth (C2) value noise in [0, 1] with lattice period 1; x, y (M,) float, seed (M,) int64."""
    fx, fy = torch.floor(x), torch.floor(y)
    i, j = fx.long(), fy.long()
    u, v = _fade(x - fx), _fade(y - fy)
    # hash_uniform(i + di, j + dj, seed) for the 4 corners, sharing the seed and row stages of the hash
    rows = _mix32(_mix32(seed) + torch.stack([j, j + 1]))  # (2, M)
    corners = (_mix32(rows[:, None] + torch.stack([i, i + 1])).double() / 2.0**32).to(x.dtype)  # (2, 2, M)
    bottom = corners[0, 0] + u * (corners[0, 1] - corners[0, 0])
    top = corners[1, 0] + u * (corners[1, 1] - corners[1, 0])
    return bottom + v * (top - bottom)


def fbm(x: Tensor, y: Tensor, seed: Tensor, octaves: int = 5) -> Tensor:
    """Fractional Brownian motion in [0, 1]: ``octaves`` of value noise, frequency x2 and amplitude x0.5 each."""
    total = torch.zeros_like(x)
    norm = 0.0
    for octave in range(octaves):
        freq, amp = 2.0**octave, 0.5**octave
        shift = 17.31 * octave  # decorrelates the lattices of successive octaves
        total = total + amp * value_noise(freq * x + shift, freq * y - shift, seed + 101 * octave)
        norm += amp
    return total / norm


def _fade(f: Tensor) -> Tensor:
    """Perlin's quintic 6f^5 - 15f^4 + 10f^3: zero first and second derivatives at 0 and 1."""
    return f * f * f * (f * (6 * f - 15) + 10)


# ---------------------------------------------------------------------------------------------- patterns
def _square_wave(x: Tensor) -> Tensor:
    """Smoothed square wave of period 1 in [0, 1]: ~1 on the first half of each period."""
    return torch.sigmoid(_EDGE_SHARPNESS * torch.sin(2 * torch.pi * x))


def _box_01(f: Tensor, lo: float, hi: float) -> Tensor:
    """Smoothed indicator of ``lo < f < hi`` for f in [0, 1); ~3e-4 at f = 0 and f = 1 (cell borders)."""
    k = _EDGE_SHARPNESS / min(lo, 1 - hi)
    return torch.sigmoid(k * (f - lo)) * torch.sigmoid(k * (hi - f))


def _lerp(a: Tensor, b: Tensor, w: Tensor) -> Tensor:
    return a + w[:, None] * (b - a)


def _constant(x: Tensor, y: Tensor, m: Material) -> Tensor:
    return m.color_a


def _checker(x: Tensor, y: Tensor, m: Material) -> Tensor:
    a, b = _square_wave(x), _square_wave(y)
    return _lerp(m.color_a, m.color_b, a + b - 2 * a * b)  # smooth xor


def _stripes(x: Tensor, y: Tensor, m: Material) -> Tensor:
    return _lerp(m.color_a, m.color_b, _square_wave(y))


def _bricks(x: Tensor, y: Tensor, m: Material) -> Tensor:
    rows = 3 * y  # brick height = scale / 3, width = scale
    row = torch.floor(rows)
    cols = x + 0.5 * torch.remainder(row, 2)  # running bond: odd rows shifted by half a brick
    col = torch.floor(cols)
    brick = _box_01(cols - col, 0.04, 0.96) * _box_01(rows - row, 0.1, 0.9)
    tint = 0.75 + 0.5 * hash_uniform(col.long(), row.long(), m.seed).to(x.dtype)
    return _lerp(m.color_b, m.color_a * tint[:, None], brick)


def _noise(x: Tensor, y: Tensor, m: Material) -> Tensor:
    return _lerp(m.color_a, m.color_b, fbm(x, y, m.seed))


def _windows(x: Tensor, y: Tensor, m: Material) -> Tensor:
    fx, fy = x - torch.floor(x), y - torch.floor(y)
    window = _box_01(fx, 0.25, 0.75) * _box_01(fy, 0.3, 0.85)
    glass = m.color_b * (0.6 + 0.8 * hash_uniform(torch.floor(x).long(), torch.floor(y).long(), m.seed)
                         .to(x.dtype))[:, None]
    return _lerp(m.color_a, glass, window)


_PATTERNS: dict[TextureKind, Callable[[Tensor, Tensor, Material], Tensor]] = {
    TextureKind.CONSTANT: _constant,
    TextureKind.CHECKER: _checker,
    TextureKind.STRIPES: _stripes,
    TextureKind.BRICKS: _bricks,
    TextureKind.NOISE: _noise,
    TextureKind.WINDOWS: _windows,
}
