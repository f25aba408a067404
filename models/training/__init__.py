"""Training a checkpoint: the training loop and distillation."""
