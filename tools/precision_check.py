#!/usr/bin/env python
"""Check the student's bf16 path on a trained export and real references: for every reference
WAV, synthesize its mel with the same noise in float32 and in bfloat16 and print a Markdown
table of the SNR of the bf16 output against the float32 one, the MR-STFT distance of each to
the reference, its relative change, and the speed of each path.

The documented tolerance (docs/serving.md): SNR at least 30 dB, MR-STFT change under 1 %.

Example: ``python tools/precision_check.py RUN/student/export EVAL/references/*.wav``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pwavenet.audio import read_audio
from pwavenet.eval.metrics import mrstft_distance
from pwavenet.models.export import load_vocoder
from pwavenet.models.precision import bf16_units
from pwavenet.synthesis import load_inputs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import device_name, markdown, snr_db


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def rows(export: Path, references: list[Path], threads: int) -> list[dict[str, object]]:
    """One row per reference and a last row of means."""
    torch.set_num_threads(threads)
    model = load_vocoder(export, "cpu", kind="student")
    rate, out = model.audio.sample_rate, []
    utterances = load_inputs(references, model.audio, resample=True)
    for dtype in (torch.float32, torch.bfloat16):  # warm-up: the first call of each path
        model.synthesize(utterances[0].mel[None, :, :8], dtype=dtype)
    for utt in utterances:
        mel = utt.mel[None]
        noise = model.noise([mel.shape[-1] * model.hop_length], torch.Generator().manual_seed(0))
        full, t32 = timed(lambda m=mel, z=noise: model.synthesize(m, noise=z))
        half, t16 = timed(lambda m=mel, z=noise: model.synthesize(m, noise=z, dtype=torch.bfloat16))
        ref = torch.from_numpy(read_audio(utt.source, rate)[0])
        n = min(ref.numel(), full.shape[-1])
        d32, d16 = (mrstft_distance(x[0, :n], ref[:n]) for x in (full, half))
        seconds = full.shape[-1] / rate
        out.append(
            {
                "utterance": utt.id,
                "seconds": seconds,
                "SNR bf16 vs float32 (dB)": snr_db(full, half),
                "MR-STFT float32": d32,
                "MR-STFT bf16": d16,
                "change (%)": 100 * (d16 - d32) / d32,
                "RTF float32": t32 / seconds,
                "RTF bf16": t16 / seconds,
            }
        )
    keys = [k for k in out[0] if k != "utterance"]
    out.append({"utterance": "mean", **{k: float(np.mean([r[k] for r in out])) for k in keys}})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path, help="A student export folder.")
    parser.add_argument("references", nargs="+", type=Path, help="Reference WAV files.")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    table = rows(args.export, args.references, args.threads)
    units = bf16_units("cpu") or "none (bf16 emulated)"
    print(f"CPU: {device_name(torch.device('cpu'))}, bf16 units: {units}, {args.threads} threads,")
    print(f"torch {torch.__version__}, export {args.export}\n")
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
