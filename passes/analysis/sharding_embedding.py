"""Sharding rule for an embedding lookup: Megatron's vocabulary-parallel embedding.

``Gather(table [V, E...], ids, axis=0)`` with a parameter table whose rows n
divides: rank r holds rows ``[r·V/n, (r+1)·V/n)`` of the table (split on axis
0), looks up only the ids in its range and writes zeros for the others, so the
ranks' outputs sum to the whole lookup: the output is a partial sum, all-reduced
right after the Gather. A per-rank graph cannot do that with the original node
(the ids index the whole vocabulary); `passes.transforms.tensor_parallel_vocab`
rewrites it with standard ops (shift the ids, mask the out-of-range ones, zero
their rows).

When it applies:

- the ids are whole on every rank (graph inputs are fed whole); split ids
  carry their split through the lookup instead (`sharding_rules.gather`);
- the table holds more rows than the lookup reads ids: the all-reduce moves the
  output's bytes on every run, which only pays for itself when the table it
  slices is the larger (a 2-row token-type table read by every token is not
  split; a 32k-row vocabulary read by a few thousand tokens is);
- the table can be sliced on axis 0. A table shared with another reader that
  needs it split differently, or whole (tied embeddings: the LM head reading the
  same table as its weight), is kept whole by the propagation's source lock
  (`sharding_state.Propagation.can_split_source`): a reader that cannot use the
  row split makes the next pass keep the table whole, so the embedding is
  replicated as before. Correctness first: a tied table is never held in two
  layouts. A tied head that reads the rows split compatibly (``x @ Transpose(E)``
  split on E's rows, i.e. the head's columns) keeps the split.
"""

from __future__ import annotations

import math

from passes.analysis.sharding_common import normalize_axis
from passes.analysis.sharding_layout import Layout
from passes.analysis.sharding_state import Decision, Propagation
from passes.ir import Node

__all__ = ["vocab_split"]

VOCAB_AXIS = 0


def vocab_split(ctx: Propagation, node: Node) -> Decision | None:
    """The vocabulary split of ``Gather(table, ids, axis=0)`` (see the module doc), or None."""
    if len(node.inputs) < 2:
        return None
    table, ids = node.inputs[0], node.inputs[1]
    t = ctx.graph.tensors.get(table)
    shape, id_shape = ctx.shape(table), ctx.shape(ids)
    if t is None or not t.is_param or shape is None or id_shape is None or len(shape) < 2:
        return None
    if normalize_axis(int(node.attributes.get("axis", 0)), len(shape)) != VOCAB_AXIS:
        return None
    planned_ids = ctx.planned_numel(ids)  # the plan's sizes: the split is fixed once deployed
    if planned_ids is None:
        planned_ids = math.prod(id_shape)
    if not ctx.layout(ids).is_whole or shape[VOCAB_AXIS] <= planned_ids:
        return None
    if not ctx.can_split_source(table, VOCAB_AXIS):
        return None
    return Decision((Layout(partial=True),), split_sources={table: VOCAB_AXIS})
