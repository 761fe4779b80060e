"""Procedural shape categories: chairs, tables, airplanes, cars and lamps from boxes and cylinders.

Each object is a handful of parametric parts with random proportions drawn from a generator, joined
into one mesh, coloured per part and normalised to the unit cube (longest side 1, centred at the
origin), the normalisation of the ShapeNet renderings of NMR (Kato et al., CVPR 2018) and SoftRas
(Liu et al., ICCV 2019). World frame: +y up, objects face +z (the azimuth-0 camera looks at their front).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from runner.geometry.mesh_io import normalize_to_unit_cube
from runner.geometry.meshes import Meshes
from runner.geometry.primitives import box, cylinder, join_meshes

CATEGORIES = ("chair", "table", "airplane", "car", "lamp")


@dataclass(frozen=True)
class Part:
    """One primitive of an object.

    Attributes:
        kind: ``"box"`` or ``"cylinder"``.
        center: (x, y, z) [scene units].
        size: box edge lengths (x, y, z); cylinder (diameter, length along ``axis``, diameter).
        color: linear RGB in [0, 1].
        axis: the cylinder axis, ``"x"``, ``"y"`` or ``"z"`` (ignored for boxes).
        taper: top radius / bottom radius of a cylinder (a frustum when != 1).
    """

    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    color: tuple[float, float, float]
    axis: str = "y"
    taper: float = 1.0


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def _color(g: torch.Generator) -> tuple[float, float, float]:
    return tuple(float(c) for c in 0.15 + 0.8 * torch.rand(3, generator=g))


def chair(g: torch.Generator) -> list[Part]:
    w, d, seat_h = _u(g, 0.4, 0.6), _u(g, 0.4, 0.6), _u(g, 0.35, 0.5)
    t, leg, back_h = _u(g, 0.04, 0.08), _u(g, 0.04, 0.08), _u(g, 0.3, 0.6)
    wood, cloth = _color(g), _color(g)
    parts = [Part("box", (0, seat_h, 0), (w, t, d), cloth),
             Part("box", (0, seat_h + back_h / 2, -d / 2 + t / 2), (w, back_h, t), cloth)]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(Part("box", (sx * (w - leg) / 2, seat_h / 2, sz * (d - leg) / 2), (leg, seat_h, leg), wood))
    return parts


def table(g: torch.Generator) -> list[Part]:
    w, d, h = _u(g, 0.6, 1.0), _u(g, 0.4, 0.8), _u(g, 0.35, 0.7)
    t, leg = _u(g, 0.03, 0.08), _u(g, 0.04, 0.1)
    top, legs = _color(g), _color(g)
    if torch.rand((), generator=g).item() < 0.5:  # four legs
        parts = [Part("box", (0, h, 0), (w, t, d), top)]
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(Part("box", (sx * (w - leg) / 2, h / 2, sz * (d - leg) / 2), (leg, h, leg), legs))
        return parts
    r = _u(g, 0.3, 0.5)  # round top on a pedestal
    return [Part("cylinder", (0, h, 0), (2 * r, t, 2 * r), top),
            Part("cylinder", (0, h / 2, 0), (leg * 1.5, h, leg * 1.5), legs),
            Part("cylinder", (0, t / 2, 0), (r, t, r), legs)]


def airplane(g: torch.Generator) -> list[Part]:
    length, body = _u(g, 0.8, 1.0), _u(g, 0.08, 0.14)
    span, chord, wing_z = _u(g, 0.7, 1.0), _u(g, 0.12, 0.25), _u(g, -0.05, 0.1)
    tail_span, fin_h = _u(g, 0.25, 0.4), _u(g, 0.12, 0.2)
    hull, wing = _color(g), _color(g)
    tail_z = -length / 2 + chord / 3
    return [Part("cylinder", (0, 0, 0), (body, length, body), hull, axis="z"),
            Part("box", (0, 0, wing_z), (span, 0.03, chord), wing),
            Part("box", (0, 0.02, tail_z), (tail_span, 0.025, chord * 0.6), wing),
            Part("box", (0, fin_h / 2 + body / 3, tail_z), (0.025, fin_h, chord * 0.6), wing)]


def car(g: torch.Generator) -> list[Part]:
    length, w, h = _u(g, 0.8, 1.0), _u(g, 0.35, 0.5), _u(g, 0.12, 0.2)
    cabin_l, cabin_h, cabin_z = _u(g, 0.3, 0.55), _u(g, 0.1, 0.18), _u(g, -0.15, 0.05)
    wheel, wheel_w = _u(g, 0.14, 0.22), _u(g, 0.05, 0.09)
    paint, tyre = _color(g), (0.05, 0.05, 0.05)
    y0 = wheel / 2
    parts = [Part("box", (0, y0 + h / 2, 0), (w, h, length), paint),
             Part("box", (0, y0 + h + cabin_h / 2, cabin_z), (w * 0.85, cabin_h, cabin_l), paint)]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(Part("cylinder", (sx * (w / 2 - wheel_w / 3), y0, sz * length * 0.32),
                              (wheel, wheel_w, wheel), tyre, axis="x"))
    return parts


def lamp(g: torch.Generator) -> list[Part]:
    base_r, base_h = _u(g, 0.12, 0.25), _u(g, 0.03, 0.06)
    pole_h, pole_r = _u(g, 0.5, 0.9), _u(g, 0.015, 0.035)
    shade_r, shade_h = _u(g, 0.12, 0.3), _u(g, 0.12, 0.25)
    metal, shade = _color(g), _color(g)
    return [Part("cylinder", (0, base_h / 2, 0), (2 * base_r, base_h, 2 * base_r), metal),
            Part("cylinder", (0, base_h + pole_h / 2, 0), (2 * pole_r, pole_h, 2 * pole_r), metal),
            Part("cylinder", (0, base_h + pole_h, 0), (2 * shade_r, shade_h, 2 * shade_r), shade,
                 taper=_u(g, 0.4, 0.8))]


GENERATORS: dict[str, Callable[[torch.Generator], list[Part]]] = {
    "chair": chair, "table": table, "airplane": airplane, "car": car, "lamp": lamp}


def part_mesh(part: Part, segments: int = 16) -> Meshes:
    """The mesh of one part, placed and sized in the object frame."""
    if part.kind == "box":
        return box(part.size, part.center)
    radius = part.size[0] / 2
    return cylinder(radius=radius, height=part.size[1], segments=segments, center=part.center, axis=part.axis,
                    radius_top=radius * part.taper)


def make_parts(category: str, g: torch.Generator) -> Meshes:
    """One random object of ``category`` as a batch of its P parts, normalised together to the unit cube.

    Parts overlap where they join, so the object's solid is the union of the parts' solids (voxelise the
    batch and take ``any`` over it); :func:`join_parts` gives the single mesh that is rendered.
    """
    if category not in GENERATORS:
        raise ValueError(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")
    parts = GENERATORS[category](g)
    meshes = [part_mesh(part) for part in parts]
    verts, _ = join_meshes(meshes)
    unit = normalize_to_unit_cube(verts)
    per_part = list(torch.split(unit, [m.verts[0].shape[0] for m in meshes]))
    colors = [torch.tensor(p.color).expand_as(v).clone() for p, v in zip(parts, per_part)]
    return Meshes(per_part, [m.faces[0] for m in meshes], verts_colors=colors)


def join_parts(parts: Meshes) -> Meshes:
    """The P parts of :func:`make_parts` as one coloured mesh (a batch of one)."""
    verts, faces = join_meshes([parts])
    return Meshes([verts], [faces], verts_colors=[torch.cat(parts.verts_colors, 0)])

