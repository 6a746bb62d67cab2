"""Recurrent kernels: RNN, GRU, LSTM (forward / reverse / bidirectional, layouts 0 and 1,
sequence_lens, clip, custom activations, LSTM peepholes and input_forget).

The input projection X W^T + Wb of every time step is one matmul up front; the loop over
time steps (inherent to a recurrence) then does one (batch, hidden) x (hidden, gates) matmul
per step, vectorised over batch and hidden. Steps past a sequence's length keep the state
and emit zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from partitioner.executor.kernels.nn_common import as_str, to_compute
from partitioner.executor.registry import kernel

__all__ = ["rnn", "gru", "lstm"]

Activation = Callable[[np.ndarray], np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


# name -> (builder taking alpha, beta; default alpha; default beta)
_ACTIVATIONS: dict[str, tuple[Callable[[float, float], Activation], float | None, float | None]] = {
    "relu": (lambda a, b: lambda x: np.maximum(x, 0), None, None),
    "tanh": (lambda a, b: np.tanh, None, None),
    "sigmoid": (lambda a, b: _sigmoid, None, None),
    "affine": (lambda a, b: lambda x: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda a, b: lambda x: np.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda a, b: lambda x: np.where(x > a, x, 0), 1.0, None),
    "scaledtanh": (lambda a, b: lambda x: a * np.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda a, b: lambda x: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda a, b: lambda x: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))), 1.0, None),
    "softsign": (lambda a, b: lambda x: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda a, b: lambda x: np.logaddexp(0, x), None, None),
}


def _activations(
    names: Sequence[str] | None,
    alphas: Sequence[float] | None,
    betas: Sequence[float] | None,
    defaults: Sequence[str],
    num_directions: int,
) -> list[Activation]:
    """Build the activation functions; alpha/beta lists are consumed by the ones that use them."""
    names = [as_str(n) for n in names] if names else list(defaults) * num_directions
    if len(names) == len(defaults):
        names = names * num_directions
    alpha_iter, beta_iter = iter(alphas or []), iter(betas or [])
    functions = []
    for name in names:
        build, default_alpha, default_beta = _ACTIVATIONS[name.lower()]
        alpha = next(alpha_iter, default_alpha) if default_alpha is not None else None
        beta = next(beta_iter, default_beta) if default_beta is not None else None
        functions.append(build(alpha, beta))
    return functions


def _scan(
    x_proj: np.ndarray,
    h0: np.ndarray,
    valid: np.ndarray | None,
    reverse: bool,
    step: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``state = step(x_proj[t], state)`` over time; returns (Y (T, B, ...), final state).

    ``state`` may stack several tensors on axis 0 (LSTM: h and c); Y holds state[0].
    """
    steps = x_proj.shape[0]
    state = h0
    ys = np.zeros((steps, *h0.shape[1:]), dtype=h0.dtype)
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        new_state = step(x_proj[t], state)
        if valid is not None:
            keep = valid[t].reshape(1, -1, 1)
            new_state = np.where(keep, new_state, state)
            ys[t] = np.where(keep[0], new_state[0], 0)
        else:
            ys[t] = new_state[0]
        state = new_state
    return ys, state


def _prepare(
    x: np.ndarray,
    sequence_lens: np.ndarray | None,
    initial_states: list[np.ndarray | None],
    layout: int,
    num_directions: int,
    batch_hidden: int,
) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
    """Time-major X, per-step validity mask (T, B) or None, and direction-major initial states."""
    if layout:
        x = x.transpose(1, 0, 2)
        initial_states = [None if s is None else s.transpose(1, 0, 2) for s in initial_states]
    steps, batch = x.shape[:2]
    valid = None
    if sequence_lens is not None:
        lens = np.asarray(sequence_lens).reshape(-1)
        if (lens < steps).any():
            valid = np.arange(steps)[:, None] < lens[None, :]
    states = [
        np.zeros((num_directions, batch, batch_hidden), dtype=x.dtype) if s is None else s
        for s in initial_states
    ]
    return x, valid, states


def _finish(
    ys: list[np.ndarray], finals: list[list[np.ndarray]], layout: int, dtype: np.dtype
) -> tuple[np.ndarray, ...]:
    """Stack directions into Y (T, D, B, H) and each final state (D, B, H); apply layout."""
    y = np.stack(ys, axis=1)
    outs = [np.stack(f, axis=0) for f in finals]
    if layout:
        y = y.transpose(2, 0, 1, 3)
        outs = [o.transpose(1, 0, 2) for o in outs]
    return tuple(a.astype(dtype, copy=False) for a in (y, *outs))


def _directions(direction: str) -> list[bool]:
    """Per direction index: whether it runs in reverse."""
    return {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[
        as_str(direction)
    ]


def _clip(clip: float | None) -> Callable[[np.ndarray], np.ndarray]:
    return (lambda v: np.clip(v, -clip, clip)) if clip else (lambda v: v)


@kernel("RNN", since=7)
def rnn(
    x: np.ndarray,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    *,
    activation_alpha: Sequence[float] | None = None,
    activation_beta: Sequence[float] | None = None,
    activations: Sequence[str] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    layout: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """H_t = f(X_t W^T + H_{t-1} R^T + Wb + Rb). Returns Y and Y_h."""
    reverse_of = _directions(direction)
    acts = _activations(activations, activation_alpha, activation_beta, ["Tanh"], len(reverse_of))
    xc, wc, rc = to_compute(x), to_compute(w), to_compute(r)
    hidden = rc.shape[-1]
    xt, valid, (h0,) = _prepare(xc, sequence_lens, [initial_h], layout, len(reverse_of), hidden)
    bias = np.zeros((len(reverse_of), 2 * hidden), xc.dtype) if b is None else to_compute(b)
    clipper = _clip(clip)
    ys, h_finals = [], []
    for d, reverse in enumerate(reverse_of):
        proj = xt @ wc[d].T + bias[d, :hidden] + bias[d, hidden:]
        r_t = rc[d].T

        def step(xp: np.ndarray, state: np.ndarray, r_t=r_t, f=acts[d]) -> np.ndarray:
            return f(clipper(xp + state[0] @ r_t))[None]

        y, final = _scan(proj, h0[d][None].astype(xc.dtype), valid, reverse, step)
        ys.append(y)
        h_finals.append(final[0])
    return _finish(ys, [h_finals], layout, x.dtype)


@kernel("GRU", since=7)
def gru(
    x: np.ndarray,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    *,
    activation_alpha: Sequence[float] | None = None,
    activation_beta: Sequence[float] | None = None,
    activations: Sequence[str] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    layout: int = 0,
    linear_before_reset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """GRU with gates z, r, h (ONNX order). Returns Y and Y_h."""
    reverse_of = _directions(direction)
    acts = _activations(
        activations, activation_alpha, activation_beta, ["Sigmoid", "Tanh"], len(reverse_of)
    )
    xc, wc, rc = to_compute(x), to_compute(w), to_compute(r)
    hidden = rc.shape[-1]
    xt, valid, (h0,) = _prepare(xc, sequence_lens, [initial_h], layout, len(reverse_of), hidden)
    bias = np.zeros((len(reverse_of), 6 * hidden), xc.dtype) if b is None else to_compute(b)
    clipper = _clip(clip)
    ys, h_finals = [], []
    for d, reverse in enumerate(reverse_of):
        wb, rb = bias[d, : 3 * hidden], bias[d, 3 * hidden :]
        proj = xt @ wc[d].T + wb
        r_zr, r_h = rc[d, : 2 * hidden].T, rc[d, 2 * hidden :].T
        f, g = acts[2 * d], acts[2 * d + 1]

        def step(  # defaults bind this direction's weights
            xp: np.ndarray, state: np.ndarray, r_zr=r_zr, r_h=r_h, rb=rb, f=f, g=g
        ) -> np.ndarray:
            h_prev = state[0]
            zr = f(clipper(xp[:, : 2 * hidden] + h_prev @ r_zr + rb[: 2 * hidden]))
            z, reset = zr[:, :hidden], zr[:, hidden:]
            if linear_before_reset:
                cand = xp[:, 2 * hidden :] + reset * (h_prev @ r_h + rb[2 * hidden :])
            else:
                cand = xp[:, 2 * hidden :] + (reset * h_prev) @ r_h + rb[2 * hidden :]
            h_new = g(clipper(cand))
            return ((1 - z) * h_new + z * h_prev)[None]

        y, final = _scan(proj, h0[d][None].astype(xc.dtype), valid, reverse, step)
        ys.append(y)
        h_finals.append(final[0])
    return _finish(ys, [h_finals], layout, x.dtype)


@kernel("LSTM", since=7)
def lstm(
    x: np.ndarray,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    initial_c: np.ndarray | None = None,
    p: np.ndarray | None = None,
    *,
    activation_alpha: Sequence[float] | None = None,
    activation_beta: Sequence[float] | None = None,
    activations: Sequence[str] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    input_forget: int = 0,
    layout: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LSTM with gates i, o, f, c (ONNX order) and peepholes P = [Pi, Po, Pf].

    Returns Y, Y_h and Y_c.
    """
    reverse_of = _directions(direction)
    acts = _activations(
        activations, activation_alpha, activation_beta, ["Sigmoid", "Tanh", "Tanh"], len(reverse_of)
    )
    xc, wc, rc = to_compute(x), to_compute(w), to_compute(r)
    n = rc.shape[-1]
    xt, valid, (h0, c0) = _prepare(
        xc, sequence_lens, [initial_h, initial_c], layout, len(reverse_of), n
    )
    bias = np.zeros((len(reverse_of), 8 * n), xc.dtype) if b is None else to_compute(b)
    peep = np.zeros((len(reverse_of), 3 * n), xc.dtype) if p is None else to_compute(p)
    clipper = _clip(clip)
    ys, h_finals, c_finals = [], [], []
    for d, reverse in enumerate(reverse_of):
        proj = xt @ wc[d].T + bias[d, : 4 * n] + bias[d, 4 * n :]
        r_t = rc[d].T
        p_i, p_o, p_f = peep[d, :n], peep[d, n : 2 * n], peep[d, 2 * n :]
        f, g, h = acts[3 * d], acts[3 * d + 1], acts[3 * d + 2]

        def step(  # defaults bind this direction's weights
            xp: np.ndarray, state: np.ndarray, r_t=r_t, p_i=p_i, p_o=p_o, p_f=p_f, f=f, g=g, h=h
        ) -> np.ndarray:
            h_prev, c_prev = state[0], state[1]
            gates = xp + h_prev @ r_t
            i = f(clipper(gates[:, :n] + p_i * c_prev))
            forget = 1 - i if input_forget else f(clipper(gates[:, 2 * n : 3 * n] + p_f * c_prev))
            c_new = forget * c_prev + i * g(clipper(gates[:, 3 * n :]))
            o = f(clipper(gates[:, n : 2 * n] + p_o * c_new))
            return np.stack([o * h(c_new), c_new])

        state0 = np.stack([h0[d], c0[d]]).astype(xc.dtype)
        y, final = _scan(proj, state0, valid, reverse, step)
        ys.append(y)
        h_finals.append(final[0])
        c_finals.append(final[1])
    return _finish(ys, [h_finals, c_finals], layout, x.dtype)
