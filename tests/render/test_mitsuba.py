"""The optional Mitsuba 3 renderer: soft_mesh's hard silhouettes and depths, vertex gradients against finite
differences, a translation recovered by fitting, and a single_view_recon fit through the CLI.

Skipped, with the reason printed by ``pytest -ra``, when Mitsuba 3 or a recent enough LLVM library is missing; under
CI (which installs the ``mitsuba`` extra and libllvm19) that is a failure.
"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from runner.geometry.cameras import PinholeCamera
from runner.geometry.meshes import Meshes
from runner.geometry.primitives import icosphere
from runner.losses.silhouette import soft_iou
from runner.render.soft_mesh import SoftMeshRenderer
from runner.validation import validate
from tests.conftest import compose_config, dwx_env, missing_tool, read_metrics, run_dwx

try:
    from runner.render.mitsuba_mesh import MitsubaRenderer
except ImportError as error:  # the message names what to install
    missing_tool(f"{error}; the optional Mitsuba renderer is not tested")

F64 = torch.float64


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two coverage maps thresholded at 0.5."""
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum())


def blob(dtype=torch.float32) -> Meshes:
    """A bumpy coloured icosphere (level 2) of radius ~0.6 around the origin."""
    sphere = icosphere(2, dtype=dtype)
    v = sphere.verts[0]
    v = v * (0.6 + 0.08 * torch.sin(3 * v[:, :1]) * torch.cos(2 * v[:, 1:2]))
    colors = (v - v.min(0).values) / (v.max(0).values - v.min(0).values)
    return Meshes([v], sphere.faces, verts_colors=[colors])


def cameras(size, fx, fy, cx, cy, elevation, azimuth, dtype=torch.float32) -> PinholeCamera:
    """One camera per entry of the lists (fx, fy, cx, cy [px]; elevation, azimuth [deg]), 2.5 from the origin."""
    K = torch.stack([PinholeCamera.intrinsics(*k, dtype=dtype)[0] for k in zip(fx, fy, cx, cy)])
    poses = PinholeCamera.orbit(torch.tensor(elevation, dtype=dtype), torch.tensor(azimuth, dtype=dtype), 2.5)
    return PinholeCamera(K, poses, size)


def test_silhouettes_and_depth_match_soft_mesh_hard_with_off_centre_principal_points():
    # centred principal point; off-centre; off-centre with fx != fy (non-square pixels)
    cams = cameras(
        (48, 64),
        [56.0, 56.0, 50.0],
        [56.0, 56.0, 60.0],
        [31.5, 20.3, 40.0],
        [23.5, 28.7, 19.0],
        [20.0, -35.0, 60.0],
        [0.0, 130.0, 250.0],
    )
    mesh = blob().extend(3)
    ours = MitsubaRenderer(spp=256)(mesh, cams)
    ref = SoftMeshRenderer(hard=True, supersample=16)(mesh, cams)
    assert ours.rgb.shape == (3, 48, 64, 3) and ours.alpha.shape == ours.depth.shape == (3, 48, 64)
    for b in range(3):
        assert iou(ours.alpha[b], ref.alpha[b]) >= 0.99, b
    inside = (ours.alpha == 1) & (ref.alpha == 1)  # pixels wholly covered in both: one surface, same depth
    torch.testing.assert_close(ours.depth[inside], ref.depth[inside], rtol=1e-4, atol=1e-4)
    assert bool((ours.depth[ours.alpha == 0] == 0).all())
    # the same Phong shading, at the vertices (Gouraud) rather than at each fragment
    assert float((ours.rgb - ref.rgb)[inside].abs().mean()) < 0.01


def test_cull_backfaces_leaves_back_faces_out_of_the_silhouette():
    mesh = blob()
    front = mesh.verts[0][mesh.faces[0]].mean(1)[:, 2] > -0.2  # an open cup: its inside is back faces
    cup = Meshes(mesh.verts, [mesh.faces[0][front]], verts_colors=mesh.verts_colors)
    cams = cameras((40, 40), [40.0], [40.0], [19.5], [19.5], [10.0], [180.0])  # looking into the cup
    coverage = {}
    for cull in (False, True):
        ours = MitsubaRenderer(spp=256, cull_backfaces=cull, shading="silhouette")(cup, cams)
        ref = SoftMeshRenderer(hard=True, supersample=16, cull_backfaces=cull)(cup, cams)
        assert iou(ours.alpha[0], ref.alpha[0]) >= 0.99, cull
        coverage[cull] = float(ours.alpha.sum())
    assert coverage[True] < 0.9 * coverage[False]  # the cup's inside is left out


def finite_difference_check(
    loss, verts: torch.Tensor, moved: list[int], eps: float, settings: dict, gradient_spp: dict
) -> float:
    """Cosine between the gradient of ``loss(renderer, verts)`` w.r.t. the vertices ``moved`` of ``verts`` (V, 3)
    and its central finite differences.

    The finite differences render with a new ``MitsubaRenderer(**settings)`` at 256 samples per pixel and seed 0
    (the same camera rays on both sides, so only the moved edges change the estimate); ``gradient_spp`` sets the
    gradient's samples.
    """
    fd = torch.zeros(len(moved), 3, dtype=verts.dtype)
    for k, i in enumerate(moved):
        for j in range(3):
            step = torch.zeros_like(verts)
            step[i, j] = eps
            up, down = (float(loss(MitsubaRenderer(spp=256, **settings), verts + s * step)) for s in (1, -1))
            fd[k, j] = (up - down) / (2 * eps)
    v = verts.clone().requires_grad_(True)
    loss(MitsubaRenderer(spp=4, **settings, **gradient_spp), v).backward()
    return float(torch.nn.functional.cosine_similarity(v.grad[moved].reshape(-1), fd.reshape(-1), dim=0))


def test_vertex_gradients_match_finite_differences():
    sphere = icosphere(0, dtype=F64)  # 12 vertices, 20 faces
    generator = torch.Generator().manual_seed(0)
    verts = 0.7 * sphere.verts[0] + 0.05 * torch.randn(12, 3, generator=generator, dtype=F64)
    colors = torch.rand(12, 3, generator=generator, dtype=F64)
    cams = cameras((32, 32), [40.0], [40.0], [14.2], [16.6], [20.0], [30.0], dtype=F64)
    weights = torch.rand(32, 32, 3, generator=generator, dtype=F64)
    moved = [0, 3, 6, 9]  # on the silhouette and inside it

    def silhouette(renderer, v):
        return (renderer(Meshes([v], sphere.faces), cams).alpha[0] * weights[..., 0]).sum()

    def colour(renderer, v):  # Phong shading at the vertices, its interpolation, the edges over the background
        return (renderer(Meshes([v], sphere.faces, verts_colors=[colors]), cams).rgb[0] * weights).sum()

    assert finite_difference_check(silhouette, verts, moved, 0.01, {"shading": "silhouette"}, {"spp_edge": 64}) > 0.95
    settings, spp = {"background": (0.3, 0.5, 0.7)}, {"spp_grad": 64, "spp_edge": 64}
    assert finite_difference_check(colour, verts, moved, 0.01, settings, spp) > 0.95


def test_colour_gradient_matches_a_finite_difference():
    """rgb is linear in the vertex colours: d sum(w * rgb) along a direction of the colours is a finite difference."""
    mesh = blob(F64)
    cams = cameras((24, 24), [30.0], [30.0], [11.5], [11.5], [0.0], [0.0], dtype=F64)
    weights = torch.rand(24, 24, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    direction = torch.randn(mesh.verts_colors[0].shape, generator=torch.Generator().manual_seed(2), dtype=F64)

    def loss(colors, **spp):
        return (MitsubaRenderer(spp=64, seed=3, **spp)(mesh.with_colors([colors]), cams).rgb[0] * weights).sum()

    colors = mesh.verts_colors[0].clone().requires_grad_(True)
    loss(colors, spp_grad=64).backward()
    up, down = (float(loss(mesh.verts_colors[0] + s * 0.1 * direction)) for s in (1, -1))
    assert float((colors.grad * direction).sum()) == pytest.approx((up - down) / 0.2, rel=0.05)


def test_fit_recovers_a_translation():
    sphere = icosphere(1)
    verts, faces = sphere.verts[0] * 0.5, sphere.faces[0]
    colors = (verts + 0.5).clamp(0, 1)
    cams = cameras((32, 32), [40.0, 40.0], [40.0, 40.0], [15.5, 15.5], [15.5, 15.5], [20.0, 10.0], [0.0, 90.0])
    truth = torch.tensor([0.15, -0.1, 0.12])
    renderer = MitsubaRenderer(spp=16, background=(0.2, 0.2, 0.2))
    target = renderer(Meshes([verts + truth], [faces], verts_colors=[colors]).extend(2), cams)
    shift = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.Adam([shift], lr=0.02)
    for _ in range(40):
        optimizer.zero_grad()
        out = renderer(Meshes([verts + shift], [faces], verts_colors=[colors]).extend(2), cams)
        (soft_iou(out.alpha, target.alpha) + (out.rgb - target.rgb).abs().mean()).backward()
        optimizer.step()
    assert float((shift.detach() - truth).norm()) < 0.02


def test_bad_settings_and_inputs_are_refused():
    with pytest.raises(ValueError, match="spp_edge must be an integer >= 0"):
        MitsubaRenderer(spp_edge=-1)
    with pytest.raises(ValueError, match="shading must be phong, lambert, unlit or silhouette"):
        MitsubaRenderer(shading="pbr")
    mesh = blob()
    cams = cameras((8, 8), [8.0], [8.0], [3.5], [3.5], [0.0], [0.0])
    skewed = PinholeCamera(
        cams.K + torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), cams.cam_from_world, (8, 8)
    )
    with pytest.raises(ValueError, match="without skew"):
        MitsubaRenderer()(mesh, skewed)
    textured = Meshes(
        mesh.verts,
        mesh.faces,
        verts_uvs=[torch.zeros(1, 2)],
        faces_uvs=[torch.zeros_like(mesh.faces[0])],
        texture=[torch.ones(2, 2, 3)],
    )
    with pytest.raises(ValueError, match="not UV textures"):
        MitsubaRenderer()(textured, cams)


def test_single_view_recon_configs_take_the_renderer():
    cfg = compose_config(["task=single_view_recon", "renderer=mitsuba"])
    validate(cfg)
    renderer = instantiate(cfg.renderer)
    assert isinstance(renderer, MitsubaRenderer) and renderer.cull_backfaces  # mode=fit's override has a meaning
    assert renderer.seed == cfg.seed


def test_single_view_recon_fits_through_mitsuba_from_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx(
        "run",
        "task=single_view_recon",
        "renderer=mitsuba",
        "threads=1",
        "task.embedded.category=table",
        "task.views.image_size=32",
        "task.views.azimuth=4",
        "task.fit=[0,1]",
        "task.views_per_step=2",
        "task.template_level=2",
        "task.num_points=1000",
        "loop.steps=20",
        "loop.eval_every=10",
        "loop.image_every=0",
        f"hydra.run.dir={run_dir}",
        env=dwx_env(DWX_CACHE=str(tmp_path / "cache")),
    )
    assert out.returncode == 0, out.stderr
    m = read_metrics(run_dir)
    assert m["status"] == "completed" and m["steps"] == 20
    sil = [e.value for e in EventAccumulator(str(run_dir / "tb")).Reload().Scalars("metric/silhouette_iou")]
    assert len(sil) == 2 and sil[1] > sil[0] > 0.5  # the sphere moves towards the table's outline
