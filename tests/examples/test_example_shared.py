"""The parts the torch examples share: config resolution, seeded models, the CLI."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import onnx
import pytest

torch = pytest.importorskip("torch")

from examples import bert, gpt2, mlp, resnet  # noqa: E402
from examples._onnx_utils import (  # noqa: E402
    ExampleError,
    float_initializer_elements,
    resolve_config,
)

pytestmark = pytest.mark.slow


def test_resolve_config_takes_a_config_or_its_name() -> None:
    config = mlp.MLPConfig(in_features=3, hidden_features=4, depth=1, out_features=2)
    assert resolve_config(config, mlp.CONFIGS, mlp.MLPConfig, "MLP size") is config
    assert resolve_config("tiny", mlp.CONFIGS, mlp.MLPConfig, "MLP size") is mlp.CONFIGS["tiny"]


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (gpt2, "unknown GPT-2 size 'huge'; use one of tiny, small, medium, large, xl"),
        (bert, "unknown BERT size 'huge'; use one of tiny, base, large"),
        (mlp, "unknown MLP size 'huge'; use one of tiny, base"),
        (
            resnet,
            "unknown ResNet preset 'huge'; use one of tiny, tiny-bottleneck, resnet18, "
            "resnet34, resnet50, resnet101",
        ),
    ],
)
def test_unknown_name_is_a_one_line_user_error(module: ModuleType, message: str) -> None:
    for call in (module.torch_param_count, module.make_model):
        with pytest.raises(ExampleError) as error:
            call("huge")
        assert str(error.value) == message


@pytest.mark.parametrize("module", [gpt2, bert, mlp, resnet])
def test_make_model_is_seeded_and_in_eval_mode(module: ModuleType) -> None:
    first, again, other = (module.make_model("tiny", seed) for seed in (1, 1, 2))
    assert not first.training
    state, state_again, state_other = (m.state_dict() for m in (first, again, other))
    assert all(torch.equal(state[name], state_again[name]) for name in state)
    assert not all(torch.equal(state[name], state_other[name]) for name in state)


def test_bert_cli_no_pooler_drops_the_pooler(tmp_path: Path) -> None:
    out = tmp_path / "bert.onnx"
    argv = ["--size", "tiny", "--no-pooler", "--exporter", "legacy", "--out", str(out)]
    assert bert.main(argv) == 0
    model = onnx.load(out)
    assert [output.name for output in model.graph.output] == ["last_hidden_state"]
    # The tiny pooler is a 32x32 Linear: 32*32 + 32 = 1,056 parameters fewer.
    assert float_initializer_elements(model) == bert.torch_param_count("tiny") - 1_056


def test_resnet_cli_overrides_the_preset(tmp_path: Path) -> None:
    out = tmp_path / "resnet.onnx"
    argv = ["--preset", "tiny", "--layers", "1", "--width", "2", "--num-classes", "3"]
    assert resnet.main([*argv, "--exporter", "legacy", "--out", str(out)]) == 0
    # Stem conv 3*2*7*7 = 294, BN 2*2 = 4; one basic block, two 2*2*3*3 convs = 72 and two BNs
    # = 8; fc 2*3 + 3 = 9 -> 387 parameters. Running mean/var: 3 BNs of 2 channels -> 12.
    assert float_initializer_elements(onnx.load(out)) == 387 + 12
