"""Chunks: the unit of memory, of saving, of resuming and of sharding across jobs (NumPy only).

A group's variants are cut, in grid order, into chunks of ``chunk_size`` variants; every chunk has a
stable file name (``<group key>-<index>``), so any process can tell which chunks are done by looking at
the run directory. ``--shard i/n`` gives each job a deterministic subset of the chunks, balanced by an
estimate of their cost (longest-processing-time first: deep, wide, long-trained chunks are spread out
before the cheap ones fill the gaps).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from sweep.config.grid import Group


@dataclass(frozen=True)
class Chunk:
    group: Group
    index: int  # position within the group
    start: int  # first variant (into group.variants)
    stop: int
    size: int  # the compiled chunk size (>= stop - start; the rest is padding)

    @property
    def name(self) -> str:
        return f"{self.group.key}-{self.index:05d}"

    @property
    def n_variants(self) -> int:
        return self.stop - self.start

    @property
    def cost(self) -> float:
        """Relative cost: multiply-adds of training and measuring (``variant_cost``) times variants."""
        return variant_cost(self.group) * self.n_variants


def variant_cost(group: Group) -> float:
    """Multiply-adds of training and measuring one variant of ``group``: 3 per weight-matrix entry
    (``sweep.nets.forward.sizes``: forward, backward to the state, to the weights) per example."""
    from sweep.data.datasets import input_shape
    from sweep.nets.contract import spec_from_config
    from sweep.nets.forward import sizes

    c = group.static
    t = c.train
    shape = input_shape(c.data)
    spec = spec_from_config(c.model, math.prod(shape), c.data.n_classes, shape)
    per_example = sizes(spec).multiply_adds
    records = t.steps // c.measure.every + 2
    return float(3 * per_example * (t.batch_size * t.steps + records * (c.measure.n_eval + c.data.n_test)))


CPU_CHUNK_MULTIPLY_ADDS = 1e12  # per CPU device and chunk: about half a minute of one core


def work_cap(group: Group, devices: int, platform: str) -> int | None:
    """On a CPU, the largest chunk (a multiple of ``devices``) whose variants cost each device about
    ``CPU_CHUNK_MULTIPLY_ADDS``, at least one variant per device; None on accelerators.

    A CPU trains a chunk in passes (``sweep.runner.passes``), so its memory hardly grows with the chunk and
    the memory budget alone would make one chunk of a whole group. This cap keeps chunks short: an interrupted
    run loses at most about half a minute per device, and the progress bar moves at least that often.
    """
    if platform != "cpu":
        return None
    per_device = max(1, int(CPU_CHUNK_MULTIPLY_ADDS // variant_cost(group)))
    return devices * per_device


def plan_chunks(groups: list[Group], sizes: dict[str, int]) -> list[Chunk]:
    """Cut every group into chunks of ``sizes[group.key]`` variants."""
    chunks = []
    for group in groups:
        size = sizes[group.key]
        for index, start in enumerate(range(0, len(group.variants), size)):
            chunks.append(Chunk(group, index, start, min(start + size, len(group.variants)), size))
    return chunks


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; ValueError otherwise."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def shard_chunks(chunks: list[Chunk], shard: int, n_shards: int) -> list[Chunk]:
    """The chunks of job ``shard`` of ``n_shards``: greedy balancing of estimated cost, deterministic."""
    if n_shards == 1:
        return chunks
    load = [(0.0, s) for s in range(n_shards)]
    mine = []
    order = sorted(range(len(chunks)), key=lambda k: (-chunks[k].cost, k))
    for k in order:
        total, s = heapq.heappop(load)
        if s == shard:
            mine.append(k)
        heapq.heappush(load, (total + chunks[k].cost, s))
    return [chunks[k] for k in sorted(mine)]


def shard_cap(n_variants: int, n_shards: int, devices: int) -> int:
    """Largest chunk size that still leaves about four chunks per shard to balance."""
    per = -(-n_variants // (4 * n_shards))
    return max(devices, -(-per // devices) * devices)
