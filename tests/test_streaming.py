"""Streaming synthesis: the concatenated stream equals offline synthesis of the whole mel, every
sample goes through the flows once, and ``synthesize --stream`` pipes .npy arrays to PCM."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf
import torch
from test_student import randomize
from test_vocoder import ARGS, CFG

from pwavenet import cli
from pwavenet.config import AudioConfig
from pwavenet.features import pitch_rows
from pwavenet.models import streaming
from pwavenet.models.block import ResidualBlock
from pwavenet.models.export import save_export
from pwavenet.models.streaming import StudentStream
from pwavenet.models.student import Student
from pwavenet.models.teacher import WaveNet
from pwavenet.pipe import pcm16

HOP = 4
FRAMES = 23
# Dilations 1, 2, 4 and 1, 2, 4, 8: a layer reaches back up to 16 steps, four one-frame chunks.
TINY = {
    "n_mels": 4,
    "flow_layers": [3, 4],
    "layers_per_cycle": 4,
    "residual_channels": 6,
    "gate_channels": 8,
    "upsample_scales": [2, 2],
    "log_scale_init": -1.0,
}
PITCHED = {"pitch": True, "excitation": "sine", "sample_rate": 8000, "speakers": 3}


def tiny(**kw) -> Student:
    return randomize(Student(**{**TINY, **kw})).eval()


def mel_of(model: Student, batch: int = 1, frames: int = FRAMES, seed: int = 1) -> torch.Tensor:
    """Random mel rows ``(batch, rows, frames)``; a pitch-informed model's F0 rows glide from
    unvoiced through 90-400 Hz."""
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, model.n_mels, frames, generator=g)
    if model.upsampler.channels == model.n_mels:
        return mel
    f0 = np.where(np.arange(frames) % 9 < 2, 0.0, np.linspace(90, 400, frames))
    rows = torch.from_numpy(pitch_rows(f0)).float()
    return torch.cat([mel, rows.expand(batch, -1, -1)], dim=1)


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def stream(model: Student, mel: torch.Tensor, chunk: int, **kw) -> tuple[torch.Tensor, list]:
    """The concatenated stream of ``mel (B, M, F)`` pushed ``chunk`` frames at a time (unbatched
    pushes for B = 1), and the lengths of the pieces."""
    s = StudentStream(model, batch=mel.shape[0], **kw)
    one = mel.shape[0] == 1
    pieces = [s.push(mel[0 if one else slice(None), ..., i : i + chunk]) for i in
              range(0, mel.shape[-1], chunk)]  # fmt: skip
    pieces.append(s.flush())
    return torch.cat(pieces, dim=-1), [p.shape[-1] for p in pieces]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 40])  # 40: more than the whole utterance
def test_the_stream_equals_offline_synthesis_of_the_whole_mel(chunk):
    model = tiny()
    mel = mel_of(model)
    want = model.synthesize(mel, generator=gens(3)[0])[0]
    got, sizes = stream(model, mel, chunk, generator=gens(3)[0])
    assert float(want.abs().mean()) > 0.05  # the flows do something
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    lookahead = model.upsampler.edge_frames
    first = [max(0, min(FRAMES, k * chunk) - lookahead) * HOP for k in range(1, len(sizes))]
    assert np.cumsum(sizes[:-1]).tolist() == first  # each push releases every final frame


@pytest.mark.parametrize("chunk", [1, 5])
def test_pitch_sine_speakers_temperature_and_preemphasis_stream_too(chunk):
    model = tiny(**PITCHED)
    model.audio = AudioConfig(preemphasis=0.9)
    mel = mel_of(model)
    ids = torch.tensor([2])
    options = {"speaker": ids, "temperature": 0.6}
    want = model.synthesize(mel, generator=gens(4)[0], **options)[0]
    got, _ = stream(model, mel, chunk, generator=gens(4)[0], **options)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    other, _ = stream(model, mel, chunk, generator=gens(4)[0], speaker=torch.tensor([0]))
    assert float((other - got).abs().max()) > 1e-3  # the speaker and temperature count


@pytest.mark.parametrize("rows", [1, 6, 13])
@pytest.mark.parametrize("chunk", [1, 3, 40])
def test_buffers_that_fill_up_move_their_history_and_grow(rows, chunk, monkeypatch):
    monkeypatch.setattr(streaming, "STREAM_ROWS", rows)  # pieces of 1 frame, full buffers
    model = tiny()
    mel = mel_of(model, batch=2)
    want = model.synthesize(mel, generator=gens(5, 6))
    got, _ = stream(model, mel, chunk, generator=gens(5, 6))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_a_batch_of_streams_equals_each_stream_alone():
    model = tiny(**PITCHED)
    mel = mel_of(model, batch=3)
    ids = torch.tensor([0, 1, 2])
    together, _ = stream(model, mel, 4, generator=gens(7, 8, 9), speaker=ids)
    for b, seed in enumerate((7, 8, 9)):
        alone, _ = stream(model, mel[b : b + 1], 3, generator=gens(seed), speaker=ids[b : b + 1])
        torch.testing.assert_close(together[b], alone, atol=1e-5, rtol=0)


def test_a_gaussian_student_streams_the_noise_it_is_given():
    model = tiny(base="gaussian")
    mel = mel_of(model, batch=2)
    noise = torch.randn(2, FRAMES * HOP, generator=gens(10)[0])
    want = model.synthesize(mel, noise=noise)
    got, _ = stream(model, mel, 2, noise=noise)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_every_sample_goes_through_every_layer_once(monkeypatch):
    rows = []
    original = ResidualBlock.forward_time_major

    def counting(w, src, dst, cond, pad, batch=1, block_rows=4096):
        rows.append(src.shape[0] - pad * batch)
        return original(w, src, dst, cond, pad, batch, block_rows)

    monkeypatch.setattr(ResidualBlock, "forward_time_major", staticmethod(counting))
    model = tiny()
    stream(model, mel_of(model, batch=2), 1, generator=gens(1, 2))
    layers = sum(len(f.blocks) for f in model.flows)
    assert sum(rows) == layers * 2 * FRAMES * HOP  # no lookback recomputed


def test_streams_use_the_weights_the_model_has_now():
    model = tiny()
    mel = mel_of(model)
    stream(model, mel, 2, generator=gens(1)[0])  # weights folded for this model once...
    with torch.no_grad():
        model.flows[0].blocks[1].conv.weight.mul_(-1.5)  # ...and changed in place
    want = model.synthesize(mel, generator=gens(1)[0])[0]
    torch.testing.assert_close(stream(model, mel, 2, generator=gens(1)[0])[0], want)


def test_a_bf16_autocast_stream_stays_float32_where_offline_does():
    model = tiny()
    mel = mel_of(model)
    exact = model.synthesize(mel, generator=gens(11)[0])[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = model.synthesize(mel, generator=gens(11)[0])[0]
        got, _ = stream(model, mel, 3, generator=gens(11)[0])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=2e-2, rtol=0)
    snr = 10 * torch.log10(exact.pow(2).sum() / (exact - got).pow(2).sum())
    assert 15 < float(snr) < 200  # bf16 arithmetic ran, and stayed close


def test_misuse_is_a_clear_error():
    model = tiny()
    s = StudentStream(model, generator=gens(1)[0])
    with pytest.raises(ValueError, match=r"mel frames must be \(4, frames\)"):
        s.push(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="finite"):
        s.push(torch.full((4, 3), float("nan")))
    s.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        s.push(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="one generator per stream"):
        StudentStream(model, batch=2, generator=gens(1)[0])
    with pytest.raises(ValueError, match="needs speaker ids"):
        StudentStream(tiny(**PITCHED))
    short = StudentStream(model, noise=torch.zeros(1, 10))
    with pytest.raises(ValueError, match="the given noise has 10 samples"):
        short.push(torch.zeros(4, 6))


# ------------------------------------------------------------------ the command line


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Tiny student and teacher exports (hop 16) with random weights."""
    root = tmp_path_factory.mktemp("stream_exports")
    out = {}
    for kind, cls in (("student", Student), ("teacher", WaveNet)):
        model = randomize(cls(**ARGS[kind]), seed=2)
        out[kind] = save_export(model, root / kind, kind=kind, model_args=ARGS[kind], cfg=CFG)
    return out


def npy_stream(*arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    for a in arrays:
        np.save(buf, a)
    return buf.getvalue()


def cli_mel(frames: int = 19) -> np.ndarray:
    """A mel in the range of a natural-log magnitude one (no range warning)."""
    return np.random.default_rng(3).normal(-6.0, 1.0, (4, frames)).clip(-11, -2).astype(np.float32)


def offline_wav(exports, tmp_path, mel: np.ndarray, name: str, dtype: str) -> np.ndarray:
    np.save(tmp_path / f"{name}.npy", mel)
    args = [str(tmp_path / f"{name}.npy"), "--out", str(tmp_path / "offline"), "--seed", "4"]
    args += ["--dtype", dtype]
    assert cli.main(["synthesize", str(exports["student"]), *args]) == 0
    return sf.read(tmp_path / "offline" / f"{name}.wav", dtype="int16")[0]


@pytest.mark.parametrize(("chunk", "dtype"), [(0, "float32"), (1, "float32"), (4, "bfloat16")])
def test_a_file_of_arrays_streams_to_the_wav_of_offline_synthesis(exports, tmp_path, chunk, dtype):
    mel = cli_mel()
    want = offline_wav(exports, tmp_path, mel, "utt", dtype)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "utt.npy").write_bytes(npy_stream(mel[:, :5], mel[:, 5:6], mel[:, 6:]))
    out = tmp_path / "utt.wav"
    args = [str(tmp_path / "in" / "utt.npy"), "--stream", "--out", str(out), "--seed", "4"]
    args += ["--chunk-frames", str(chunk), "--dtype", dtype]
    assert cli.main(["synthesize", str(exports["student"]), *args]) == 0
    got, rate = sf.read(out, dtype="int16")
    assert rate == CFG.audio.sample_rate and got.shape == want.shape == (19 * 16,)
    assert np.abs(got.astype(int) - want).max() <= 1  # float rounding may flip one step


def test_stdin_to_stdout_is_raw_pcm_of_the_same_audio_as_the_frames_arrive(exports, tmp_path):
    mel = cli_mel(12)
    want = offline_wav(exports, tmp_path, mel, "stdin", "float32")  # the noise of 'stdin'
    command = [sys.executable, "-m", "pwavenet", "synthesize", str(exports["student"]), "-"]
    command += ["--stream", "--out", "-", "--seed", "4", "--dtype", "float32"]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdin.write(npy_stream(mel[:, :7]))
    proc.stdin.flush()  # the input stays open: the first 5 frames' audio must come out now
    early = []
    reader = threading.Thread(target=lambda: early.append(proc.stdout.read((7 - 2) * 16 * 2)))
    reader.start()
    reader.join(timeout=100)
    assert early and len(early[0]) == 5 * 16 * 2, "no audio before the input ended"
    rest, err = proc.communicate(npy_stream(mel[:, 7:]), timeout=100)
    assert proc.returncode == 0, err.decode()
    got = np.frombuffer(early[0] + rest, "<i2")
    assert got.shape == want.shape and np.abs(got.astype(int) - want).max() <= 1
    assert b"real-time factor" in err  # the summary never mixes into the audio
    audio = np.linspace(-1.2, 1.2, 1001, dtype=np.float32)
    sf.write(tmp_path / "ref.wav", audio, 8000, subtype="PCM_16")
    ref = sf.read(tmp_path / "ref.wav", dtype="int16")[0]
    assert np.frombuffer(pcm16(audio), "<i2").tolist() == ref.tolist()  # raw == WAV samples


BAD = {
    "rows": (npy_stream(np.zeros((5, 3), np.float32)), "array 0: mel must be (4, frames)"),
    "nan": (npy_stream(cli_mel(3), np.full((4, 2), np.nan, np.float32)), "array 1: mel contains"),
    "pickled": (npy_stream(np.array([{"a": 1}], dtype=object)), "object (pickled) array"),
    "ints": (npy_stream(np.zeros((4, 3), np.int16)), "must be a floating point array"),
    "garbage": (b"RIFF0000WAVEfmt ", "array 0: not a .npy array"),
    "truncated": (npy_stream(cli_mel(8))[:-5], "array 0: truncated array"),
    "empty": (b"", "no .npy arrays in the input"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_one_line_error_and_writes_nothing(exports, tmp_path, case, capsys):
    data, message = BAD[case]
    (tmp_path / "bad.npy").write_bytes(data)
    out = tmp_path / "bad.wav"
    args = [str(exports["student"]), str(tmp_path / "bad.npy"), "--stream", "--out", str(out)]
    assert cli.main(["synthesize", *args]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwavenet: error: bad: ") and message in lines[0]
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.npy"]


def test_a_teacher_export_does_not_stream(exports, tmp_path, capsys):
    (tmp_path / "m.npy").write_bytes(npy_stream(cli_mel(3)))
    args = [str(exports["teacher"]), str(tmp_path / "m.npy"), "--stream", "--out", "-"]
    assert cli.main(["synthesize", *args]) == 1
    assert "is a teacher export, not a student" in capsys.readouterr().err
