"""What a run shows: the per-iteration table (and, later, its plots and trajectory pages)."""
