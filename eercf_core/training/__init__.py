"""Training with the EERCF objective: `losses` (every loss term) and `trainer` (optimiser,
schedule, batches, checkpoints, resume) and `data` (captions and decoded training videos)."""
