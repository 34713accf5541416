"""The snapshot's work, done in tasks: cutting kinds, storing ranges,
restoring them (cut into waves of tasks), and the dry run."""
