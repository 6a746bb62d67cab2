"""`partition calibrate`: measure this machine and write a target file of what it measured.

- `host`: the CPU through onnxruntime (GEMM per dtype, streaming bandwidth,
  per-op overhead), as `partition run`'s ranks use it;
- `cuda`: a GPU through torch (imports torch);
- `links`: send/recv and all-reduce between local ranks through
  torch.distributed (the ranks run `links_worker`, which imports torch);
- `target`: the target file, every figure with how it was measured.
"""
