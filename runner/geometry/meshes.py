"""A batch of triangle meshes of different sizes, stored packed (concatenated) with per-mesh offsets.

The packed layout is what the rasteriser and the losses consume; ``verts_padded`` gives the padded
(B, Vmax, 3) view where a per-mesh batch dimension is convenient. Faces in ``faces_packed`` index the
packed vertices, so one tensor op serves the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class Meshes:
    """A batch of B triangle meshes.

    Attributes:
        verts: list of B tensors (V_b, 3) [scene units].
        faces: list of B int64 tensors (F_b, 3), counter-clockwise seen from outside, indexing verts[b].
        verts_colors: optional list of B tensors (V_b, 3), linear RGB in [0, 1].
        verts_uvs: optional list of B tensors (T_b, 2) texture coordinates in [0, 1] (v up, OBJ style).
        faces_uvs: optional list of B int64 tensors (F_b, 3) indexing verts_uvs[b].
        texture: optional list of B tensors (Ht, Wt, 3), linear RGB in [0, 1].
    """

    verts: list[Tensor]
    faces: list[Tensor]
    verts_colors: list[Tensor] | None = None
    verts_uvs: list[Tensor] | None = None
    faces_uvs: list[Tensor] | None = None
    texture: list[Tensor] | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if len(self.verts) != len(self.faces):
            raise ValueError(f"{len(self.verts)} vertex tensors but {len(self.faces)} face tensors")
        for b, (v, f) in enumerate(zip(self.verts, self.faces)):
            if v.dim() != 2 or v.shape[-1] != 3:
                raise ValueError(f"verts[{b}] must be (V, 3), got {tuple(v.shape)}")
            if f.dim() != 2 or f.shape[-1] != 3:
                raise ValueError(f"faces[{b}] must be (F, 3), got {tuple(f.shape)}")

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return len(self.verts)

    @property
    def device(self) -> torch.device:
        return self.verts[0].device

    @property
    def num_verts_per_mesh(self) -> Tensor:
        """(B,) int64."""
        return torch.tensor([v.shape[0] for v in self.verts], device=self.device)

    @property
    def num_faces_per_mesh(self) -> Tensor:
        """(B,) int64."""
        return torch.tensor([f.shape[0] for f in self.faces], device=self.device)

    # ------------------------------------------------------------------ packed views
    @property
    def verts_packed(self) -> Tensor:
        """(sum V_b, 3) all vertices, concatenated (differentiable w.r.t. each verts[b])."""
        return torch.cat(self.verts, 0) if len(self.verts) > 1 else self.verts[0]

    @property
    def faces_packed(self) -> Tensor:
        """(sum F_b, 3) int64 faces indexing ``verts_packed``."""
        if "faces_packed" not in self._cache:
            offsets = torch.cumsum(self.num_verts_per_mesh, 0) - self.num_verts_per_mesh
            self._cache["faces_packed"] = torch.cat(
                [f.to(torch.int64) + o for f, o in zip(self.faces, offsets.tolist())], 0)
        return self._cache["faces_packed"]

    @property
    def face_to_mesh(self) -> Tensor:
        """(sum F_b,) int64 index of the mesh each packed face belongs to."""
        if "face_to_mesh" not in self._cache:
            self._cache["face_to_mesh"] = torch.repeat_interleave(
                torch.arange(len(self), device=self.device), self.num_faces_per_mesh)
        return self._cache["face_to_mesh"]

    @property
    def vert_to_mesh(self) -> Tensor:
        """(sum V_b,) int64 index of the mesh each packed vertex belongs to."""
        if "vert_to_mesh" not in self._cache:
            self._cache["vert_to_mesh"] = torch.repeat_interleave(
                torch.arange(len(self), device=self.device), self.num_verts_per_mesh)
        return self._cache["vert_to_mesh"]

    @property
    def verts_colors_packed(self) -> Tensor | None:
        if self.verts_colors is None:
            return None
        return torch.cat(self.verts_colors, 0)

    def verts_padded(self, fill: float = 0.0) -> Tensor:
        """(B, Vmax, 3) vertices padded with ``fill``."""
        return torch.nn.utils.rnn.pad_sequence(self.verts, batch_first=True, padding_value=fill)

    @property
    def edges_packed(self) -> Tensor:
        """(E, 2) int64 unique undirected edges of the packed mesh, each sorted (i < j)."""
        if "edges_packed" not in self._cache:
            f = self.faces_packed
            e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
            e = torch.sort(e, dim=1).values
            self._cache["edges_packed"] = torch.unique(e, dim=0)
        return self._cache["edges_packed"]

    # ------------------------------------------------------------------ normals
    def face_normals_packed(self) -> Tensor:
        """(F, 3) unit face normals (right-hand rule on the vertex order)."""
        v = self.verts_packed[self.faces_packed]
        n = torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)
        return torch.nn.functional.normalize(n, dim=-1)

    def verts_normals_packed(self) -> Tensor:
        """(V, 3) unit vertex normals: area-weighted average of the adjacent face normals."""
        verts, faces = self.verts_packed, self.faces_packed
        v = verts[faces]
        n = torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)  # length = 2 * area
        out = torch.zeros_like(verts).index_add(0, faces.reshape(-1), n.repeat_interleave(3, dim=0))
        return torch.nn.functional.normalize(out, dim=-1)

    # ------------------------------------------------------------------ edits
    def with_verts(self, verts: list[Tensor] | Tensor) -> Meshes:
        """Same topology, colours and texture with new vertices (a list, or packed (sum V_b, 3))."""
        if isinstance(verts, Tensor):
            verts = list(torch.split(verts, self.num_verts_per_mesh.tolist(), 0))
        return Meshes(verts, self.faces, self.verts_colors, self.verts_uvs, self.faces_uvs, self.texture,
                      _cache=dict(self._cache))  # topology caches stay valid

    def with_colors(self, verts_colors: list[Tensor]) -> Meshes:
        return Meshes(self.verts, self.faces, verts_colors, self.verts_uvs, self.faces_uvs, self.texture,
                      _cache=dict(self._cache))

    def with_texture(self, verts_uvs: list[Tensor], faces_uvs: list[Tensor], texture: list[Tensor]) -> Meshes:
        """Same vertices and faces, coloured by a UV texture (see the class attributes) instead of vertex colours."""
        return Meshes(self.verts, self.faces, None, verts_uvs, faces_uvs, texture, _cache=dict(self._cache))

    def to(self, device) -> Meshes:
        def move(xs):
            return None if xs is None else [x.to(device) for x in xs]
        return Meshes(move(self.verts), move(self.faces), move(self.verts_colors), move(self.verts_uvs),
                      move(self.faces_uvs), move(self.texture))

    def extend(self, n: int) -> Meshes:
        """Each mesh repeated n times in a row: B -> B * n (e.g. one mesh seen by n cameras)."""
        def rep(xs):
            return None if xs is None else [x for x in xs for _ in range(n)]
        return Meshes(rep(self.verts), rep(self.faces), rep(self.verts_colors), rep(self.verts_uvs),
                      rep(self.faces_uvs), rep(self.texture))
