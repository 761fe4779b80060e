"""The embedded street scenes of depth_from_video: seeded procedural streets of textured primitives and a
forward-driving camera path through them, ray cast by :class:`runner.render.raycast.RaycastRenderer`.

A street is an infinite textured ground plane, facades on both sides, parked cars (boxes), props near the
camera path (boxes and spheres with fine textures), optionally a back wall; all from one seed, so that the
cached videos are reproducible (their cache key is :meth:`tasks.depth_from_video.data.StreetVideos.key`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from runner.geometry.cameras import PinholeCamera
from runner.render.raycast import Boxes, Planes, PrimitiveScene, Spheres
from runner.render.textures import Material, TextureKind

_FACADE_KINDS = (TextureKind.BRICKS, TextureKind.WINDOWS, TextureKind.STRIPES, TextureKind.NOISE,
                 TextureKind.CHECKER)
_FACADE_SCALE = {TextureKind.BRICKS: (0.5, 0.9), TextureKind.WINDOWS: (2.5, 3.5), TextureKind.STRIPES: (0.6, 2.0),
                 TextureKind.NOISE: (1.5, 4.0), TextureKind.CHECKER: (0.8, 2.0)}
# Props are seen from 2 m: patterns that vary along both surface axes (stripes would leave the horizontal
# image motion unconstrained) and fine enough to fill a near surface with edges
_PROP_KINDS = (TextureKind.CHECKER, TextureKind.BRICKS, TextureKind.NOISE)
_PROP_SCALE = {TextureKind.CHECKER: (0.3, 0.6), TextureKind.BRICKS: (0.4, 0.7), TextureKind.NOISE: (0.3, 0.6)}


class _SceneBuilder:
    """Collects primitives with a seeded generator; :meth:`build` stacks them into a one-scene batch."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)
        self.seed = seed
        self.planes: list[tuple] = []
        self.boxes: list[tuple] = []
        self.spheres: list[tuple] = []

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.gen, dtype=torch.float64))

    def choice(self, options: Sequence):
        return options[int(torch.randint(len(options), (), generator=self.gen))]

    def color(self, lo: float = 0.1, hi: float = 0.9) -> tuple[float, float, float]:
        return (self.uniform(lo, hi), self.uniform(lo, hi), self.uniform(lo, hi))

    def contrasting_colors(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """A light colour (channels in [0.35, 0.9]) and a dark one (channels in [0.04, 0.36]): a pattern
        between them has contrast wherever it is seen, so its surface constrains depth."""
        return self.color(0.35, 0.9), tuple(0.4 * ch for ch in self.color(0.1, 0.9))

    def material(self, kind: TextureKind, scale: float, a: Sequence[float], b: Sequence[float]) -> tuple:
        tex_seed = int(torch.randint(2**31 - 1, (), generator=self.gen))
        return (int(kind), tuple(a), tuple(b), scale, tex_seed)

    def build(self, dtype: torch.dtype) -> PrimitiveScene:
        def mat(rows: list[tuple]) -> Material:
            n = len(rows)
            return Material(torch.tensor([r[0] for r in rows], dtype=torch.int64).reshape(1, n),
                            torch.tensor([r[1] for r in rows], dtype=dtype).reshape(1, n, 3),
                            torch.tensor([r[2] for r in rows], dtype=dtype).reshape(1, n, 3),
                            torch.tensor([r[3] for r in rows], dtype=dtype).reshape(1, n),
                            torch.tensor([r[4] for r in rows], dtype=torch.int64).reshape(1, n))

        def col(rows: list[tuple], i: int, tail: tuple[int, ...]) -> Tensor:
            return torch.tensor([r[i] for r in rows], dtype=dtype).reshape(1, len(rows), *tail)

        P, Bx, Sp = self.planes, self.boxes, self.spheres
        yaw = col(Bx, 2, ())
        c, s, zero, one = torch.cos(yaw), torch.sin(yaw), torch.zeros_like(yaw), torch.ones_like(yaw)
        rotation = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], -1).reshape(1, -1, 3, 3)
        return PrimitiveScene(
            Planes(col(P, 0, (3,)), col(P, 1, (3,)), mat([r[2] for r in P])),
            Boxes(col(Bx, 0, (3,)), col(Bx, 1, (3,)), rotation, mat([r[3] for r in Bx])),
            Spheres(col(Sp, 0, (3,)), col(Sp, 1, ()), mat([r[2] for r in Sp])))


def make_street_scene(seed: int, length: float = 60.0, street_half_width: float = 5.0, n_cars: int = 6,
                      n_spheres: int = 5, n_poles: int = 6, back_wall: bool = True,
                      dtype: torch.dtype = torch.float32) -> PrimitiveScene:
    """A procedural street along +z (world +y up, ground at y = 0), one scene (batch 1).

    The street is ``2 street_half_width`` wide, from z = -10 m to z = ``length``, with a 2.5 m
    sidewalk (a low tiled box) and a row of buildings (boxes 5-12 m wide, 6-24 m high, textured
    facades: bricks, windows, stripes, noise, checks) on each side; cars (yawed boxes) and spheres with
    fine checks, bricks or noise in contrasting colours, and poles. Cars, spheres and
    poles stand on the street at least 2 m off its centre line so that a camera from
    :func:`forward_camera_path` does not run into them. With ``back_wall`` an infinite textured wall
    at z = ``length`` caps the depth at about ``length`` and fills the sky; without it the sky is
    background (alpha 0, depth 0). About 40 primitives with the defaults.

    Args:
        seed: generator seed; the same seed gives the same scene.
        length: street length ahead of the origin [m] (depth cap with ``back_wall``).
        street_half_width: half width of the road [m].
        n_cars, n_spheres, n_poles: numbers of props.
        back_wall: close the street with a wall at z = ``length``.
        dtype: float dtype of the scene tensors.
    """
    if length <= 10 or street_half_width < 4.5:
        raise ValueError(f"need length > 10 m and street_half_width >= 4.5 m, got {length}, {street_half_width}")
    if min(n_cars, n_spheres, n_poles) < 0:
        raise ValueError("numbers of props must be >= 0")
    sb = _SceneBuilder(seed)
    asphalt = sb.uniform(0.2, 0.35)
    sb.planes.append(((0.0, 0.0, 0.0), (0.0, 1.0, 0.0),
                      sb.material(TextureKind.NOISE, sb.uniform(1.0, 2.0), (asphalt,) * 3,
                                  (asphalt + 0.2, asphalt + 0.18, asphalt + 0.15))))
    if back_wall:
        sb.planes.append(((0.0, 0.0, length), (0.0, 0.0, -1.0),
                          sb.material(TextureKind.WINDOWS, sb.uniform(3.0, 4.0), sb.color(0.4, 0.8),
                                      sb.color(0.05, 0.3))))
    z0, sidewalk = -10.0, 2.5
    for side in (-1.0, 1.0):
        x_curb = side * (street_half_width + sidewalk / 2)
        sb.boxes.append(((x_curb, 0.08, (z0 + length) / 2), (sidewalk / 2, 0.08, (length - z0) / 2), 0.0,
                         sb.material(TextureKind.CHECKER, sb.uniform(0.5, 1.0), sb.color(0.5, 0.7),
                                     sb.color(0.3, 0.5))))
        z = z0
        while z < length:
            width, gap = sb.uniform(5.0, 12.0), sb.uniform(0.0, 1.5)
            height, deep = sb.uniform(6.0, 24.0), sb.uniform(8.0, 14.0)
            facade = street_half_width + sidewalk + sb.uniform(0.0, 1.0)
            kind = sb.choice(_FACADE_KINDS)
            sb.boxes.append(((side * (facade + deep / 2), height / 2, z + width / 2), (deep / 2, height / 2, width / 2),
                             0.0, sb.material(kind, sb.uniform(*_FACADE_SCALE[kind]), *sb.contrasting_colors())))
            z += width + gap
    for _ in range(n_cars):
        x = sb.choice((-1.0, 1.0)) * sb.uniform(3.0, street_half_width - 1.2)
        kind = sb.choice(_PROP_KINDS)
        sb.boxes.append(((x, 0.75, sb.uniform(4.0, length - 5.0)), (0.9, 0.75, 2.1), sb.uniform(-0.15, 0.15),
                         sb.material(kind, sb.uniform(*_PROP_SCALE[kind]), *sb.contrasting_colors())))
    for _ in range(n_poles):
        x = sb.choice((-1.0, 1.0)) * (street_half_width + 0.4)
        sb.boxes.append(((x, 2.5, sb.uniform(2.0, length - 2.0)), (0.1, 2.5, 0.1), 0.0,
                         sb.material(TextureKind.STRIPES, 0.5, sb.color(0.6, 0.9), sb.color(0.0, 0.3))))
    for _ in range(n_spheres):
        radius = sb.uniform(0.3, 1.0)
        x = sb.choice((-1.0, 1.0)) * sb.uniform(2.0 + radius, street_half_width + 0.5)
        kind = sb.choice(_PROP_KINDS)
        sb.spheres.append(((x, radius, sb.uniform(3.0, length - 5.0)), radius,
                           sb.material(kind, sb.uniform(*_PROP_SCALE[kind]), *sb.contrasting_colors())))
    return sb.build(dtype)


def forward_camera_path(seed: int, n_frames: int, speed: float = 0.5, yaw_rate: float = 0.005,
                        height: float = 1.5, pitch: float = 0.02, start_z: float = 0.0,
                        dtype: torch.dtype = torch.float32) -> Tensor:
    """Poses of a camera driving forward along +z with smooth, seeded wobble in heading, pitch and height.

    The heading is ``A sin(2 pi k / period + phase)`` with ``A = yaw_rate period / (2 pi)`` (period
    40-120 frames and phase seeded), so it turns by at most ``yaw_rate`` per frame and the path weaves
    about x = 0 by at most ``speed A period / (2 pi)`` (0.2-0.9 m with the defaults). Cameras are OpenCV
    (x right, y down, z forward), world +y up.

    Args:
        seed: generator seed; the same seed gives the same path.
        n_frames: T >= 1.
        speed: distance travelled per frame [m].
        yaw_rate: peak heading change per frame [rad].
        height: mean camera height above the ground [m].
        pitch: mean downward tilt [rad].
        start_z: z of the first camera centre [m].
        dtype: float dtype.

    Returns:
        (T, 4, 4) ``cam_from_world``.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if height <= 0:
        raise ValueError(f"height must be > 0, got {height}")
    gen = torch.Generator().manual_seed(seed)
    period, phase, bob_phase = (torch.rand(3, generator=gen, dtype=torch.float64) * torch.tensor(
        [80.0, 2 * math.pi, 2 * math.pi], dtype=torch.float64) + torch.tensor([40.0, 0.0, 0.0], dtype=torch.float64))
    k = torch.arange(n_frames, dtype=torch.float64)
    omega = 2 * math.pi / period
    amplitude = yaw_rate / omega  # heading yaw = A sin(omega k + phase) turns at most yaw_rate per frame
    yaw = amplitude * torch.sin(omega * k + phase)
    # x ~ -(speed A / omega) cos(omega k + phase): start on that curve so the path weaves about x = 0
    step_x, step_z = speed * torch.sin(yaw), speed * torch.cos(yaw)
    x = torch.cumsum(step_x, 0) - step_x[0] - speed * amplitude / omega * torch.cos(phase)
    z = start_z + torch.cumsum(step_z, 0) - step_z[0]
    y = height + 0.03 * torch.sin(2 * math.pi * k / 17.0 + bob_phase)
    tilt = pitch + 0.01 * torch.sin(2 * math.pi * k / 23.0 + bob_phase)
    eye = torch.stack([x, y, z], -1)
    forward = torch.stack([torch.cos(tilt) * torch.sin(yaw), -torch.sin(tilt), torch.cos(tilt) * torch.cos(yaw)], -1)
    return PinholeCamera.look_at(eye, eye + forward).to(dtype)
