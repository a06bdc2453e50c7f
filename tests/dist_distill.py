"""Run by test_distillation.py under two processes (torchrun + accelerate): two student steps.

Every rank writes its student weights to ``<out>.<rank>``: after the steps they must be equal
(gradients synchronised) and differ from the start; and what it computed itself (its loss
metrics and the validation batches it scored, see ``RecordingTask``) to ``<out>.<rank>.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from test_distillation import STUDENT
from training_setup import RecordingTask, tiny_config

from pwavenet.train.distill import make_distill_trainer


def main(dump: str, teacher: str, run: str, out: str, processes: int) -> None:
    cfg = tiny_config(
        f"distill.teacher={teacher}", *STUDENT, "train.max_steps=2", "optim.ema_decay=0"
    )
    trainer, _ = make_distill_trainer(cfg, dump, run, cpu=True)
    acc = trainer.accelerator
    if acc.num_processes != processes:
        raise SystemExit(f"expected {processes} processes, got {acc.num_processes}")
    trainer.task = recorder = RecordingTask(trainer.task)
    trainer.fit()
    state = {k: v.detach().contiguous() for k, v in trainer.unwrapped.state_dict().items()}
    save_file(state, f"{out}.{acc.process_index}")
    recorder.dump(f"{out}.{acc.process_index}.json")
    torch.distributed.barrier() if torch.distributed.is_initialized() else None


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
