"""The snapshot's work, done in tasks: cutting kinds, storing ranges, restoring them, and the dry run."""
