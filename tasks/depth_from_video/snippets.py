"""Snippets: which short runs of frames a video holds, and how a training step draws and augments a batch of them.

A snippet is a target frame with its source frames at the offsets of the :class:`FrameWindow`. A step draws the
global batch of snippets, their horizontal flips and their colour jitter from its own generator, the same on every
rank, and each rank keeps its share (:meth:`runner.task.Task.shard`): N processes then train on exactly the
snippets and augmentations one process would see (dwx's stand-in for a ``DistributedSampler``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from runner.errors import ConfigError, InputError
from tasks.depth_from_video.data import Sequence


class DataParallel(Protocol):
    """What batch drawing and the loss need of a data-parallel run; a :class:`~runner.task.Task` has it."""

    world_size: int

    def shard(self, batch: Tensor) -> Tensor:
        """This rank's share of a global batch (dim 0)."""

    def sum_over_ranks(self, value: Tensor) -> Tensor:
        """A detached statistic summed over the ranks."""


class FrameWindow:
    """The frame offsets of a snippet: 0 is the target, the others its sources (monodepth2: [-1, 0, 1]).

    Attributes:
        offsets: every offset, in the configured order.
        sources: the offsets other than 0, in that order.

    Raises:
        ConfigError: the offsets do not hold 0 and at least one source, or repeat one.
    """

    def __init__(self, offsets: Iterable[int]):
        offsets = [int(o) for o in offsets]
        if 0 not in offsets or len(offsets) < 2 or len(set(offsets)) != len(offsets):
            raise ConfigError(f"task.frame_window must hold 0 (the target) and at least one source, got {offsets}")
        self.offsets = offsets
        self.sources = [o for o in offsets if o != 0]

    @property
    def length(self) -> int:
        """Frames a snippet spans."""
        return max(self.offsets) - min(self.offsets) + 1

    def targets(self, seq: Sequence) -> range:
        """The target frame indices of ``seq`` whose whole window lies inside it."""
        return range(-min(self.offsets), len(seq) - max(self.offsets))


class Batch(NamedTuple):
    """One training step's share of snippets (b of them: the global batch over the processes).

    Attributes:
        target: (b, 3, H, W) target frames.
        sources: [(b, 3, H, W)] source frames, one per source offset in window order.
        K: (b, 3, 3) intrinsics of (H, W), flipped with the frames.
        flip: (b,) bool: the snippet is mirrored left-right.
        generator: the step's generator, which drew the batch; it draws the colour jitter
            (:meth:`SnippetSampler.jitter`) and the auto-mask noise next.
    """

    target: Tensor
    sources: list[Tensor]
    K: Tensor
    flip: Tensor
    generator: torch.Generator


class SnippetSampler:
    """Draws a step's snippets from the training sequences, with their flips and colour jitter.

    Args:
        sequences: the training sequences, all of one image size.
        window: the snippet's frame offsets.
        batch_size: snippets per step, over all processes.
        flip: probability of a horizontal flip of a snippet.
        color_jitter: max brightness / contrast / saturation change of the network inputs (0 = off).

    Raises:
        InputError: no sequence is long enough for one window.
    """

    def __init__(
        self, sequences: list[Sequence], window: FrameWindow, batch_size: int, flip: float, color_jitter: float
    ):
        snippets = [(i, t) for i, seq in enumerate(sequences) for t in window.targets(seq)]
        if not snippets:
            raise InputError(
                f"the frame window {window.offsets} needs sequences of at least {window.length} frames; the "
                f"longest training sequence has {max(len(s) for s in sequences)}"
            )
        self.sequences, self.window = sequences, window
        self.snippets = torch.tensor(snippets, dtype=torch.int64)  # (N, 2): (sequence index, target frame index)
        self.batch_size, self.flip, self.color_jitter = batch_size, flip, color_jitter

    def __len__(self) -> int:
        """The number of snippets in the training sequences."""
        return len(self.snippets)

    def draw(self, generator: torch.Generator, ranks: DataParallel) -> Batch:
        """This rank's share of ``batch_size`` snippets drawn uniformly (with replacement), flipped with
        probability ``flip`` (the principal point mirrored with them)."""
        g = generator
        pick = ranks.shard(self.snippets[torch.randint(len(self.snippets), (self.batch_size,), generator=g)])
        flip = ranks.shard(torch.rand(self.batch_size, generator=g) < self.flip)
        seqs = [self.sequences[i] for i in pick[:, 0].tolist()]
        t = pick[:, 1].tolist()
        target = torch.stack([s.frames[ti] for s, ti in zip(seqs, t)])
        sources = [torch.stack([s.frames[ti + o] for s, ti in zip(seqs, t)]) for o in self.window.sources]
        K = torch.stack([s.K for s in seqs])
        if flip.any():
            f = flip.to(target.device)
            W = target.shape[-1]
            target = torch.where(f[:, None, None, None], target.flip(-1), target)
            sources = [torch.where(f[:, None, None, None], s.flip(-1), s) for s in sources]
            K[:, 0, 2] = torch.where(f, W - 1 - K[:, 0, 2], K[:, 0, 2])
        return Batch(target, sources, K, flip, g)

    def jitter(self, images: list[Tensor], generator: torch.Generator, ranks: DataParallel) -> list[Tensor]:
        """The same random brightness, contrast and saturation change for every frame of a snippet.

        Args:
            images: [(b, 3, H, W)] the frames of the batch's snippets (target and sources).
            generator: the batch's generator (:attr:`Batch.generator`): the factors are drawn for the global
                batch and sharded, like the snippets.
        Returns:
            The changed frames, clamped to [0, 1]; ``images`` itself when ``color_jitter`` is 0.
        """
        if self.color_jitter <= 0:
            return images
        j = self.color_jitter
        draw = torch.rand(3, self.batch_size, 1, 1, 1, generator=generator)
        factors = (1 + (draw[:, ranks.shard(torch.arange(self.batch_size))] * 2 - 1) * j).to(images[0].device)
        out = []
        for img in images:
            gray = img.mean(1, keepdim=True)
            img = img * factors[0]
            img = (img - img.mean((1, 2, 3), keepdim=True)) * factors[1] + img.mean((1, 2, 3), keepdim=True)
            img = (img - gray) * factors[2] + gray
            out.append(img.clamp(0, 1))
        return out
