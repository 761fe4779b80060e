"""The ``mitsuba`` renderer: triangle meshes ray-traced by Mitsuba 3, with projective-sampling gradients in PyTorch.

An optional backend (``pip install -e '.[mitsuba]'``, the ``mitsuba`` extra). Mitsuba 3 (Jakob et al., "Mitsuba 3
renderer", 2022) runs on the CPU in its ``llvm_ad_rgb`` variant, whose Dr.Jit compiler needs an LLVM shared library
>= 17 at run time (Debian 12: ``apt-get install libllvm19``; Dr.Jit finds it in the system's library folders, or at
the path in ``DRJIT_LIBLLVM_PATH``). Each image is rendered by Mitsuba's ``prb_projective`` integrator, which samples
the silhouette edges of the mesh to estimate the derivative of what each pixel sees (Zhang et al., "Projective
Sampling for Differentiable Rendering of Geometry", SIGGRAPH Asia 2023): visibility has gradients, as in a soft
rasteriser, but the images are not blurred. :class:`_MitsubaPass` wraps one Mitsuba render as a
``torch.autograd.Function`` whose backward runs the integrator's ``render_backward``.

What Mitsuba does and what torch does:

* Mitsuba traces the camera rays (``spp`` per pixel, box-filtered over the pixel's square) against the mesh and
  returns what they see, directly (paths of one segment): the mesh's per-vertex radiance, interpolated
  barycentrically, on the faces' front sides. It differentiates that image w.r.t. the vertex positions (edges and
  interiors) and the per-vertex radiance.
* torch shades the vertices as soft_mesh shades its fragments (:mod:`runner.render.shading`: Phong, Lambert or
  unlit, with the same ``lights``, ``ambient``, ``specular`` and ``shininess``), but once per vertex (Gouraud
  shading): lights cast no shadows and nothing is reflected between surfaces. Mitsuba's lights are not used: its
  surfaces are one-sided in the frame of the interpolated normals, so near a silhouette a front face can turn black
  where its interpolated normal faces away, an edge that projective sampling does not see (the vertex gradients of
  an unlit icosphere then point the wrong way), and flat normals instead make every crease such an edge.
* Two renders make one :class:`~runner.render.base.Rendered`, with the same camera rays (same seed): coverage (a
  black mesh in front of white: ``alpha = 1 - image``; with ``cull_backfaces`` the front sides are white on black:
  ``alpha = image``) and colour (front sides glow with the shaded vertex colours, back faces are black);
  ``rgb = colour + (1 - alpha) * background``.

Cameras: the scene is built in the OpenCV camera frame of each view (vertices moved there in torch, so gradients
flow to the vertices, the vertex colours and the camera pose ``cam_from_world``, not to the intrinsics ``K``).
Mitsuba's pixel (i, j) spans film coordinates [j, j + 1) x [i, i + 1), i.e. the square centred on dwx's pixel centre
(u, v) = (j, i), and its box filter averages it: ``SoftMeshRenderer(hard=True, supersample=s)`` in the limit of
large s. A principal point (cx, cy) becomes ``principal_point_offset = 0.5 - (c + 0.5) / size``; fx != fy is
rendered by scaling the scene's camera-frame y by fy / fx (exact for coverage and depth; shading uses the unscaled
normals).

Depth is the camera z of the first hit along a ``ceil(sqrt(spp))``-square grid of rays per pixel, averaged over the
rays that hit (front faces only with ``cull_backfaces``), and 0 where alpha is 0; Mitsuba finds the hit triangle and
torch intersects its plane, so depth has gradients w.r.t. the vertices (not at its edges). Its rays are not the
coverage's, so at a silhouette a pixel of small coverage may have depth 0.

Limits: float32 inside Mitsuba (results are cast to the input dtype); Monte Carlo noise in the images (``spp``) and
the gradients (``spp_grad``, ``spp_edge``); vertex colours only (UV textures are soft_mesh's); renders on the CPU,
one image of a batch at a time.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from runner.geometry.cameras import PinholeCamera
from runner.geometry.meshes import Meshes
from runner.render.base import MESHES, Rendered
from runner.render.shading import DirectionalLight, check_mesh_batch, set_surface_settings

try:
    import drjit as dr
    import mitsuba as mi
except ImportError as error:  # an optional backend: say how to get it
    raise ImportError(
        "runner.render.mitsuba_mesh needs Mitsuba 3: pip install -e '.[mitsuba]' (the 'mitsuba' extra of dwx)"
    ) from error

VARIANT = "llvm_ad_rgb"
# LLVM 15 and 16 abort the process while compiling Mitsuba's kernels ("LLVM ERROR: Cannot select ... fmaximum").
MIN_LLVM = (17,)


def _llvm_version() -> tuple[int, ...] | None:
    """The version of the LLVM library Dr.Jit loaded, or None when its LLVM backend is inactive."""
    if not dr.has_backend(dr.JitBackend.LLVM):
        return None
    return tuple(dr.detail.llvm_version())


_found = _llvm_version()
if _found is None or _found < MIN_LLVM:
    raise ImportError(
        f"runner.render.mitsuba_mesh needs an LLVM shared library >= {MIN_LLVM[0]} for Mitsuba's {VARIANT} variant, "
        f"found {'none' if _found is None else '.'.join(map(str, _found))}: apt-get install libllvm19 (Debian 12) "
        f"or set DRJIT_LIBLLVM_PATH to a libLLVM.so; Mitsuba itself is pip install -e '.[mitsuba]'"
    )
mi.set_variant(VARIANT)

Shading = Literal["phong", "lambert", "unlit", "silhouette"]
# Mitsuba's camera frame (x left, y up, z forward) placed in the OpenCV camera frame (x right, y down, z forward)
_SENSOR_TO_WORLD = mi.ScalarTransform4f().look_at(origin=[0, 0, 0], target=[0, 0, 1], up=[0, -1, 0])


def _seed(*parts) -> int:
    """A 32-bit sampler seed from the renderer's seed, the call, the image and the pass."""
    return int.from_bytes(hashlib.blake2s("/".join(map(str, parts)).encode(), digest_size=4).digest(), "little")


def _float(t: Tensor) -> mi.Float:
    """A flat float32 Dr.Jit array of a tensor's values."""
    return mi.Float(t.detach().to("cpu", torch.float32).contiguous().numpy().ravel())


@dataclass
class _Pass:
    """One Mitsuba scene holding a mesh of fixed vertex and face counts, seen by one sensor at the origin.

    Attributes:
        scene: the Mitsuba scene.
        params: its traversed parameters.
        inputs: the parameter keys (``mesh.vertex_positions`` ...) filled from flat tensors at each render.
        spp: samples per pixel of the primal render.
    """

    scene: mi.Scene
    params: mi.SceneParameters
    inputs: tuple[str, ...]
    spp: int

    def set(self, faces: Tensor, sensor: dict[str, float], values: Sequence[Tensor], grad: bool = False) -> None:
        """Load the faces (F, 3), the sensor's settings (parameter key -> value) and one flat tensor per input."""
        self.params["mesh.faces"] = mi.UInt32(faces.detach().to("cpu", torch.int64).numpy().astype(np.uint32).ravel())
        for key, value in sensor.items():
            self.params[key] = value
        for key, value in zip(self.inputs, values):
            self.params[key] = _float(value)
            if grad:
                dr.enable_grad(self.params[key])
        self.params.update()

    def render(self, seed: int) -> Tensor:
        """(H, W, 3) float32 image."""
        with dr.suspend_grad():
            # an opaque seed is an input of the kernels, not a constant compiled into them: new seeds reuse them
            image = self.scene.integrator().render(self.scene, 0, dr.opaque(mi.UInt32, seed), self.spp)
        return torch.from_numpy(np.array(image, dtype=np.float32))

    def backward(self, grad_image: Tensor, seed: int) -> list[Tensor]:
        """Flat float32 gradients of the inputs from d loss / d image (H, W, 3); set the inputs with ``grad=True``."""
        grad_in = mi.TensorXf(grad_image.detach().to("cpu", torch.float32).contiguous().numpy())
        self.scene.integrator().render_backward(self.scene, self.params, grad_in, 0, dr.opaque(mi.UInt32, seed))
        grads = [torch.from_numpy(np.array(dr.grad(self.params[key]), dtype=np.float32)) for key in self.inputs]
        for key in self.inputs:
            dr.disable_grad(self.params[key])
        return grads


class _MitsubaPass(torch.autograd.Function):
    """The (H, W, 3) image of one :class:`_Pass`; backward runs Mitsuba's ``render_backward``."""

    @staticmethod
    def forward(ctx, scene_pass: _Pass, faces: Tensor, sensor: dict, seed: int, seed_grad: int, *values: Tensor):
        scene_pass.set(faces, sensor, values)
        ctx.scene_pass, ctx.faces, ctx.sensor, ctx.seed_grad = scene_pass, faces, sensor, seed_grad
        ctx.save_for_backward(*values)
        return scene_pass.render(seed).to(values[0].device, values[0].dtype)

    @staticmethod
    def backward(ctx, grad_image: Tensor):
        values = ctx.saved_tensors
        # the scene serves every image of a batch and later calls: load this image's values again
        ctx.scene_pass.set(ctx.faces, ctx.sensor, values, grad=True)
        grads = ctx.scene_pass.backward(grad_image, ctx.seed_grad)
        needs = ctx.needs_input_grad[5:]
        return (None,) * 5 + tuple(
            g.to(v.device, v.dtype).reshape(v.shape) if need else None for g, v, need in zip(grads, values, needs)
        )


class MitsubaRenderer:
    """Mitsuba 3 renders of :class:`Meshes` seen by :class:`PinholeCamera`, differentiable through projective sampling.

    Args:
        spp: camera rays per pixel of the images, >= 1.
        spp_grad: samples per pixel of the derivative inside the faces (interpolated colours), >= 0 (0: none).
        spp_edge: samples per pixel of the derivative at the silhouette edges (visibility), >= 0 (0: none).
        seed: seed of the samplers; each call, image and pass draws its own from it (same seed, same images).
        cull_backfaces: alpha counts only the rays whose first hit is a front face (counter-clockwise seen from
            outside); back faces are then background-coloured but, unlike soft_mesh's culling, still hide what is
            behind them.
        znear: rays start at this camera depth [scene units], > 0.
        zfar: rays end at this camera depth [scene units], > znear.
        background: RGB behind the meshes, in [0, 1].
        shading: "phong", "lambert" (no highlights), "unlit" (albedo only) or "silhouette" (white over the
            background; only the coverage is rendered), evaluated at the vertices.
        lights: directional lights (see :class:`DirectionalLight` for their frames).
        ambient: ambient light colour (3 floats >= 0).
        specular: specular colour of the material for "phong" (3 floats >= 0).
        shininess: Phong exponent, > 0.
    """

    draws = frozenset({MESHES})

    def __init__(
        self,
        spp: int = 16,
        spp_grad: int = 4,
        spp_edge: int = 4,
        seed: int = 0,
        cull_backfaces: bool = False,
        znear: float = 0.01,
        zfar: float = 100.0,
        background: Sequence[float] = (0.0, 0.0, 0.0),
        shading: Shading = "phong",
        lights: Sequence[DirectionalLight] = (DirectionalLight(),),
        ambient: Sequence[float] = (0.5, 0.5, 0.5),
        specular: Sequence[float] = (0.2, 0.2, 0.2),
        shininess: float = 64.0,
    ):
        for name, value, low in (("spp", spp, 1), ("spp_grad", spp_grad, 0), ("spp_edge", spp_edge, 0)):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value}")
        set_surface_settings(
            self, cull_backfaces, znear, zfar, background, shading, lights, ambient, specular, shininess
        )
        self.spp, self.spp_grad, self.spp_edge = int(spp), int(spp_grad), int(spp_edge)
        self.seed = int(seed)
        self.calls = 0  # renders so far: each call draws new samples
        self._passes: dict[tuple, _Pass] = {}

    def __call__(self, meshes: Meshes, cameras: PinholeCamera) -> Rendered:
        """Render mesh b through camera b.

        Args:
            meshes: B meshes (use ``meshes.extend(n)`` to see one mesh from n cameras), same dtype as the cameras,
                each with at least one face; vertex colours (or none: white), no UV texture.
            cameras: B cameras without skew; the image size is ``cameras.image_size``.
        Returns:
            :class:`Rendered`: rgb (B, H, W, 3) over the background; alpha (B, H, W), the fraction of the pixel's
            ``spp`` camera rays that hit the mesh (front faces with ``cull_backfaces``); depth (B, H, W), the mean
            camera z of the hits of a ``ceil(sqrt(spp))``-square grid of rays per pixel, 0 where none hits or alpha
            is 0.
        """
        self._check(meshes, cameras)
        if dr.thread_count() != torch.get_num_threads():  # dwx's `threads` sets torch's threads; Dr.Jit's follow
            dr.set_thread_count(torch.get_num_threads())
        call, self.calls = self.calls, self.calls + 1
        colors = None if self.shading == "silhouette" else self._shade(meshes, cameras)
        images = [self._render_one(meshes, cameras, colors, b, call) for b in range(len(meshes))]
        return Rendered(*(torch.stack(parts) for parts in zip(*images)))

    # ------------------------------------------------------------------ shading
    def _shade(self, meshes: Meshes, cameras: PinholeCamera) -> Tensor:
        """(sum V_b, 3) radiance of the packed vertices of mesh b seen by camera b, as soft_mesh's shading of a
        fragment at the vertex (:func:`runner.render.shading.phong`)."""
        base = meshes.verts_colors_packed
        if base is None:
            base = meshes.verts_packed.new_ones(meshes.verts_packed.shape)
        if self.shading == "unlit":
            return base
        normals = meshes.verts_normals_packed()
        image = meshes.vert_to_mesh
        light = base.new_tensor(self.ambient).expand_as(base)
        highlight = base.new_zeros(base.shape)
        if self.shading == "phong":
            to_eye = torch.nn.functional.normalize(cameras.center.index_select(0, image) - meshes.verts_packed, dim=-1)
        for lamp in self.lights:
            to_light = lamp.world_directions(cameras).index_select(0, image)
            color = base.new_tensor(lamp.color)
            cos = (normals * to_light).sum(-1, keepdim=True)
            light = light + color * cos.clamp(min=0)
            if self.shading == "phong":
                mirrored = 2 * cos * normals - to_light
                spec = (mirrored * to_eye).sum(-1, keepdim=True).clamp(min=0) ** self.shininess
                highlight = highlight + color * base.new_tensor(self.specular) * torch.where(cos > 0, spec, 0.0)
        return base * light + highlight

    # ------------------------------------------------------------------ one image
    def _render_one(
        self, meshes: Meshes, cameras: PinholeCamera, colors: Tensor | None, b: int, call: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """rgb (H, W, 3), alpha (H, W) and depth (H, W) of mesh b seen by camera b; ``colors`` are the packed
        vertex radiances (None: silhouette)."""
        K = cameras.K[b]
        fx, fy, cx, cy = K[0, 0].item(), K[1, 1].item(), K[0, 2].item(), K[1, 2].item()
        H, W = cameras.image_size
        pose = cameras.cam_from_world[b]
        stretch = K.new_tensor([1.0, fy / fx, 1.0])
        verts = (meshes.verts[b] @ pose[:3, :3].T + pose[:3, 3]) * stretch  # camera frame, square pixels
        faces = meshes.faces[b]
        sensor = {
            "sensor.x_fov": math.degrees(2 * math.atan(W / (2 * fx))),
            "sensor.principal_point_offset_x": 0.5 - (cx + 0.5) / W,
            "sensor.principal_point_offset_y": 0.5 - (cy + 0.5) / H,
        }
        seed, seed_grad = _seed(self.seed, call, b, "primal"), _seed(self.seed, call, b, "grad")
        key = (verts.shape[0], faces.shape[0], (H, W))
        coverage = self._pass("coverage", *key)
        image = _MitsubaPass.apply(coverage, faces, sensor, seed, seed_grad, verts.reshape(-1))
        alpha = image[..., 0] if self.cull_backfaces else 1 - image[..., 0]
        if colors is None:
            color = alpha[..., None].expand(H, W, 3)
        else:
            radiance = colors[meshes.vert_to_mesh == b].reshape(-1)
            color = _MitsubaPass.apply(
                self._pass("color", *key), faces, sensor, seed, seed_grad, verts.reshape(-1), radiance
            )
        rgb = color + (1 - alpha[..., None]) * verts.new_tensor(self.background)
        depth = torch.where(alpha > 0, self._depth(coverage, verts, faces, (fx, cx, cy), (H, W)), 0.0)
        return rgb, alpha, depth

    def _depth(
        self,
        coverage: _Pass,
        verts: Tensor,
        faces: Tensor,
        intrinsics: tuple[float, float, float],
        image_size: tuple[int, int],
    ) -> Tensor:
        """(H, W) mean camera z of the hits of an n x n grid of rays per pixel (n = ceil(sqrt(spp))), 0 where none.

        ``coverage`` must hold ``verts`` (V, 3) (camera frame, square pixels) and ``faces`` (F, 3); ``intrinsics``
        are (f, cx, cy) [px].
        """
        fx, cx, cy = intrinsics
        H, W = image_size
        n = math.ceil(math.sqrt(self.spp))
        grid = {"dtype": verts.dtype, "device": verts.device}
        offsets = (torch.arange(n, **grid) + 0.5) / n - 0.5
        v = (torch.arange(H, **grid)[:, None] + offsets).reshape(-1)  # (H n,) sub-pixel rows
        u = (torch.arange(W, **grid)[:, None] + offsets).reshape(-1)  # (W n,)
        x, y = torch.broadcast_tensors(((u - cx) / fx)[None, :], ((v - cy) / fx)[:, None])
        d = torch.stack([x, y, torch.ones_like(x)], -1).reshape(-1, 3)  # z = 1: a ray's parameter is its depth
        with dr.suspend_grad():
            origin = mi.Point3f(*(_float(self.znear * d[:, i]) for i in range(3)))
            ray = mi.Ray3f(origin, mi.Vector3f(*(_float(d[:, i]) for i in range(3))), self.zfar - self.znear)
            hit = coverage.scene.ray_intersect_preliminary(ray)
            valid = torch.from_numpy(np.array(hit.is_valid(), dtype=bool)).to(verts.device)
            face = torch.from_numpy(np.array(hit.prim_index, dtype=np.int64)).to(verts.device)
        a, b, c = verts[faces[torch.where(valid, face, 0)]].unbind(1)  # (R, 3) each
        normal = torch.linalg.cross(b - a, c - a)
        facing = (normal * d).sum(-1)
        z = (normal * a).sum(-1) / torch.where(valid, facing, 1.0)  # where the ray s d meets the face's plane: s = z
        if self.cull_backfaces:
            valid = valid & (facing < 0)
        z = torch.where(valid, z, 0.0).reshape(H, n, W, n)
        hits = valid.to(z.dtype).reshape(H, n, W, n).sum((1, 3))
        return torch.where(hits > 0, z.sum((1, 3)) / hits.clamp(min=1), 0.0)

    # ------------------------------------------------------------------ Mitsuba scenes
    def _pass(self, kind: str, num_verts: int, num_faces: int, image_size: tuple[int, int]) -> _Pass:
        """The cached coverage or colour scene for meshes of this size at this image size."""
        key = (kind, num_verts, num_faces, image_size)
        if key not in self._passes:
            self._passes[key] = self._build(kind, num_verts, num_faces, image_size)
        return self._passes[key]

    def _build(self, kind: str, num_verts: int, num_faces: int, image_size: tuple[int, int]) -> _Pass:
        """A scene of one mesh (geometric normals: front = counter-clockwise) whose camera rays see, directly:

        * coverage: a black mesh in front of a white environment, or with ``cull_backfaces`` white front sides on
          black; only the silhouette edges have a derivative (``sppc`` 0);
        * color: front sides glowing with the interpolated per-vertex radiance ``vertex_emission``.
        """
        H, W = image_size
        props = mi.Properties()
        props["bsdf"] = mi.load_dict({"type": "diffuse", "reflectance": {"type": "rgb", "value": 0.0}})
        scene = {"type": "scene"}
        if kind == "coverage":
            if self.cull_backfaces:
                props["emitter"] = mi.load_dict({"type": "area", "radiance": {"type": "rgb", "value": 1.0}})
            else:
                scene["environment"] = {"type": "constant", "radiance": {"type": "rgb", "value": 1.0}}
            inputs, sppc = ("mesh.vertex_positions",), 0
        else:
            radiance = {"type": "mesh_attribute", "name": "vertex_emission"}
            props["emitter"] = mi.load_dict({"type": "area", "radiance": radiance})
            inputs, sppc = ("mesh.vertex_positions", "mesh.vertex_emission"), self.spp_grad
        mesh = mi.Mesh("mesh", vertex_count=num_verts, face_count=num_faces, has_vertex_normals=False, props=props)
        if kind == "color":
            mesh.add_attribute("vertex_emission", 3, mi.Float(np.zeros(3 * num_verts, dtype=np.float32)))
        # max_depth 1: the camera rays' first hits only (emission seen directly), no light sampling
        integrator = {"type": "prb_projective", "max_depth": 1, "sppc": sppc, "sppp": self.spp_edge, "sppi": 0}
        film = {
            "type": "hdrfilm",
            "width": W,
            "height": H,
            "pixel_format": "rgb",
            "sample_border": True,
            "rfilter": {"type": "box"},
        }
        scene.update(
            {
                "integrator": integrator,
                "mesh": mesh,
                "sensor": {
                    "type": "perspective",
                    "fov_axis": "x",
                    "fov": 60.0,
                    "to_world": _SENSOR_TO_WORLD,
                    "near_clip": self.znear,
                    "far_clip": self.zfar,
                    "film": film,
                    "sampler": {"type": "independent", "sample_count": self.spp},
                },
            }
        )
        scene = mi.load_dict(scene)
        return _Pass(scene, mi.traverse(scene), inputs, self.spp)

    @staticmethod
    def _check(meshes: Meshes, cameras: PinholeCamera) -> None:
        check_mesh_batch(meshes, cameras)
        if meshes.texture is not None:
            raise ValueError("renderer=mitsuba draws vertex colours, not UV textures; use renderer=soft_mesh")
        if bool((cameras.K[:, 0, 1] != 0).any()):
            raise ValueError("renderer=mitsuba needs cameras without skew (K[0, 1] = 0)")
