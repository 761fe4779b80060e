"""Procedural shape categories: closed, normalised, deterministic per seed, varied across seeds."""

from __future__ import annotations

import pytest
import torch

from runner.geometry.meshes import Meshes
from tasks.single_view_recon.metrics import voxels
from tasks.single_view_recon.shapes import CATEGORIES, join_parts, make_parts


def _shape(category, seed):
    return join_parts(make_parts(category, torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("category", CATEGORIES)
def test_shape_is_closed_and_in_the_unit_cube(category):
    mesh = _shape(category, 0)
    verts, faces = mesh.verts[0], mesh.faces[0]
    extent = verts.amax(0) - verts.amin(0)
    assert extent.max() == pytest.approx(1.0, abs=1e-5)  # longest side 1
    assert torch.allclose(verts.amax(0) + verts.amin(0), torch.zeros(3), atol=1e-5)  # centred
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(1).values
    _, counts = torch.unique(edges, dim=0, return_counts=True)
    assert (counts == 2).all()  # every part is a closed solid
    assert mesh.verts_colors[0].shape == verts.shape and 0 <= mesh.verts_colors[0].min() <= 1


@pytest.mark.parametrize("category", CATEGORIES)
def test_shapes_are_deterministic_and_vary_with_the_seed(category):
    a, b, c = _shape(category, 3), _shape(category, 3), _shape(category, 4)
    assert torch.equal(a.verts[0], b.verts[0])
    assert a.verts[0].shape != c.verts[0].shape or not torch.allclose(a.verts[0], c.verts[0])


def test_unknown_category_names_the_choices():
    with pytest.raises(ValueError, match="chair, table"):
        _shape("sofa", 0)


def test_solid_is_the_union_of_the_parts():
    parts = make_parts("chair", torch.Generator().manual_seed(0))
    union = voxels(parts)
    singles = [voxels(Meshes([v], [f])) for v, f in zip(parts.verts, parts.faces)]
    assert torch.equal(union, torch.stack(singles).any(0))
    assert union.sum() > voxels(_shape("chair", 0)).sum()  # parity on the joined mesh drops the overlaps
