"""Run by test_training.py in one process or two (torchrun + accelerate): one teacher step,
then the final validation.

Rank 0 writes the weights to ``<out>``; every rank writes what it computed itself (its loss
metrics and the validation batches it scored, see ``RecordingTask``) to ``<out>.<rank>.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from training_setup import RecordingTask, tiny_config

from pwavenet.train.teacher import make_teacher_trainer


def main(dump: str, run: str, batch: int, out: str, processes: int) -> None:
    cfg = tiny_config(f"data.batch_size={batch}", "train.max_steps=1", "optim.ema_decay=0")
    trainer = make_teacher_trainer(cfg, dump, run, cpu=True)
    if trainer.accelerator.num_processes != processes:
        raise SystemExit(f"expected {processes} processes, got {trainer.accelerator.num_processes}")
    trainer.task = recorder = RecordingTask(trainer.task)
    trainer.fit()
    recorder.dump(f"{out}.{trainer.accelerator.process_index}.json")
    if trainer.accelerator.is_main_process:
        state = {k: v.detach().contiguous() for k, v in trainer.unwrapped.state_dict().items()}
        save_file(state, out)
    torch.distributed.barrier() if torch.distributed.is_initialized() else None


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
