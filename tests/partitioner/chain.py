"""Stage files chained in manifest order with plain onnxruntime, against the whole model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


def assert_chain_is_the_whole(out: Path, stages: list[dict], whole: Path, feeds: dict) -> None:
    """The stage files listed in ``stages`` (a manifest's), run in order on ``feeds``, give
    every output of the whole model ``whole`` (its shape and values)."""
    session = ort.InferenceSession(str(whole))
    names = [o.name for o in session.get_outputs()]
    want = dict(zip(names, session.run(None, feeds), strict=True))
    values = dict(feeds)
    for stage in stages:
        part = ort.InferenceSession(str(out / stage["file"]))
        got = part.run(stage["outputs"], {name: values[name] for name in stage["inputs"]})
        values.update(zip(stage["outputs"], got, strict=True))
    for name, expected in want.items():
        assert values[name].shape == expected.shape
        np.testing.assert_allclose(values[name], expected, rtol=1e-5, atol=1e-5)
