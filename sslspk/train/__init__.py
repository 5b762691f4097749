"""One trainer for every stage: DDP (torchrun), AMP, atomic checkpoints, resume, averaging, logs."""
