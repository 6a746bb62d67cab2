"""Moving NumPy arrays between ranks with torch.distributed.

Point-to-point messages carry raw bytes (a ``uint8`` view of the array), so
every dtype the model uses travels, bfloat16 and bool included; the receiver
knows each tensor's shape and dtype from the graph at the plan's dims, so no
header travels with it. Receives wait at most the process group's timeout.
Collectives of a tensor-parallel group run on the group's own process group.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from partitioner.runtime.layout import Route

__all__ = ["Expected", "TorchCollectives", "post_sends", "recv_routes", "use_device"]

# Where messages are staged: the host for gloo; this rank's GPU for NCCL, which moves
# only CUDA tensors.
_device = torch.device("cpu")


def use_device(device: torch.device) -> None:
    global _device
    _device = device


@dataclass(frozen=True)
class Expected:
    """Shape and dtype of the tensor a route carries."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _as_bytes(value: Any) -> torch.Tensor:
    array = np.ascontiguousarray(np.asarray(value))
    return torch.from_numpy(array.reshape(-1).view(np.uint8).copy()).to(_device)


def post_sends(routes: Sequence[Route], values: dict[str, Any]) -> list[Any]:
    """Post one isend per route (batched); returns the works to wait on later."""
    ops = [
        dist.P2POp(dist.isend, _as_bytes(values[r.tensor]), r.dst_rank, tag=r.tag)
        for r in routes
        if np.asarray(values[r.tensor]).nbytes
    ]
    return dist.batch_isend_irecv(ops) if ops else []


def recv_routes(
    routes: Sequence[Route], expected: dict[str, Expected]
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Receive every route's tensor (posted together); values and each one's arrival time."""
    buffers = [
        torch.empty(expected[r.tensor].nbytes, dtype=torch.uint8, device=_device) for r in routes
    ]
    ops = [
        dist.P2POp(dist.irecv, buffer, r.src_rank, tag=r.tag)
        for r, buffer in zip(routes, buffers, strict=True)
        if buffer.numel()
    ]
    works = dist.batch_isend_irecv(ops) if ops else []
    arrived: list[float] = []
    waiting = iter(works)
    for buffer in buffers:
        if buffer.numel():
            next(waiting).wait()
        arrived.append(time.perf_counter())
    values = {
        r.tensor: buffer.cpu()
        .numpy()
        .view(expected[r.tensor].dtype)
        .reshape(expected[r.tensor].shape)
        for r, buffer in zip(routes, buffers, strict=True)
    }
    return values, arrived


def _to_torch(array: np.ndarray) -> torch.Tensor:
    array = np.ascontiguousarray(array)
    if array.dtype.name == "bfloat16":  # torch does not know ml_dtypes' bfloat16
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16).to(_device)
    return torch.from_numpy(array.copy()).to(_device)


def _to_numpy(tensor: torch.Tensor, like: np.dtype) -> np.ndarray:
    tensor = tensor.cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(like)
    return tensor.numpy()


class TorchCollectives:
    """A tensor-parallel group's all_reduce and all_gather over its process group."""

    def __init__(self, group: Any, size: int) -> None:
        self.group, self.size = group, size

    def all_reduce(self, value: np.ndarray) -> np.ndarray:
        tensor = _to_torch(value)
        dist.all_reduce(tensor, group=self.group)
        return _to_numpy(tensor, value.dtype)

    def all_gather(self, value: np.ndarray, axis: int) -> np.ndarray:
        bits = value.dtype.name.startswith("float8")  # torch takes no ml_dtypes float8
        tensor = _to_torch(value.view(np.uint8) if bits else value)
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor, group=self.group)
        gathered = [_to_numpy(p, value.dtype) for p in parts]
        if bits:
            gathered = [p.view(value.dtype) for p in gathered]
        return np.concatenate(gathered, axis=axis)
