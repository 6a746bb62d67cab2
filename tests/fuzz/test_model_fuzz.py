"""Fuzz `partition` with broken models: byte damage and field edits of the parsed model.

Byte flips mostly break the protobuf framing; field edits (dims, dtypes, ops,
wiring, opsets, external data) reach shape inference, the cost model, the
solver and the executor. Every command must keep the contract of
`tests.fuzz.harness`, and a plan the planner writes must pass its validator.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.cases import model_case
from tests.fuzz.harness import FUZZ
from tests.fuzz.mutations import apply_bytes, apply_proto, byte_mutations, proto_mutations


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_model_byte_mutations(corpus, data):
    mutation = data.draw(byte_mutations(len(corpus["model_bytes"])), label="mutation")
    model_case(corpus, apply_bytes(corpus["model_bytes"], mutation))


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_model_proto_mutations(corpus, data):
    ops = data.draw(proto_mutations(corpus["model_proto"]), label="ops")
    model_case(corpus, apply_proto(corpus["model_proto"], ops))


def test_unmutated_model_passes(corpus):
    """The baseline: the fixture's model passes every command the fuzzer runs."""
    model_case(corpus, corpus["model_bytes"])
