"""Training: the generic accelerate trainer, the losses, the teacher task and the distillation
task."""
