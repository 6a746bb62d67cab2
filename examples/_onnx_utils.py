"""Torch-free helpers shared by the example builders: parameter counting and saving.

The project measures an example by one rule: the elements of the floating-point
initializers of the ONNX file (each initializer counted once) equal the model's
parameters (plus, where a model needs them at inference, its float buffers such as
BatchNorm running statistics). :func:`float_initializer_elements` is that count; it reads
only ``dims``, so it works on weightless graphs whose external data was never written.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import onnx

from targets.errors import PartitionError

__all__ = [
    "EXTERNAL_DATA_THRESHOLD_BYTES",
    "FLOAT_DATA_TYPES",
    "ExampleError",
    "float_initializer_elements",
    "float_initializer_numels",
    "reports_errors",
    "resolve_config",
    "save_model",
]

logger = logging.getLogger(__name__)

ConfigT = TypeVar("ConfigT")

#: Models whose initializers exceed this many bytes are saved with external data.
#: Protobuf caps one message at 2 GiB, so we switch well before it.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_500_000_000

#: ONNX element types counted as floating-point parameters.
FLOAT_DATA_TYPES: frozenset[int] = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT8E4M3FN,
        onnx.TensorProto.FLOAT8E4M3FNUZ,
        onnx.TensorProto.FLOAT8E5M2,
        onnx.TensorProto.FLOAT8E5M2FNUZ,
    }
)


class ExampleError(PartitionError):
    """An example model was asked for with an invalid size, option or combination."""


def resolve_config(
    config: str | ConfigT,
    configs: Mapping[str, ConfigT],
    config_class: type[ConfigT],
    kind: str,
) -> ConfigT:
    """An example's config, given as itself or by name.

    Args:
        config: A ``config_class`` value (returned as is) or a key of ``configs``.
        configs: The example's named configs.
        config_class: The example's config dataclass.
        kind: What the error calls a name (``"GPT-2 size"``, ``"ResNet preset"``).

    Returns:
        The config.

    Raises:
        ExampleError: If ``config`` is neither a ``config_class`` nor a name in ``configs``.
    """
    if isinstance(config, config_class):
        return config
    if config not in configs:
        raise ExampleError(f"unknown {kind} {config!r}; use one of {', '.join(configs)}")
    return configs[config]


def float_initializer_numels(model: onnx.ModelProto) -> dict[str, int]:
    """Element count of every floating-point initializer of the top-level graph, by name.

    Args:
        model: The model; its external data need not be loaded (only ``dims`` is read).

    Returns:
        ``{initializer name: number of elements}``; a name is counted once even if the
        graph lists it twice.
    """
    return {
        tensor.name: math.prod(tensor.dims)
        for tensor in model.graph.initializer
        if tensor.data_type in FLOAT_DATA_TYPES
    }


def float_initializer_elements(model: onnx.ModelProto) -> int:
    """Total elements of the floating-point initializers (the project's parameter count).

    Args:
        model: The model; its external data need not be loaded.

    Returns:
        The sum of :func:`float_initializer_numels`.
    """
    return sum(float_initializer_numels(model).values())


def _initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(tensor.raw_data) for tensor in model.graph.initializer) + sum(
        4 * len(tensor.float_data) for tensor in model.graph.initializer
    )


def save_model(
    model: onnx.ModelProto,
    out_path: str | Path,
    *,
    external_data: bool | None = None,
) -> Path:
    """Save a model with loaded weights, inline when small and as external data when large.

    Args:
        model: The model, with every initializer's data in memory.
        out_path: Where the ``.onnx`` file goes; external data goes next to it as
            ``<file name>.data``.
        external_data: Force external data on or off; ``None`` decides by
            :data:`EXTERNAL_DATA_THRESHOLD_BYTES`.

    Returns:
        The path of the saved ``.onnx`` file.
    """
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data_path = path.with_name(path.name + ".data")
    if external_data is None:
        external_data = _initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD_BYTES
    # A stale data file from an earlier run would be appended to, not replaced.
    data_path.unlink(missing_ok=True)
    if external_data:
        onnx.save_model(
            model,
            path,
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_path.name,
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, path)
    logger.info("saved %s (external data: %s)", path, external_data)
    return path


def reports_errors(
    main: Callable[[Sequence[str] | None], int],
) -> Callable[[Sequence[str] | None], int]:
    """Wrap a CLI ``main`` so a :class:`PartitionError` prints one line and returns its code.

    Args:
        main: ``main(argv) -> exit code``.

    Returns:
        The wrapped function; tracebacks are left for bugs.
    """

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except PartitionError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code

    return wrapped
