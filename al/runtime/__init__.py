"""The process around a run: signals, the run lock, DDP helpers, SLURM requeue, library notices."""
