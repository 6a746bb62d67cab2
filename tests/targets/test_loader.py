"""Loading targets: presets, aliases, files, extends/overrides, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from targets import (
    CostModel,
    GpuTarget,
    TargetError,
    WaferTarget,
    get_preset,
    load_target,
)

TINY_GRID_YAML = """\
kind: wafer
name: tiny-grid
num_wafers: 1
wafer:
  name: tiny
  width_cores: 16
  height_cores: 16
  sram_bytes_per_core: 1024
  sram_reserve_bytes_per_core: 256
  fmac_lanes_per_cycle: {float16: 4}
  clock_hz: 1e9              # YAML 1.1 would read this as a string
  link_bytes_per_cycle: 4
  hop_latency_cycles: 1
  eta_compute: 0.5
inter_wafer_link: {name: net, bandwidth_bytes_per_s: 1.0e+10, efficiency: 0.5, latency_s: 1e-6}
host_link: {name: host, bandwidth_bytes_per_s: 1e9, efficiency: 1, latency_s: 0}
"""


def write(path: Path, content: str | dict) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(TargetError) as raised:
        load_target(path)
    message = str(raised.value)
    assert "\n" not in message, message
    return message


def test_presets_and_aliases_load() -> None:
    assert load_target("h100x8") is get_preset("h100x8")
    assert load_target("gpu") is get_preset("h100x8")
    assert load_target("wafer") is get_preset("wse3")
    target = get_preset("wse3x2")
    assert load_target(target) is target


def test_unknown_preset() -> None:
    with pytest.raises(TargetError, match="unknown target 'tpu'; presets: a100x1, "):
        load_target("tpu")


def test_tiny_grid_from_yaml(tmp_path: Path) -> None:
    target = load_target(write(tmp_path / "tiny.yaml", TINY_GRID_YAML))
    assert isinstance(target, WaferTarget)
    assert target.name == "tiny-grid"
    assert target.wafer.clock_hz == 1e9
    assert target.wafer.num_cores == 256
    cost = CostModel(target)
    # 8×4 cores × 4 lanes × 2 × 1e9 × 0.5 = 128e9 FLOP/s -> 1.28e6 FLOP in 1e-5 s
    assert cost.region_compute_s(1.28e6, 8, 4, "float16") == pytest.approx(1e-5)
    assert cost.region_sram_bytes(16, 16) == 256 * 768


def test_tiny_grid_from_json_equals_yaml(tmp_path: Path) -> None:
    from_yaml = load_target(write(tmp_path / "tiny.yml", TINY_GRID_YAML))
    from_json = load_target(write(tmp_path / "tiny.json", from_yaml.to_dict()))
    assert from_json == from_yaml
    assert from_json.sha256 == from_yaml.sha256


def test_canonical_dump_reloads_to_the_same_target(tmp_path: Path) -> None:
    for name in ("h100x16", "wse3x4", "h100x8-pcie"):
        target = get_preset(name)
        assert load_target(write(tmp_path / f"{name}.json", target.to_dict())) == target


def test_extends_a_preset_with_deep_merged_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "wse3-fast.yaml", "extends: wse3\nwafer:\n  clock_hz: 1.1e9\n")
    target = load_target(path)
    base = get_preset("wse3")
    assert isinstance(target, WaferTarget) and isinstance(base, WaferTarget)
    assert target.name == "wse3-fast"  # the file's stem, unless the file names it
    assert target.wafer.clock_hz == 1.1e9
    # everything else comes from wse3
    assert target.wafer.width_cores == 762 and target.wafer.fmac_lanes_per_cycle == {"float16": 8}
    assert target.inter_wafer_link == base.inter_wafer_link
    assert target.sha256 != base.sha256


def test_extends_a_preset_to_a_small_custom_grid(tmp_path: Path) -> None:
    path = write(
        tmp_path / "grid.json",
        {
            "extends": "wafer",
            "name": "grid16",
            "num_wafers": 2,
            "wafer": {
                "width_cores": 16,
                "height_cores": 16,
                "sram_bytes_per_core": 2048,
                "sram_reserve_bytes_per_core": 512,
            },
        },
    )
    target = load_target(path)
    assert isinstance(target, WaferTarget)
    assert (target.name, target.num_wafers, target.wafer.num_cores) == ("grid16", 2, 256)
    # 256 cores × (2048 − 512) B usable
    assert CostModel(target).capacity_bytes(0) == 256 * 1536
    # 4096 B of SRAM under wse3's 6144 B reserve: the reserve must be overridden too
    path = write(
        tmp_path / "bad_grid.json", {"extends": "wse3", "wafer": {"sram_bytes_per_core": 4096}}
    )
    assert "field 'wafer.sram_reserve_bytes_per_core' must be less than" in load_error(path)


def test_all_devices_sets_a_price_on_every_gpu(tmp_path: Path) -> None:
    path = write(tmp_path / "priced.yaml", "extends: h100x8\nall_devices:\n  usd_per_hour: 2.5\n")
    target = load_target(path)
    assert isinstance(target, GpuTarget)
    assert [d.usd_per_hour for d in target.devices] == [2.5] * 8
    # 8 × $2.5/h = $20/h at 1000 tokens/s: 20 / 3600 / 1000 $/token
    assert CostModel(target).usd_per_token(1000.0) == pytest.approx(20 / 3600 / 1000)
    wafer = write(tmp_path / "w.yaml", "extends: wse3\nall_devices: {usd_per_hour: 1}\n")
    assert "field 'all_devices' applies to GPU targets only" in load_error(wafer)


def test_extends_another_file_relative_to_it(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "extends: wse3\nwafer: {clock_hz: 1.0e9}\n")
    (tmp_path / "sub").mkdir()
    child = write(tmp_path / "sub" / "child.yaml", "extends: ../base.yaml\nnum_wafers: 4\n")
    target = load_target(child)
    assert isinstance(target, WaferTarget)
    assert (target.name, target.num_wafers, target.wafer.clock_hz) == ("child", 4, 1e9)


def test_extends_loop_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    assert "'extends' loops" in load_error(tmp_path / "a.yaml")


def test_bad_value_names_the_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "extends: wse3\nwafer:\n  clock_hz: -1\n")
    assert load_error(path) == (
        f"target file {path}: field 'wafer.clock_hz' must be a positive number, got -1"
    )


def test_unknown_field_suggests_the_close_match(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "extends: wse3\nwafer:\n  clok_hz: 1e9\n")
    assert load_error(path) == (
        f"target file {path}: field 'wafer.clok_hz' is not a known field "
        "(did you mean 'wafer.clock_hz'?)"
    )
    top = write(tmp_path / "top.json", {"extends": "h100x8", "gpus_per_nod": 4})
    assert "field 'gpus_per_nod' is not a known field (did you mean 'gpus_per_node'?)" in (
        load_error(top)
    )
    link = write(tmp_path / "link.json", {"extends": "h100x8", "host_link": {"latency": 1}})
    assert (
        "field 'host_link.latency' is not a known field (did you mean 'host_link.latency_s'?)"
        in (load_error(link))
    )


def test_misspelt_loader_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "extend: wse3\nnum_wafers: 2\n")
    assert load_error(path) == (
        f"target file {path}: field 'extend' is not a known field (did you mean 'extends'?)"
    )
    devices = write(tmp_path / "d.yaml", "extends: h100x8\nall_device: {usd_per_hour: 2}\n")
    assert "field 'all_device' is not a known field (did you mean 'all_devices'?)" in (
        load_error(devices)
    )


def test_missing_field(tmp_path: Path) -> None:
    spec = get_preset("wse3").to_dict()
    del spec["wafer"]["clock_hz"]
    path = write(tmp_path / "t.json", spec)
    assert load_error(path) == f"target file {path}: field 'wafer.clock_hz' is required"
    no_kind = write(tmp_path / "nokind.json", {"name": "x"})
    assert "field 'kind' must be one of 'gpu', 'wafer', got None" in load_error(no_kind)


def test_wrong_types(tmp_path: Path) -> None:
    spec = get_preset("h100x2").to_dict()
    spec["devices"][1]["hbm_bytes"] = "lots"
    path = write(tmp_path / "t.json", spec)
    assert load_error(path) == (
        f"target file {path}: field 'devices[1].hbm_bytes' must be a positive integer, "
        "got 'lots' (write numbers without quotes)"
    )
    not_list = write(tmp_path / "d.json", {"extends": "h100x2", "devices": {"name": "x"}})
    assert "field 'devices' must be a list of mappings" in load_error(not_list)
    not_map = write(tmp_path / "w.yaml", "extends: wse3\nwafer: 5\n")
    assert "field 'wafer' must be a mapping of fields, got 5" in load_error(not_map)
    kind = write(tmp_path / "k.yaml", "extends: wse3\nkind: gpu\n")
    assert "field 'kind' must be 'wafer' (the kind of 'wse3'), got 'gpu'" in load_error(kind)
    lanes = write(tmp_path / "l.yaml", "extends: wse3\nwafer: {fmac_lanes_per_cycle: {bf16: 8}}\n")
    assert "field 'wafer.fmac_lanes_per_cycle.bf16' is not a known dtype" in load_error(lanes)


def test_unknown_preset_in_extends(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "extends: wse9\n")
    message = load_error(path)
    assert message.startswith(
        f"target file {path}: field 'extends' is not a preset or target file: "
        "unknown target 'wse9'; presets: "
    )
    assert "wse3x8" in message


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    assert load_error(missing).startswith(f"cannot read target file {missing}: ")
    bad_json = write(tmp_path / "bad.json", '{"extends": "wse3",\n "wafer": }')
    assert load_error(bad_json).startswith(f"target file {bad_json}: invalid JSON at line 2 column")
    bad_yaml = write(tmp_path / "bad.yaml", "extends: wse3\nwafer: [1,\n")
    assert load_error(bad_yaml).startswith(f"target file {bad_yaml}: invalid YAML at line")
    listed = write(tmp_path / "list.yaml", "- wse3\n")
    assert load_error(listed) == (
        f'target file {listed}: the target spec must be a mapping of fields, got ["wse3"]'
    )
    empty = write(tmp_path / "empty.yaml", "")
    assert "the target spec must be a mapping of fields, got null" in load_error(empty)
