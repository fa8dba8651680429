"""Splits kept on the device (a run's training and validation splits): batches gathered there, not collated on the host.

Small models on a GPU are host-bound: the GPU finishes a step in well under a millisecond, so the host's
per-step work (collating a batch from the dataset, converting its pixels, pinning and copying it) sets
the pace. When a split's model inputs fit in a memory budget, :func:`build_resident` collates the whole
split once (text, targets, and every image it uses through the model's transform), moves the tensors to
the device, and :meth:`ResidentSplit.batch` then gathers a batch with a handful of device operations.

The batches are the ones the task's ``collate`` makes, value for value: the rows come from that very
``collate`` (over the whole split, so every tensor is per example) and the token tensors are cut to the
longest text of each batch, as ``collate`` cuts them. The shuffled order comes from the same torch
DataLoader, over indices instead of batches, so the order and the data random state are those of the
collating loader too (``tests/test_resident.py`` checks both).
"""

from __future__ import annotations

import contextlib
import math
from contextvars import ContextVar
from typing import Any, Iterator, Optional, Sequence

import torch

from vlbench.data.pipeline import TEXT_KEYS, image_inputs

__all__ = ["ResidentSplit", "DeviceSplits", "build_resident", "device_split", "index_batch", "resident_budget",
           "DEFAULT_BUDGET"]

# what a resident split may hold at most, and at most this fraction of a GPU's free memory
DEFAULT_BUDGET = 2 * 1024**3
GPU_FREE_FRACTION = 0.25
_PROBE = 64  # examples collated to estimate the split's size before building it
_IMAGE_CHUNK = 256  # images transformed at once while building


def resident_budget(device: torch.device, limit: int = DEFAULT_BUDGET) -> int:
    """Bytes a resident split may take on ``device``: ``limit``, and on CUDA at most a quarter of the free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(min(limit, free * GPU_FREE_FRACTION))
    return int(limit)


def index_batch(indices: list[int]) -> torch.Tensor:
    """The ``collate_fn`` of an index loader: a batch's split positions as one tensor (for :meth:`ResidentSplit.batch`)."""
    return torch.as_tensor(indices, dtype=torch.long)


def _nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _memory_order(tensor: torch.Tensor) -> list[int]:
    """Dimensions from the outermost in memory to the innermost (e.g. [0, 2, 3, 1] for channels-last pixels)."""
    return sorted(range(tensor.dim()), key=lambda d: (-tensor.stride(d), d))


class ResidentSplit:
    """One split's model inputs on a device; ``batch(index)`` equals ``collate(split, index)`` moved there."""

    def __init__(self, rows: dict[str, torch.Tensor], lengths: torch.Tensor, device: torch.device,
                 image_rows: Optional[torch.Tensor] = None, images: Optional[dict[str, torch.Tensor]] = None) -> None:
        self.device = device
        self.rows = {k: v.to(device) for k, v in rows.items()}
        self.text_keys = tuple(k for k in TEXT_KEYS if k in rows)
        self.lengths = lengths.cpu()  # token counts on the host: cutting a batch needs no device sync
        self.image_rows = image_rows.to(device) if image_rows is not None else None
        # stored in the memory order collate gives them and handed out as the same strided view: a kernel
        # (a convolution, say) may pick another algorithm, and round otherwise, for another layout
        self.images, self._unpermute = {}, {}
        for key, values in (images or {}).items():
            order = _memory_order(values)
            self.images[key] = values.permute(order).contiguous().to(device)
            self._unpermute[key] = [order.index(d) for d in range(values.dim())]
        self.nbytes = _nbytes(self.rows) + _nbytes(self.images)
        self._pin = device.type == "cuda"

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch of examples ``index`` (a host tensor of split positions), on the device."""
        width = 1
        if self.text_keys:
            width = max(int(self.lengths.index_select(0, index).max()) if index.numel() else 1, 1)
        # from page-locked memory the copy does not wait for the steps already queued on the GPU
        at = (index.pin_memory() if self._pin else index).to(self.device, non_blocking=True)
        out = {}
        for key, values in self.rows.items():
            picked = values.index_select(0, at)
            out[key] = picked[:, :width] if key in self.text_keys else picked
        if self.image_rows is not None:
            which = self.image_rows.index_select(0, at)
            for key, values in self.images.items():
                out[key] = values.index_select(0, which).permute(self._unpermute[key])
        return out


def build_resident(task: Any, split: str, modalities: tuple[str, ...], device: torch.device, budget: int,
                   image_ids: Optional[Sequence[int]] = None) -> Optional[ResidentSplit]:
    """``split`` of ``task`` on ``device``, or None when it would take more than ``budget`` bytes.

    ``task.collate(split, indices, modalities)`` must give per-example rows for every tensor (token
    tensors cut to the longest text by ``trim_tokens``, which is redone here per batch), and image inputs only when ``"image"`` is in
    ``modalities``; ``image_ids`` are the examples' image ids, needed when the model reads images. Images
    whose transform output varies in shape or carries a pixel mask (padding per batch) are not supported:
    None, and the caller collates as usual.
    """
    n = task.num_examples(split)
    if n == 0:
        return None
    text_only = tuple(m for m in modalities if m != "image")
    probe = task.collate(split, list(range(min(n, _PROBE))), text_only)
    estimate = math.ceil(_nbytes(probe) / probe["index"].shape[0] * n)
    if estimate > budget:
        return None
    reads_images = "image" in modalities
    used: list[int] = []
    if reads_images:
        if image_ids is None:
            return None
        used = sorted({int(i) for i in image_ids})
        first = image_inputs(task, used[:1])
        if set(first) != {"pixel_values"}:
            return None
        estimate += _nbytes(first) * len(used)
        if estimate > budget:
            return None
    rows = task.collate(split, list(range(n)), text_only)
    for key in TEXT_KEYS:
        # collate cuts its token tensors out of wider rows; rows as wide give batches of the same strides
        if key in rows and rows[key].dim() == 2 and probe[key].stride(0) > rows[key].shape[1]:
            rows[key] = torch.nn.functional.pad(rows[key], (0, probe[key].stride(0) - rows[key].shape[1]))
    lengths = rows["attention_mask"].sum(1) if "attention_mask" in rows else torch.ones(n, dtype=torch.long)
    if not reads_images:
        return ResidentSplit(rows, lengths, device)
    chunks = [image_inputs(task, used[i:i + _IMAGE_CHUNK]) for i in range(0, len(used), _IMAGE_CHUNK)]
    if any(set(c) != {"pixel_values"} or c["pixel_values"].shape[1:] != first["pixel_values"].shape[1:]
           for c in chunks):
        return None
    order = _memory_order(chunks[0]["pixel_values"])
    if order[0] != 0:  # examples not outermost: a gathered batch could not have collate's layout
        return None
    # concatenated in that memory order (torch.cat of channels-last tensors need not keep it)
    pixels = torch.cat([c["pixel_values"].permute(order) for c in chunks]).permute(
        [order.index(d) for d in range(len(order))])
    position = {image: row for row, image in enumerate(used)}
    image_rows = torch.tensor([position[int(i)] for i in image_ids], dtype=torch.long)
    return ResidentSplit(rows, lengths, device, image_rows, {"pixel_values": pixels})


_READING: ContextVar[Optional["DeviceSplits"]] = ContextVar("vlbench_device_splits", default=None)


class DeviceSplits:
    """The splits of one task that one run reads from the device: each built when first asked for, then kept.

    The trainer holds one for the run's training split and its validation split, which is scored after
    every epoch; evaluation passes read from it inside :meth:`reading` (see :func:`device_split`). What
    is built shares one budget, and a split that cannot stay on the device is remembered as such.
    """

    def __init__(self, task: Any, device: torch.device, budget: int) -> None:
        self.task, self.device, self.left = task, device, int(budget)
        self._splits: dict[tuple[str, tuple[str, ...]], Optional[ResidentSplit]] = {}

    def get(self, split: str, modalities: tuple[str, ...]) -> Optional[ResidentSplit]:
        """``split`` read by a model of ``modalities``, on the device; None when it cannot be."""
        key = (split, tuple(modalities))
        if key not in self._splits:
            resident = self.task.resident_split(split, key[1], self.device, max(self.left, 0))
            if resident is not None:
                self.left -= resident.nbytes
            self._splits[key] = resident
        return self._splits[key]

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Inside the block, evaluation passes over this task's splits read them from the device."""
        token = _READING.set(self)
        try:
            yield
        finally:
            _READING.reset(token)

    def clear(self) -> None:
        """Drop every split (the run is over)."""
        self._splits.clear()


def device_split(task: Any, split: str, modalities: tuple[str, ...]) -> Optional[ResidentSplit]:
    """The split on the device, when a :meth:`DeviceSplits.reading` block for ``task`` is open and it fits; else None."""
    splits = _READING.get()
    if splits is None or splits.task is not task:
        return None
    return splits.get(split, modalities)
