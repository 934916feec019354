"""The shared released-checkpoint importer: safe reading, renaming, one clear refusal, strict loading."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lightning_modules.components.released_weights import (KeyMap, ReleasedWeightsError, import_released,
                                                            read_released_state)
from metrics.results_rows import run_provenance


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 2, 1))


def _authors_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The same weights under names an authors' script might use: DataParallel prefix, other layer names."""
    names = {"0": "conv_in", "1": "norm", "2": "conv_out"}
    return {f"module.{names[k.split('.')[0]]}.{k.split('.', 1)[1]}": torch.randn_like(v)
            for k, v in net.state_dict().items()}


MAP = KeyMap(rules=((r"^conv_in\.", "0."), (r"^norm\.", "1."), (r"^conv_out\.", "2.")),
             drop=(r"^ema_decay$",), strip_prefixes=("module.",))


def test_import_renames_and_loads_every_tensor(tmp_path):
    net = _net()
    state = _authors_state(net)
    path = tmp_path / "released.pth"
    torch.save({"state_dict": state, "epoch": 7, "optimizer": {"lr": 1e-4}}, path)
    mapped = import_released(net, path, MAP, what="toy")
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, mapped[name])
    assert torch.equal(net[0].weight, state["module.conv_in.weight"])


def test_safetensors_and_nested_containers_are_read(tmp_path):
    net = _net()
    state = {k.replace("module.", ""): v for k, v in _authors_state(net).items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    assert set(read_released_state(tmp_path / "w.safetensors")) == set(state)
    torch.save({"model": {"state_dict": state}}, tmp_path / "nested.pt")
    assert set(read_released_state(tmp_path / "nested.pt")) == set(state)


def test_mismatch_is_one_message_naming_file_key_and_shapes(tmp_path):
    net = _net()
    state = _authors_state(net)
    state["module.conv_out.weight"] = torch.randn(5, 4, 1, 1)  # another width
    del state["module.norm.bias"]
    state["module.extra_head.weight"] = torch.randn(3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ReleasedWeightsError) as err:
        import_released(net, path, MAP, what="toy", key="model.init_args.released_checkpoint", hint="another width?")
    text = str(err.value)
    assert "model.init_args.released_checkpoint" in text and "bad.pth" in text
    assert "1 missing (1.bias)" in text and "extra_head.weight" in text
    assert "2.weight (5, 4, 1, 1) vs (2, 4, 1, 1)" in text and text.endswith("another width?")
    assert "\n" not in text


def test_colliding_rules_are_refused():
    bad = KeyMap(rules=((r"^(a|b)\.", "x."),))
    with pytest.raises(ReleasedWeightsError, match="sends both"):
        bad.apply({"a.w": torch.zeros(1), "b.w": torch.zeros(1)})


def test_code_carrying_file_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": KeyMap()}, path)
    with pytest.raises(Exception, match="refusing to load"):
        read_released_state(path)


def test_missing_file_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.init_args.released_checkpoint"):
        read_released_state(tmp_path / "nope.pt")


def test_provenance_records_released_checkpoint():
    class Trainer:
        global_step, current_epoch, ckpt_path = 3, 0, None
        lightning_module = type("M", (), {"released_checkpoint": "/weights/authors.ckpt"})()

    assert run_provenance(Trainer())["released_checkpoint"] == "/weights/authors.ckpt"
    Trainer.lightning_module = object()
    assert "released_checkpoint" not in run_provenance(Trainer())
