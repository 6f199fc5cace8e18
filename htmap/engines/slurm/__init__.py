"""The slurm engine: maps as ``sbatch`` job arrays, state from ``squeue`` (see docs/slurm.md)."""
