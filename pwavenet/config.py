"""Typed configuration: dataclasses loaded from commented YAML, with dotted overrides.

A config file holds any subset of the sections below; missing keys take the defaults written
here, unknown keys are errors that name the key and the file. Overrides such as
``train.max_steps=200`` are applied after the file. The resolved config is written beside every
output with :func:`save_config` so a run can always be reproduced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .fileio import atomic_path
from .schema import build_dataclass, unknown_key

__all__ = [
    "AudioConfig",
    "Config",
    "DataConfig",
    "DistillConfig",
    "OptimConfig",
    "StudentConfig",
    "TeacherConfig",
    "TrainConfig",
    "apply_overrides",
    "audio_mismatch",
    "config_from_dict",
    "config_to_dict",
    "feature_hash",
    "load_config",
    "save_config",
]


@dataclass
class AudioConfig:
    """Waveform and log-mel settings shared by training, synthesis and evaluation."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0  # None means sample_rate / 2
    log_floor: float = 1e-5  # magnitudes are clamped here before the natural log
    pitch: bool = False  # append log-F0 and voicing rows to the mel (pwavenet.features)
    preemphasis: float = 0.0  # > 0: the models learn x[t] - a x[t-1]; synthesis de-emphasises

    @property
    def feature_channels(self) -> int:
        """Rows of the conditioning features: the mel bands, plus log-F0 and voicing."""
        return self.n_mels + (2 if self.pitch else 0)

    def validate(self, where: str = "audio") -> None:
        if self.sample_rate < 1000:
            raise ConfigError(f"{where}.sample_rate must be at least 1000, got {self.sample_rate}")
        if self.win_length > self.n_fft:
            raise ConfigError(
                f"{where}.win_length ({self.win_length}) exceeds n_fft ({self.n_fft})"
            )
        if self.hop_length <= 0 or self.hop_length > self.n_fft:
            raise ConfigError(f"{where}.hop_length must be in 1..n_fft, got {self.hop_length}")
        if (self.n_fft - self.hop_length) % 2:
            raise ConfigError(
                f"{where}: n_fft - hop_length must be even so that mel frames centre on hop blocks"
            )
        top = self.fmax if self.fmax is not None else self.sample_rate / 2
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            raise ConfigError(
                f"{where}: need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, "
                f"fmax={self.fmax}, sample_rate={self.sample_rate}"
            )
        if self.log_floor <= 0:
            raise ConfigError(f"{where}.log_floor must be positive, got {self.log_floor}")
        if not 0 <= self.preemphasis < 1:
            raise ConfigError(f"{where}.preemphasis must be in [0, 1), got {self.preemphasis}")


@dataclass
class DataConfig:
    """Corpus split, training segments and loader settings."""

    segment_length: int = 7680  # samples per training segment; a multiple of audio.hop_length
    batch_size: int = 8  # segments per step per process
    num_workers: int = 0  # DataLoader worker processes
    valid_utterances: int = 5  # held out for validation (NLL during training)
    test_utterances: int = 5  # held out for evaluation and synthesis (unless test_list is given)
    # A file of utterance ids that are the test set instead (e.g. a paper's or another toolkit's
    # list; corpus.read_test_list); relative to the working directory; "" for a random split.
    test_list: str = ""
    split_seed: int = 1234  # seed of the deterministic train/valid/test split
    silence_threshold: float = 1e-4  # files whose peak is below this are skipped as silent


@dataclass
class TeacherConfig:
    """WaveNet teacher architecture (docs/design.md §2)."""

    layers: int = 24  # gated residual layers in total
    cycles: int = 4  # dilation cycles; dilations double within a cycle (1, 2, 4, ...)
    kernel_size: int = 3
    residual_channels: int = 128
    gate_channels: int = 256
    skip_channels: int = 128
    output: Literal["mol", "gaussian"] = "mol"  # mixture of logistics or single Gaussian
    mixtures: int = 10  # logistic components K (output == "mol")
    log_scale_min: float = -16.0  # floor of the output log-scale; <= -12.5 for 16-bit audio
    upsample_scales: list[int] = field(default_factory=lambda: [4, 4, 16])  # product == hop
    speakers: int = 0  # > 0 enables a global speaker embedding
    speaker_channels: int = 16
    excitation: Literal["none", "sine"] = "none"  # sine: a sine at F0 as input (audio.pitch)
    pitch_lag: bool = False  # input the sample one pitch period back too (audio.pitch)


@dataclass
class StudentConfig:
    """IAF student architecture (docs/design.md §3)."""

    flow_layers: list[int] = field(default_factory=lambda: [10, 10, 10, 30])  # layers per flow
    layers_per_cycle: int = 10  # dilations double for this many layers, then repeat
    kernel_size: int = 3
    residual_channels: int = 64
    gate_channels: int = 128
    base: Literal["logistic", "gaussian"] = "logistic"  # gaussian gives the ClariNet student
    log_scale_min: float = -9.0  # per-flow log-scale clamp (docs/design.md §3)
    log_scale_max: float = 7.0
    upsample_scales: list[int] = field(default_factory=lambda: [4, 4, 16])
    excitation: Literal["none", "sine"] = "none"  # sine: a sine at F0 as input (audio.pitch)


# The terms distill.loss_weights may weigh, in summing order (= pwavenet.train.distill.TERMS).
LOSS_TERMS = ("kl", "power", "loudness", "contrastive")


@dataclass
class DistillConfig:
    """Probability density distillation (docs/design.md §§4, 5)."""

    teacher: str = ""  # path of the teacher export to distill from
    samples: int = 16  # Monte Carlo draws M per step for the cross-entropy
    # weight of each term of LOSS_TERMS; an absent term weighs 0 (kl: 1) and is not computed
    loss_weights: dict[str, float] = field(default_factory=lambda: {"kl": 1.0, "power": 1.0})
    power_loss: Literal["power", "logpower", "magnitude", "mrstft"] = "power"
    # > 0 subtracts gamma * KL(student || teacher on other mel): loss_weights.contrastive's alias
    contrastive_gamma: float = 0.0
    gaussian_regularizer: float = 4.0  # lambda of ClariNet's log-scale regulariser
    init_upsampler: bool = True  # start the student's mel upsampler from the teacher's

    def term_weights(self) -> dict[str, float]:
        """The weight of every term of :data:`LOSS_TERMS`, in order: ``loss_weights``, with
        ``kl`` 1 and the others 0 where absent, and ``contrastive_gamma`` (when positive) as
        the contrastive weight."""
        weights = {t: 1.0 if t == "kl" else 0.0 for t in LOSS_TERMS}
        weights.update(self.loss_weights)
        if self.contrastive_gamma > 0:
            weights["contrastive"] = self.contrastive_gamma
        return weights


@dataclass
class OptimConfig:
    """Adam with warm-up, a decay schedule, clipping and Polyak (EMA) averaging."""

    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    warmup_steps: int = 200
    schedule: Literal["constant", "cosine", "exponential"] = "cosine"
    min_lr_ratio: float = 0.05  # final lr as a fraction of lr for the decaying schedules
    ema_decay: float = 0.999  # Polyak averaging of weights; 0 disables it


@dataclass
class TrainConfig:
    """Loop length, precision, logging and checkpoint cadence."""

    max_steps: int = 10000
    grad_accum: int = 1
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    seed: int = 0
    log_every: int = 20
    valid_every: int = 500
    save_every: int = 1000
    keep_checkpoints: int = 3
    max_nonfinite: int = 10  # stop after this many consecutive non-finite losses
    # Seconds a process waits in a collective (a gradient all-reduce, a barrier) for the others
    # before the run stops with an error: a process that died or hangs never hangs the rest.
    collective_timeout: float = 600.0
    monitor_seconds: float = 1.0  # pitch monitor: seconds of a held-out snippet (0: off)
    monitor_budget: float = 0.1  # the monitor's time at most this share of the training time

    def validate(self, where: str = "train") -> None:
        if self.collective_timeout <= 0:
            raise ConfigError(
                f"{where}.collective_timeout ({self.collective_timeout}) must be > 0 seconds"
            )
        if self.monitor_seconds < 0 or self.monitor_budget <= 0:
            raise ConfigError(
                f"{where}.monitor_seconds ({self.monitor_seconds}) must be >= 0 and "
                f"{where}.monitor_budget ({self.monitor_budget}) > 0"
            )


@dataclass
class Config:
    """The whole configuration of a pwavenet run."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, where: str = "config") -> None:
        self.audio.validate(f"{where}: audio")
        self.train.validate(f"{where}: train")
        if self.data.segment_length % self.audio.hop_length:
            raise ConfigError(
                f"{where}: data.segment_length ({self.data.segment_length}) must be a multiple "
                f"of audio.hop_length ({self.audio.hop_length})"
            )
        if self.teacher.speakers < 0:
            raise ConfigError(
                f"{where}: teacher.speakers ({self.teacher.speakers}) must be 0 (no speaker "
                f"embedding) or the number of speaker embeddings"
            )
        unknown = sorted(set(self.distill.loss_weights) - set(LOSS_TERMS))
        if unknown:
            raise ConfigError(
                f"{where}: distill.loss_weights has unknown term '{unknown[0]}' "
                f"(terms: {', '.join(LOSS_TERMS)})"
            )
        if "contrastive" in self.distill.loss_weights and self.distill.contrastive_gamma > 0:
            raise ConfigError(
                f"{where}: distill.contrastive_gamma is an alias of "
                "distill.loss_weights.contrastive: give one of them"
            )
        per_cycle = self.student.layers_per_cycle
        for flow in self.student.flow_layers:
            if flow < 1 or per_cycle < 1 or flow % min(per_cycle, flow):
                raise ConfigError(
                    f"{where}: each of student.flow_layers {self.student.flow_layers} must be "
                    f"positive and a multiple of student.layers_per_cycle ({per_cycle}) or less"
                )
        if self.teacher.pitch_lag and not self.audio.pitch:
            raise ConfigError(
                f"{where}: teacher.pitch_lag needs F0 in the features: set audio.pitch to true"
            )
        for name in ("teacher", "student"):
            if getattr(self, name).excitation != "none" and not self.audio.pitch:
                raise ConfigError(
                    f"{where}: {name}.excitation {getattr(self, name).excitation!r} needs F0 in "
                    "the features: set audio.pitch to true"
                )
            scales = getattr(self, name).upsample_scales
            if math.prod(scales) != self.audio.hop_length:
                raise ConfigError(
                    f"{where}: {name}.upsample_scales {scales} multiply to {math.prod(scales)}, "
                    f"not audio.hop_length {self.audio.hop_length}"
                )


def config_from_dict(data: dict[str, Any], where: str = "config") -> Config:
    """Build a :class:`Config` from a nested mapping; unknown keys raise :class:`ConfigError`."""
    cfg = build_dataclass(Config, data or {}, "", where)
    cfg.validate(where)
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain-dict form of a config dataclass (YAML/JSON friendly)."""
    return dataclasses.asdict(cfg)


def _set_dotted(data: dict[str, Any], key: str, value: Any, where: str) -> None:
    parts = key.split(".")
    cls: Any = Config
    node = data
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            raise unknown_key(".".join(parts[: i + 1]), names, where)
        tp = typing.get_type_hints(cls)[part]
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(tp):
                raise ConfigError(f"{where}: {key} is a section; override one of its keys")
            node[part] = value
            return
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"{where}: {'.'.join(parts[: i + 1])} is not a section")
        node = node.setdefault(part, {})
        if node is None:
            node = data[part] = {}
        cls = tp


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings to a nested mapping (values parsed as YAML)."""
    out = json.loads(json.dumps(data or {}))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(out, key.strip(), value, f"override '{item}'")
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of sections")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a config file (or the defaults when ``path`` is None) and apply dotted overrides."""
    data = read_yaml(path) if path is not None else {}
    where = str(path) if path is not None else "config"
    # Check the file on its own first so that its typos are reported against the file.
    config_from_dict(data, where)
    if overrides:
        data = apply_overrides(data, overrides)
    return config_from_dict(data, where if not overrides else f"{where} with overrides")


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically (temporary name, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)
        tmp.write_text(text, encoding="utf-8")
    return path


def audio_mismatch(a: AudioConfig, b: AudioConfig) -> str | None:
    """The feature settings where ``a`` and ``b`` differ, as ``"key a_value vs b_value"``
    joined by ``"; "`` (e.g. ``"n_mels 20 vs 24"``); None when they agree. Every stage that
    checks that audio, features and models belong together compares through this."""
    theirs = dataclasses.asdict(b)
    diff = [
        f"{key} {value!r} vs {theirs.get(key)!r}"
        for key, value in dataclasses.asdict(a).items()
        if theirs.get(key) != value
    ]
    return "; ".join(diff) or None


def feature_hash(audio: AudioConfig) -> str:
    """A short hash of every setting that changes the features (cache compatibility check)."""
    settings = dataclasses.asdict(audio)
    for key in ("pitch", "preemphasis"):  # caches made before these existed keep their hash
        if not settings[key]:
            del settings[key]
    blob = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
