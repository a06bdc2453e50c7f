"""The pipe format of ``pwavenet synthesize --stream``: mel arrays in, 16-bit PCM out.

Input: ``.npy`` arrays written one after another to a pipe or a file (what ``np.save(f, a)``
writes, repeatedly, to one file object): each ``(rows, frames)`` floating point, ``rows`` the
model's feature rows (``n_mels``, plus log-F0 and voicing for a pitch-informed model), frames
in time order, a natural-log magnitude mel. The ``.npy`` header carries each array's shape, so
they are read one after another without knowing their number; nothing is ever unpickled (an
object array is refused from its header). Output: 16-bit little-endian mono PCM, raw (to
stdout or a file) or as a WAV file.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from .config import AudioConfig
from .errors import DataError
from .fileio import atomic_path
from .mels import check_mel_rows, mel_range_warning

__all__ = ["audio_sink", "mel_chunks", "pcm16", "read_arrays"]

MAGIC = b"\x93NUMPY"
READERS = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}


def _read_exact(fp: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of the input (a pipe gives what it has)."""
    parts, left = [], size
    while left > 0:
        part = fp.read(min(left, 1 << 20))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_array(fp: BinaryIO, where: str) -> np.ndarray | None:
    """The next ``.npy`` array of ``fp``, or ``None`` at the end of the input. Refuses (one-line
    :class:`~pwavenet.errors.DataError` naming ``where``) anything but a whole floating point
    array: a bad magic, an unknown format version, an object (pickled) array, a truncated one."""
    magic = _read_exact(fp, len(MAGIC) + 2)
    if not magic:
        return None
    if len(magic) < len(MAGIC) + 2 or not magic.startswith(MAGIC):
        raise DataError(f"{where}: not a .npy array (each array must start with the .npy magic)")
    major, minor = magic[-2], magic[-1]
    if major not in READERS or minor != 0:
        raise DataError(f"{where}: .npy format version {major}.{minor} is not supported (1.0, 2.0)")
    try:
        shape, fortran, dtype = READERS[major](fp)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise DataError(f"{where}: unreadable .npy header ({exc})") from None
    if dtype.hasobject:
        raise DataError(f"{where}: an object (pickled) array; mels must be float arrays")
    if dtype.kind != "f":
        raise DataError(f"{where}: mel must be a floating point array, got dtype {dtype}")
    size = math.prod(shape) * dtype.itemsize
    data = _read_exact(fp, size)
    if len(data) < size:
        raise DataError(f"{where}: truncated array ({len(data)} of {size} bytes)")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def read_arrays(fp: BinaryIO, label: str) -> Iterator[tuple[str, np.ndarray]]:
    """``(where, array)`` for every ``.npy`` array of ``fp`` as it arrives; ``where`` names it
    (``label: array i``) for error messages. An input without any array is an error."""
    index = 0
    while (array := read_array(fp, f"{label}: array {index}")) is not None:
        yield f"{label}: array {index}", array
        index += 1
    if index == 0:
        raise DataError(f"{label}: no .npy arrays in the input")


def mel_chunks(
    arrays: Iterator[tuple[str, np.ndarray]],
    audio: AudioConfig,
    chunk_frames: int = 0,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[np.ndarray]:
    """The mel frames of ``arrays`` as float32 ``(rows, n)`` pieces: each array as it is, or cut
    into ``chunk_frames`` frames (the last piece of an array may be shorter). Checks each
    array's rows and values; the first array whose values cannot be a natural-log mel gets one
    warning (:func:`~pwavenet.mels.mel_range_warning`)."""
    warned = False
    for where, mel in arrays:
        check_mel_rows(mel, audio, where)
        if not warned and mel.shape[1] and on_warning is not None:
            line = mel_range_warning(mel[: audio.n_mels], audio, where)
            if line is not None:
                on_warning(line)
                warned = True
        mel = mel.astype(np.float32)
        step = chunk_frames or max(1, mel.shape[1])
        for start in range(0, mel.shape[1], step):
            yield mel[:, start : start + step]


def pcm16(audio: np.ndarray, sample_rate: int = 8000) -> bytes:
    """Mono audio in [-1, 1] as 16-bit little-endian PCM bytes, clipped and converted by
    libsndfile as :func:`~pwavenet.audio.write_wav` converts (raw and WAV output then hold the
    same samples). ``sample_rate`` is a formality of the raw format."""
    buf = io.BytesIO()
    chunk = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    sf.write(buf, chunk, sample_rate, format="RAW", subtype="PCM_16", endian="LITTLE")
    return buf.getvalue()


@contextmanager
def audio_sink(out: Path, sample_rate: int) -> Iterator[Callable[[np.ndarray], None]]:
    """A writer of mono float chunks: ``-`` raw PCM to stdout (flushed after every chunk), a
    ``.wav`` path a 16-bit WAV, another path raw PCM. A file appears under its name only when
    the block ends without an error (nothing half-written); stdout cannot be taken back."""
    if str(out) == "-":
        stdout = sys.stdout.buffer

        def write_stdout(chunk: np.ndarray) -> None:
            stdout.write(pcm16(chunk, sample_rate))
            stdout.flush()

        yield write_stdout
        return
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".wav":
            with sf.SoundFile(
                str(tmp), "w", samplerate=sample_rate, channels=1, subtype="PCM_16", format="WAV"
            ) as wav:
                yield lambda chunk: wav.write(np.clip(chunk, -1.0, 1.0))
        else:
            with open(tmp, "wb") as raw:
                yield lambda chunk: raw.write(pcm16(chunk, sample_rate))
