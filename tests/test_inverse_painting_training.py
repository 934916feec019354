"""Inverse Painting training, rollout, predict and evaluation on tiny random-weight parts (CPU).

These check that the code learns and writes its outputs, not the paper's numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inverse_painting_helpers import SIZE, mask_generator, pair_batch, renderer, text_generator


def _fit(loss_fn, params, steps: int, lr: float) -> tuple[float, float]:
    opt = torch.optim.AdamW(params, lr=lr)
    first = last = None
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
        last = float(loss.detach())
    return first, float(loss_fn())


def test_renderer_fit_lowers_the_epsilon_loss() -> None:
    torch.manual_seed(0)
    model = renderer()
    batch = pair_batch()
    assert all(p.requires_grad is False for p in model.vae.parameters())
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"unet", "reference_net", "canvas_encoder", "time_encoder", "clip_generator"}
    # fixed noise and timesteps, no dropout: the same regression problem every step
    start, end = _fit(lambda: model.pair_loss(batch, torch.Generator().manual_seed(1), train=False).mean(), model.trainable_parameters(), 8, 3e-3)
    assert end < 0.9 * start, (start, end)


def test_mask_generator_fit_lowers_the_bce() -> None:
    torch.manual_seed(0)
    model = mask_generator()
    batch = pair_batch()
    assert model.unet.config.in_channels == 9 and model.unet.config.out_channels == 1
    start, end = _fit(lambda: model.loss(batch), model.trainable_parameters(), 8, 3e-3)
    assert end < 0.8 * start, (start, end)
    mask = model.predict_mask(batch["target"], batch["canvas"], batch["delta"], batch["text"])
    assert mask.shape == (2, 1, SIZE, SIZE) and set(mask.unique().tolist()) <= {0.0, 1.0}


def test_text_classifier_stand_in_learns_and_tiny_llava_runs() -> None:
    from lightning_modules.inverse_painting import LlavaInstructionBackend

    torch.manual_seed(0)
    model = text_generator()
    assert model.is_stand_in
    batch = pair_batch(4)
    start, end = _fit(lambda: model.loss(batch), model.trainable_parameters(), 10, 1e-2)
    assert end < start
    assert all(w in model.backend.vocabulary and w != "none" for w in model.generate(batch["target"], batch["canvas"]))
    llava = LlavaInstructionBackend(
        model_config=dict(
            vision_config=dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                               num_attention_heads=2, image_size=16, patch_size=8, projection_dim=16),
            text_config=dict(model_type="llama", hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                             num_key_value_heads=2, vocab_size=96, max_position_embeddings=128),
            vision_feature_layer=-1),
        lora=dict(r=2, lora_alpha=4, target_modules=r".*language_model.*\.(q_proj|v_proj)"),
        max_new_tokens=2,
    )
    trainable = [n for n, p in llava.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable), "LoRA trains adapters only"
    start, end = _fit(lambda: llava.loss(batch["target"], batch["canvas"], batch["text"]), [p for p in llava.parameters() if p.requires_grad], 4, 5e-2)
    assert end < start
    answers = llava.generate(batch["target"][:1], batch["canvas"][:1])
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_text_generator_prompt_order_bf16_and_checkpointing() -> None:
    """§6.3: the chapter's question verbatim, [I_{t-1} | I_T] as it reads; bf16 weights + gradient checkpointing (code)."""
    from datamodules.painting_timelapse import ANNOTATION_PROMPT, INSTRUCTION_PROMPT
    from lightning_modules.inverse_painting import LlavaInstructionBackend
    from lightning_modules.inverse_painting.common import instruction_image

    assert INSTRUCTION_PROMPT == ("There are two images side by side. The left image is an intermediate stage in a painting "
                                  "process of the right image. Please tell me what content should be painted next? The answer "
                                  "should be less than 2 words.")
    assert ANNOTATION_PROMPT.startswith("There are two images side by side. The right image is the next step of the left image")
    target, canvas = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert torch.equal(instruction_image(target, canvas)[..., :4], canvas), "the intermediate stage on the left"
    assert torch.equal(instruction_image(target, canvas, "target_current")[..., :4], target), "Eq. 6.2's literal order"
    llava = LlavaInstructionBackend(
        model_config=dict(
            vision_config=dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                               num_attention_heads=2, image_size=16, patch_size=8, projection_dim=16),
            text_config=dict(model_type="llama", hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                             num_key_value_heads=2, vocab_size=96, max_position_embeddings=128),
            vision_feature_layer=-1),
        lora=dict(r=2, lora_alpha=4, target_modules=r".*language_model.*\.(q_proj|v_proj)"),
        torch_dtype="bfloat16", gradient_checkpointing=True,
    ).train()
    base = [p for n, p in llava.named_parameters() if "lora_" not in n]
    adapters = [p for n, p in llava.named_parameters() if "lora_" in n]
    assert all(p.dtype == torch.bfloat16 for p in base) and all(p.dtype == torch.float32 for p in adapters)
    assert llava.model.base_model.model.is_gradient_checkpointing
    pixels = llava.pixel_values(target, canvas)  # [4 x 8] pair -> 8 x 8 square, pad rows = the CLIP mean colour
    assert pixels.dtype == torch.bfloat16 and float(pixels[0, :, 0].float().abs().max()) < 0.02
    batch = pair_batch(2)
    loss = llava.loss(batch["target"], batch["canvas"], batch["text"])
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None and torch.isfinite(p.grad).all() for p in adapters)
    with pytest.raises(ValueError, match="torch_dtype"):
        LlavaInstructionBackend(model_config={}, torch_dtype="int8")


def test_tiny_rollout_predict_and_evaluation_write_files(tmp_path: Path) -> None:
    from lightning_modules.inverse_painting import InversePainting, write_rollout

    torch.manual_seed(0)
    chain = InversePainting(renderer(), mask_generator(), text_generator(), max_keyframes=3, num_sampling_steps=2)
    chain.eval()
    target = pair_batch(1)["target"]
    result = chain.paint(target, torch.Generator().manual_seed(0))
    assert result.frames.shape == (4, 3, SIZE, SIZE) and torch.all(result.frames[0] == 1)
    assert result.times == [0.0, 20.0, 40.0, 60.0] and len(result.texts) == 3 and len(result.masks) == 3
    assert result.stopped == "limit" and set(result.seconds) == {"text", "mask", "render"}
    info = write_rollout(result, tmp_path / "painting", fps=2)
    for name in ("timelapse.mp4", "timelapse.gif", "process.json", "keyframes/000_00-00.png", "keyframes/003_01-00.png", "masks/001.png"):
        assert (tmp_path / "painting" / name).is_file(), name
    assert json.loads((tmp_path / "painting" / "process.json").read_text())["instructions"] == info["instructions"]
    import av

    with av.open(str(tmp_path / "painting" / "timelapse.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4
    # evaluation of one painting against a fake "real" sequence, then the results rows
    from lightning_modules.inverse_painting import PaintingProcessMetrics

    real = torch.stack([torch.ones(3, SIZE, SIZE), target[0] * 0.5, target[0]])
    metric = PaintingProcessMetrics(lpips_backbone=None)
    metric.update([result], {"frames": real[None], "times": torch.tensor([[0.0, 30.0, 90.0]])})
    computed = {k: float(v) for k, v in metric.compute().items()}
    assert set(computed) == {"LPIPS", "max-IoU", "DDC", "DTS"}
    assert 0 <= computed["max-IoU"] <= 1 and computed["LPIPS"] >= 0
    assert abs(computed["DTS"] - 0.5) < 1e-6, "|1.5 min - 1.0 min|"


def test_rollout_stops_when_updates_vanish() -> None:
    from lightning_modules.inverse_painting import StopCriterion, rollout

    class Frozen:  # a renderer that returns the canvas unchanged after one step
        use = {"text": False, "mask": False, "time": True, "clip": True}

        def __init__(self) -> None:
            self.calls = 0

        def render(self, canvas, target, delta, text, mask, num_steps=None, generator=None):
            self.calls += 1
            return target.clone() if self.calls == 1 else canvas.clone()

    fake = Frozen()
    stop = StopCriterion(lambda a, b: (a - b).abs().mean().reshape(1), eps=1e-3)
    result = rollout(torch.zeros(1, 3, 4, 4), fake, max_keyframes=10, stop=stop)
    assert result.stopped == "converged" and fake.calls == 3 and len(result.times) == 4


def test_renderer_computes_step_masks_with_d_on_real_batches() -> None:
    from lightning_modules.inverse_painting import DifferenceMask

    batch = {k: v for k, v in pair_batch().items() if k not in ("mask", "unfinished")}  # like the real layout
    model = renderer(difference_mask=DifferenceMask(distance="l1", alpha=0.02))
    assert torch.isfinite(model.pair_loss(batch)).all()
    assert "difference_mask" not in {k.split(".")[0] for k, p in model.named_parameters() if p.requires_grad}
    with pytest.raises(ValueError, match="difference_mask"):
        renderer().pair_loss(batch)
    with pytest.raises(NotImplementedError, match="render"):
        renderer().sample(1)


def test_tiny_test_run_writes_results_rows_through_the_evaluation_callback(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    from callbacks.evaluation import EvaluationCallback
    from datamodules.painting_timelapse import PaintingTimelapseDataModule
    from lightning_modules.inverse_painting import InversePainting, PaintingProcessMetrics
    from metrics.results_rows import read_rows

    from metrics.fid import FrechetInceptionDistance
    from metrics.video import FrechetVideoDistance

    class MeanColour(torch.nn.Module):  # stand-in feature networks: the real ones need Inception / I3D weights
        num_features = 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.float().flatten(-2).mean(-1).flatten(1)[:, -3:] if x.ndim == 5 else x.float().mean((2, 3))

    torch.manual_seed(0)
    fid = FrechetInceptionDistance(MeanColour(), num_features=3)
    fvd = FrechetVideoDistance(MeanColour(), num_features=3)
    metric = PaintingProcessMetrics(lpips_backbone=None, fid=fid, fvd=fvd, fvd_frames=4)
    evaluation = EvaluationCallback({"process": metric}, stages=["test"], per_batch_generation=True, real_key="frames",
                                    paper="inverse_painting", table="Table 6.1", split="validation", progress_bar=False,
                                    results_dir=str(tmp_path), results_file="rows.jsonl",
                                    metric_names={f"process_{k}": k for k in ("LPIPS", "max-IoU", "DDC", "DTS", "FID", "FVD")})
    chain = InversePainting(renderer(), mask_generator(), text_generator(), max_keyframes=2, num_sampling_steps=1,
                            method_name="Ours-TE")
    data = PaintingTimelapseDataModule(size=SIZE, num_paintings=4, num_strokes=3, val_fraction=0.5, max_test_paintings=2)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=str(tmp_path), callbacks=[evaluation])
    trainer.test(chain, datamodule=data)
    rows = read_rows([str(tmp_path / "rows.jsonl")])
    assert {r.metric for r in rows} == {"LPIPS", "max-IoU", "DDC", "DTS", "FID", "FVD"}
    assert all(r.paper == "inverse_painting" and r.method == "Ours-TE" and r.weights == "random" and r.data == "embedded"
               and r.num_samples == 2 and r.nfe == chain.nfe() and r.extra["interval_s"] == 20.0 for r in rows)


@pytest.mark.parametrize(
    "flags",
    [dict(use_time=False), dict(use_text=False), dict(use_mask=False), dict(use_reference_net=False), dict(use_clip=False),
     dict(use_text=False, use_mask=False, use_time=False, canvas_mode="concat")],
    ids=["TE", "TG", "MG", "RN", "CE", "TE-TG-MG-concat"],
)
def test_ablation_renderers_train_and_render(flags: dict) -> None:
    torch.manual_seed(0)
    model = renderer(**flags)
    batch = pair_batch()
    assert torch.isfinite(model.pair_loss(batch)).all()
    assert (model.network.reference_net is None) == (not flags.get("use_reference_net", True))
    used = [k for k in ("text", "mask", "time", "clip") if flags.get(f"use_{k}", True)]
    assert model.nfe_per_step() == 1 + len(used)
    image = model.render(batch["canvas"], batch["target"], 20.0, batch["text"], batch["mask"], num_steps=1,
                         generator=torch.Generator().manual_seed(0))
    assert image.shape == batch["canvas"].shape and image.abs().max() <= 1


def test_generator_analysis_metrics_single_update_and_whole_sequences() -> None:
    """§6.9 analysis (code, not the paper's numbers): predicted-text masks on GT pairs, InGT / LCS on rollouts."""
    from lightning_modules.inverse_painting import (
        InstructionAccuracy, InstructionSequenceAgreement, InversePainting, Rollout, StepMaskIoU,
    )
    from lightning_modules.inverse_painting.evaluation import lcs_length

    from lightning_modules.inverse_painting import ClosedVocabularyInstructionClassifier, TextInstructionGenerator

    assert lcs_length(["sky", "sky", "tree", "grass"], ["sky", "grass", "tree"]) == 2
    baseline = TextInstructionGenerator(ClosedVocabularyInstructionClassifier(image_size=16, width=8),
                                        method_name="Pretrained LLaVA (initialisation)")
    assert baseline.method_label() == "Pretrained LLaVA (initialisation)" and not baseline.loads_own_weights
    assert text_generator().method_label().startswith("Text generator (stand-in")
    torch.manual_seed(0)
    chain = InversePainting(renderer(), mask_generator(), text_generator(), max_keyframes=1, num_sampling_steps=1).eval()
    batch = pair_batch(2)
    masks = chain.sample_for_batch(batch)  # pair batch: g_text on the GT canvas, then g_mask with its answer
    assert masks.shape == (2, 1, SIZE, SIZE) and set(masks.unique().tolist()) <= {0.0, 1.0}
    iou = StepMaskIoU()
    iou.update(batch["mask"], batch)
    assert float(iou.compute()) == 1.0, "the GT mask against itself"
    accuracy = InstructionAccuracy()
    accuracy.update([batch["text"][0].upper() + ".", "nothing"], batch)
    assert float(accuracy.compute()) == 50.0, "case and a final period do not count"
    frames = torch.zeros(4, 3, 2, 2)
    process = Rollout(frames=frames, times=[0.0, 20.0, 40.0, 60.0], texts=["sky", "tree", "sky"], masks=[], stopped="limit",
                      seconds={})
    sequence = InstructionSequenceAgreement()
    sequence.update([process], {"text": [["none", "sky", "grass", "tree"]]})
    values = {k: float(v) for k, v in sequence.compute().items()}
    assert values == pytest.approx({"InGT": 100.0, "LCS": 200.0 / 3}), "all 3 in the GT set; LCS (sky, tree) holds 2 of 3"
