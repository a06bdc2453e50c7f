"""The training data: fixed-length segments of a feature cache, their sampler and collate.

Segments follow the cache's alignment contract (see :mod:`pwavenet.data.cache`): a segment of
``S`` samples starting at mel frame ``f`` is ``audio[f * hop : f * hop + S]`` with
``mel[:, f : f + S // hop]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from ..audio import pad_mels, preemphasize, silence_log_mel
from ..errors import DataError
from .cache import FeatureCache

__all__ = ["Collate", "EpochSampler", "SegmentDataset"]


class SegmentDataset(Dataset):
    """Random fixed-length segments with their exactly aligned mel frames.

    Each item is ``{"audio": (1, S), "mel": (n_mels, S // hop), "length": int, "id": str}``,
    the audio pre-emphasised when the cache's ``audio.preemphasis`` is set (what the models learn),
    plus ``"speaker": int`` (the id in the cache's speaker table) when the corpus has speakers.
    Utterances shorter than ``S`` are padded at the end (zeros for audio, the log-mel of
    silence for mel) and ``length`` counts the real samples. ``segment_length=None`` yields
    whole utterances. ``repeat`` lists every utterance that many times per epoch.
    Offsets are drawn from torch's global RNG (seeded per worker and per process by accelerate).
    """

    def __init__(
        self,
        cache: FeatureCache,
        split: str = "train",
        *,
        segment_length: int | None = 7680,
        repeat: int = 1,
    ) -> None:
        self.cache = cache
        self.rows = cache.entries(split)
        if not self.rows:
            raise DataError(f"{cache.root}: the '{split}' split is empty")
        self.hop = cache.audio.hop_length
        if segment_length is not None and segment_length % self.hop:
            raise ValueError(f"segment_length {segment_length} is not a multiple of {self.hop}")
        self.segment_length = segment_length
        self.repeat = repeat
        self.silence = silence_log_mel(cache.audio.log_floor)
        self.speakers = cache.speakers
        self.preemphasis = cache.audio.preemphasis  # applied to the whole utterance, then cut

    def __len__(self) -> int:
        return len(self.rows) * self.repeat

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """``index`` or ``(index, frame_offset)`` as yielded by :class:`EpochSampler`."""
        if isinstance(index, tuple):
            return self.segment(*index)
        return self.segment(index, self.draw_offset(index))

    def draw_offset(self, index: int, generator: torch.Generator | None = None) -> int:
        """A uniformly random valid start frame for utterance ``index``."""
        if self.segment_length is None:
            return 0
        row = self.rows[index % len(self.rows)]
        high = max(row["frames"] - self.segment_length // self.hop, 0)
        return int(torch.randint(0, high + 1, (), generator=generator).item())

    def segment(self, index: int, frame_offset: int) -> dict[str, Any]:
        """The segment of utterance ``index`` that starts at mel frame ``frame_offset``."""
        row = self.rows[index % len(self.rows)]
        audio, mel = self.cache.load(row)
        audio = preemphasize(audio, self.preemphasis)
        if self.segment_length is None:
            return self._item(row, audio, mel, audio.shape[0])
        frames = self.segment_length // self.hop
        if not 0 <= frame_offset <= max(row["frames"] - frames, 0):
            raise IndexError(f"frame offset {frame_offset} out of range for {row['id']}")
        start = frame_offset * self.hop
        audio = audio[start : start + self.segment_length]
        mel = mel[:, frame_offset : frame_offset + frames]
        length = audio.shape[0]
        if length < self.segment_length:
            audio = torch.nn.functional.pad(audio, (0, self.segment_length - length))
            mel = torch.nn.functional.pad(mel, (0, frames - mel.shape[1]), value=self.silence)
        return self._item(row, audio, mel, length)

    def _item(
        self, row: dict[str, Any], audio: torch.Tensor, mel: torch.Tensor, length: int
    ) -> dict[str, Any]:
        item = {"audio": audio[None], "mel": mel, "length": length, "id": row["id"]}
        if self.speakers:
            item["speaker"] = self.speakers[row["speaker"]]
        return item


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled ``(index, frame_offset)`` pairs that are a pure function of (seed, epoch).

    Every process of a distributed run draws the same sequence (accelerate then shards the
    batches), and a resumed run reproduces the data order exactly by skipping consumed batches.
    """

    def __init__(self, dataset: SegmentDataset, seed: int = 0, shuffle: bool = True) -> None:
        self.dataset, self.seed, self.shuffle, self.epoch = dataset, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.dataset)
        order = torch.randperm(n, generator=g).tolist() if self.shuffle else range(n)
        for i in order:
            yield i, self.dataset.draw_offset(i, g)


@dataclass(frozen=True)
class Collate:
    """Batch items of possibly different lengths: pad audio with zeros and mel with silence.

    Returns ``{"audio": (B, 1, T), "mel": (B, n_mels, T // hop), "lengths": (B,), "ids": list}``,
    plus ``"speaker": (B,)`` long ids when the items carry speakers.
    """

    hop_length: int
    mel_pad_value: float

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        mel = pad_mels([it["mel"] for it in items], self.mel_pad_value)
        audio = torch.zeros(len(items), 1, mel.shape[-1] * self.hop_length)
        for i, it in enumerate(items):
            audio[i, :, : it["audio"].shape[-1]] = it["audio"]
        lengths = torch.tensor([it["length"] for it in items], dtype=torch.long)
        batch = {"audio": audio, "mel": mel, "lengths": lengths, "ids": [it["id"] for it in items]}
        if "speaker" in items[0]:
            batch["speaker"] = torch.tensor([it["speaker"] for it in items], dtype=torch.long)
        return batch
