"""Clip datasets for training: T-frame prediction clips or single frames, uint8 (N, H, W, C) tensors."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Optional, Protocol, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vadedge.datasets import Split, Video
from vadedge.errors import DataError
from vadedge.preprocess import InputSpec, prepare_frame

CACHE_LIMIT_BYTES = 4 << 30  # preload datasets up to 4 GiB of preprocessed frames


class ClipDataset(Dataset):
    """Every window of `clip_length` consecutive frames of every video, as uint8 (N, H, W, C).

    Frames are preprocessed once (resize + colour) and kept in memory when the split fits in
    CACHE_LIMIT_BYTES; otherwise each item is read from disk (frame folders only), which is what
    multi-worker loading is for.
    """

    def __init__(
        self, split: Split, spec: InputSpec, clip_length: int, cache: Optional[bool] = None, stride: int = 1
    ) -> None:
        self.spec = spec
        self.clip_length = clip_length
        self.videos: list[Video] = list(split.videos)
        frame_bytes = spec.height * spec.width * spec.channels
        if cache is None:
            cache = split.num_frames * frame_bytes <= CACHE_LIMIT_BYTES or any(v.is_file for v in self.videos)
        self.cache: Optional[list[np.ndarray]] = [v.load(spec) for v in self.videos] if cache else None
        self.index: list[tuple[int, int]] = []  # (video, first frame)
        for vi, video in enumerate(self.videos):
            n = len(self.cache[vi]) if self.cache is not None else video.num_frames
            self.index.extend((vi, s) for s in range(0, n - clip_length + 1, stride))
        if not self.index:
            raise DataError(f"no video in {split.root}/{split.name} has the {clip_length} frames a clip needs")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        vi, start = self.index[i]
        if self.cache is not None:
            clip = self.cache[vi][start : start + self.clip_length]
        else:
            video = self.videos[vi]
            clip = np.stack(
                [prepare_frame(video.read_frame(t), self.spec) for t in range(start, start + self.clip_length)]
            )
        return torch.from_numpy(np.ascontiguousarray(clip))


class LoadableDataset(Protocol):
    """What `make_loader` needs: a sized map-style torch Dataset whose `cache` says if it is in memory."""

    @property
    def cache(self) -> Optional[list[np.ndarray]]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...


def make_loader(
    dataset: LoadableDataset, batch_size: int, *, shuffle: bool, seed: int, workers: Optional[int] = None
) -> DataLoader:
    """A seeded DataLoader; in-memory datasets load in-process, disk-backed ones with 2 workers."""
    if workers is None:
        workers = 0 if dataset.cache is not None else 2
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        cast(Dataset, dataset),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle and len(dataset) >= batch_size,
        num_workers=workers,
        generator=gen,
        persistent_workers=workers > 0,
    )


def fingerprint(split: Split) -> str:
    """A short hash of the split's file names and sizes (training-data provenance)."""
    h = hashlib.sha1()
    for video in split.videos:
        files: Sequence = video.frame_files if video.frame_files is not None else [video.source]
        for f in files:
            h.update(f"{video.name}/{f.name}:{f.stat().st_size};".encode())
    return h.hexdigest()[:16]
