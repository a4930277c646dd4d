"""Training: the built-in models' recipes (python -m model.training.train), live training jobs for the Train page, held-out evaluation."""
