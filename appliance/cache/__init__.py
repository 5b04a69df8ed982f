"""The build cache: what current work uses, and pruning the rest."""
