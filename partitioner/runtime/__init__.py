"""The distributed runtime: a plan executed by torch.distributed processes, measured.

Imported only by ``partition run`` (and started by torchrun); only ``worker``
and ``transport``, the rank processes' own modules, import torch, the optional
``[torch]`` extra. The rest is plain Python the launcher uses:

- `layout`: a plan's stages as ranks, its transfers as point-to-point routes;
- `engines` / `group_step`: one partition as a rank runs it, with onnxruntime
  or the NumPy kernels, tensor-parallel groups segment by segment;
- `program`: loading a run's inputs and computing one micro-batch on a rank;
- `worker` (+ `worker_args`): one rank's receive-compute-send loop;
- `launcher`: starting the ranks here, watching them, stopping them all;
- `report` / `finish`: measured seconds per stage beside the plan's, the
  output check against onnxruntime, and the Chrome trace.
"""
