"""Solvers: numbers in, assignments out. They import only `targets` (and each other).

- `problem`: the pipeline problem (`PipelineProblem`) in plain numbers, `score`
  and `check_assignment`, `lower_bound_s`;
- `dp`: the exact chain DP over one topological order (CP-SAT's warm start);
- `cpsat_pipeline`: CP-SAT over the block DAG, in integer µs and KiB, with
  status, bound and gap;
- `baselines`: greedy, parameter-balanced (DeepSpeed-style) and uniform splits;
- `sizing` and `floorplan`: wafer region sizes and their placement (CP-SAT's
  ``add_no_overlap_2d`` from a serpentine start, or the snake and blind baselines);
- `interrupt`: Ctrl-C and SIGTERM stop a search and keep its best answer.
"""
