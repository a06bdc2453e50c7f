"""The feature cache: what :func:`pwavenet.data.preprocess.preprocess_corpus` writes, read back.

Layout of a feature cache (``pwavenet preprocess``)::

    <dump>/manifest.json          settings, feature hash, split, lengths, speakers, skipped files
    <dump>/config.yaml            the resolved config the cache was made with (its audio and
                                  data sections when the Python API was given no whole config)
    <dump>/feats/<id>.safetensors {"audio": (T,), "mel": (n_mels, T // hop)}, T a multiple of hop
    <dump>/lists/<split>.txt      the source audio files of each split, one path per line

The manifest's ``speakers`` is the corpus's ``{name: id}`` table (sorted names numbered from 0;
empty for a speakerless corpus) and each utterance row then names its ``speaker``. Its ``mels``
says where the log-mels came from: ``{"source": "computed"}`` (from the audio), or
``{"source": "files", "dir": ..., "range_checked": ..., "frame_tolerance": ...}`` for a cache
made with ``preprocess --mels DIR`` (:mod:`pwavenet.data.mel_files`), whose rows then name their
``mel_file`` and what aligning it to the audio cut (``mel_aligned``, empty when nothing).

Alignment contract: mel frame ``j`` belongs to audio samples ``[j * hop, (j + 1) * hop)``. A
training segment of ``S`` samples (``S`` a multiple of ``hop``) starting at frame ``f`` is
``audio[f * hop : f * hop + S]`` with ``mel[:, f : f + S // hop]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..config import AudioConfig, audio_mismatch, feature_hash
from ..errors import DataError
from ..fileio import read_json
from .corpus import SPLITS

__all__ = ["MANIFEST", "MANIFEST_FORMAT", "FeatureCache"]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "pwavenet-features/1"


class FeatureCache:
    """Read access to a feature cache; refuses one made with other feature settings."""

    def __init__(self, root: str | Path, audio_cfg: AudioConfig | None = None) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise DataError(f"{path}: no feature cache here (run `pwavenet preprocess` first)")
        manifest = read_json(path, MANIFEST_FORMAT, DataError, "feature manifest")
        self.manifest = manifest
        self.audio = AudioConfig(**manifest["audio"])
        if audio_cfg is not None and manifest["feature_hash"] != feature_hash(audio_cfg):
            diff = audio_mismatch(self.audio, audio_cfg)
            raise DataError(
                f"{path}: features were made with other settings ({diff} in the config); "
                "re-run `pwavenet preprocess` with this config"
            )

    @property
    def speakers(self) -> dict[str, int]:
        """The corpus's ``{speaker name: id}`` table; empty for a speakerless corpus (and for
        caches made before speakers were recorded)."""
        return dict(self.manifest.get("speakers", {}))

    @property
    def mel_source(self) -> dict[str, Any]:
        """Where the cache's log-mels came from (the manifest's ``mels``):
        ``{"source": "computed"}`` (also for caches made before this was recorded), or
        ``{"source": "files", "dir": ...}`` for mels given with ``preprocess --mels``."""
        return dict(self.manifest.get("mels") or {"source": "computed"})

    def check_speakers(self, slots: int) -> None:
        """Refuse a model with ``slots`` speaker embeddings (``teacher.speakers``) that this
        corpus cannot train: slots but no speaker labels, or fewer slots than speakers.
        ``slots == 0`` (no speaker conditioning) suits every corpus."""
        count = len(self.speakers)
        if slots > 0 and count == 0:
            raise DataError(
                f"{self.root}: teacher.speakers is {slots} but the corpus has no speaker labels "
                f"(give metadata.csv a 4th 'speaker' field or one subfolder per speaker, and "
                f"re-run `pwavenet preprocess`)"
            )
        if 0 < slots < count:
            raise DataError(
                f"{self.root}: the corpus has {count} speakers but teacher.speakers is {slots} "
                f"(set teacher.speakers to at least {count})"
            )

    def entries(self, split: str | None = None) -> list[dict[str, Any]]:
        """Manifest rows, optionally of one split (``train``, ``valid`` or ``test``)."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return [u for u in self.manifest["utterances"] if split is None or u["split"] == split]

    def load(self, row: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(audio (T,), mel (n_mels, T // hop))`` of one manifest row."""
        path = self.root / row["file"]
        try:
            tensors = load_file(str(path))
        except (OSError, SafetensorError) as exc:
            raise DataError(f"{path}: unreadable feature file ({exc})") from None
        return tensors["audio"], tensors["mel"]
