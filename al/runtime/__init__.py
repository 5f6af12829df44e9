"""The process around a run: signals."""
