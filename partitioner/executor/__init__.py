"""NumPy reference executor: vectorised kernels, whole-graph and per-plan runs."""
