"""Table 7.1's L_sp ablations (thesis 000, Ch. 7 §7.6): cosine L_sp, L_sp pre-adapter, w_sp 0/5/10 overlays."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from cli_runner import run_cli
from lightning_modules.aligntok.losses import semantic_preservation_loss

ABLATIONS = Path(__file__).resolve().parents[1] / "configs" / "aligntok_ablations"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cosine_sp_agrees_with_torch_cosine_embedding_loss():
    a, b = torch.randn(3, 8, 4, 5), torch.randn(3, 8, 4, 5)
    tokens = lambda x: x.permute(0, 2, 3, 1).reshape(-1, 8)  # noqa: E731 - one C-vector per token
    peer = torch.nn.CosineEmbeddingLoss()(tokens(a), tokens(b), torch.ones(3 * 4 * 5))
    assert torch.allclose(semantic_preservation_loss(a, b, "cosine"), peer, atol=1e-6)
    assert semantic_preservation_loss(a, 2.5 * a, "cosine").abs() < 1e-6  # scale-free, unlike the MSE
    assert semantic_preservation_loss(a, 2.5 * a, "mse") > 0.1
    with pytest.raises(ValueError, match="sp_loss"):
        semantic_preservation_loss(a, b, "l1")


@pytest.mark.parametrize("overlay", ["cosine_sp", "pre_adapter_sp"])
def test_sp_ablation_overlay_builds_and_steps_once(overlay: str, tmp_path: Path):
    cli = run_cli(["fit", "--config", "aligntok_stage2.yaml", "--config", "tiny/aligntok_stage2.yaml",
                   "--config", f"aligntok_ablations/{overlay}.yaml", "--trainer.max_steps", "1",
                   "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false"], tmp_path)
    module = cli.model
    assert cli.trainer.global_step == 1
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = module.generator_losses(x, False)
    assert out["sp_loss"] > 0  # the encoder moved in the step, away from its frozen stage-1 copy
    with torch.no_grad():
        target = module.reference(x)
        features = module.tokenizer.encoder(x)
        latents = module.tokenizer.adapter(features)
    if overlay == "cosine_sp":
        assert module.hparams.sp_loss == "cosine" and target.shape == latents.shape
        expected = (1 - torch.nn.functional.cosine_similarity(latents, target, dim=1)).mean()
    else:
        assert module.hparams.sp_target == "encoder" and target.shape == features.shape  # E_p only, no adapter
        expected = torch.nn.functional.mse_loss(features, target)
    assert torch.allclose(out["sp_loss"], expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("weight", [0, 5, 10])
def test_sp_weight_overlays_set_w_sp(weight: int):
    args = yaml.safe_load((ABLATIONS / f"sp_weight{weight}.yaml").read_text())["model"]["init_args"]
    assert args == {"sp_weight": float(weight)}
