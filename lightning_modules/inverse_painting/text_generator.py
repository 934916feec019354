"""Text instruction generator ``g_text`` (thesis 000, Ch. 6, §6.3) behind one interface, two backends.

``p̂_t = g_text([·, ·], p)``: the image prompt is the horizontal concatenation of the current canvas
and the target, ``p`` the chapter's question verbatim (``datamodules.painting_timelapse.INSTRUCTION_PROMPT``:
"... The left image is an intermediate stage in a painting process of the right image. ..."),
the answer a short instruction ("sky", "clouds", "mountain", ...). Image order: Eq. 6.2 writes
``[I_T, I_{t-1}]`` but the question it is asked with puts the intermediate stage on the left, as the
official code does (``[cur | ref]``); the default ``image_order: current_target`` follows the question,
``target_current`` is Eq. 6.2's literal order (:func:`.common.instruction_image`).

Memory (§6.3: LLaVA-1.5-7B, LoRA, batch 16, one A100): ``torch_dtype: bfloat16`` keeps the frozen 7B
weights in bf16 (14.1 GB instead of 28.2 GB), ``gradient_checkpointing: true`` stores one hidden state
per decoder layer instead of every activation. Estimate for batch 16 x ~640 tokens (576 image + prompt):
weights 14.1 GB + LoRA r128 on the LLM's 7 linear layers (320M params, fp32 with AdamW states and grads,
16 B/param) 5.1 GB + checkpointed activations ~2.7 GB + one layer's recompute ~2.5 GB + fp32 logits
1.3 GB, about 26-30 GB; without checkpointing the activations alone are ~45 GB (SDPA) to ~80 GB (eager
attention), which does not fit an 80 GB GPU next to the weights.

Backends (``TextInstructionGenerator(backend=...)``):

* :class:`LlavaInstructionBackend` -- **the paper's method**: LLaVA-1.5 (``LlavaForConditionalGeneration``
  from transformers; ``llava-hf/llava-1.5-7b-hf`` is the HF conversion of ``liuhaotian/llava-v1.5-7b``)
  fine-tuned with LoRA (peft) on the side-by-side prompt and the GT short answers (10 epochs,
  lr 1e-4, batch 16). Loss: next-token cross-entropy on the answer tokens only. A tiny random-weight
  LLaVA config (``model_config``) with a word-level tokenizer stand-in exercises the same code path on
  CPU (it tests the code, not the paper's numbers).
* :class:`ClosedVocabularyInstructionClassifier` -- **a stand-in, not the paper's method**: a small
  CNN over the same side-by-side image classifying into a closed vocabulary of instructions
  (for CPU runs and the embedded procedural paintings, whose instructions are region labels).
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from datamodules.paintings import PAINTING_VOCABULARY
from datamodules.painting_timelapse import INSTRUCTION_PROMPT

from lightning_modules.components.frozen_parts import FrozenPartsModule
from lightning_modules.components.predict_outputs import PredictOutputsMixin, names_of

from .common import IMAGE_ORDERS, instruction_image

LLAVA_SOURCE = "LLaVA-1.5-7B in HF format, huggingface.co/llava-hf/llava-1.5-7b-hf (conversion of liuhaotian/llava-v1.5-7b)"


class InstructionBackend(nn.Module):
    """Interface: ``loss(target, canvas, answers)`` for training, ``generate(target, canvas)`` -> strings."""

    is_stand_in = False

    def loss(self, target: Tensor, canvas: Tensor, answers: Sequence[str]) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def generate(self, target: Tensor, canvas: Tensor) -> list[str]:  # pragma: no cover - interface
        raise NotImplementedError


class ClosedVocabularyInstructionClassifier(InstructionBackend):
    """STAND-IN (not the paper's method): CNN over ``[I_{t-1} | I_T]`` (``image_order``) -> one of ``vocabulary``.

    ``vocabulary[0]`` is never predicted when it is ``"none"`` (the white canvas' label).
    """

    is_stand_in = True

    def __init__(self, vocabulary: Sequence[str] = PAINTING_VOCABULARY, image_size: int = 64, width: int = 32,
                 image_order: str = "current_target") -> None:
        super().__init__()
        if image_order not in IMAGE_ORDERS:
            raise ValueError(f"image_order must be one of {list(IMAGE_ORDERS)}, got {image_order!r}")
        self.image_order = image_order
        self.vocabulary = tuple(vocabulary)
        self.image_size = int(image_size)
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GroupNorm(min(8, out), out), nn.SiLU()]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, len(self.vocabulary))

    def logits(self, target: Tensor, canvas: Tensor) -> Tensor:
        image = F.interpolate(instruction_image(target, canvas, self.image_order).float(), size=(self.image_size, 2 * self.image_size), mode="bilinear", align_corners=False)
        logits = self.head(self.features(image))
        if self.vocabulary[0] == "none":
            logits = logits.clone()
            logits[:, 0] = float("-inf")
        return logits

    def loss(self, target: Tensor, canvas: Tensor, answers: Sequence[str]) -> Tensor:
        labels = torch.tensor([self.vocabulary.index(a) if a in self.vocabulary and a != "none" else -100 for a in answers], device=target.device)
        logits = self.logits(target, canvas)
        if (labels < 0).all():
            return logits.sum() * 0.0
        return F.cross_entropy(logits, labels, ignore_index=-100)

    @torch.no_grad()
    def generate(self, target: Tensor, canvas: Tensor) -> list[str]:
        return [self.vocabulary[i] for i in self.logits(target, canvas).argmax(1).tolist()]


class WordTokenizer:
    """Stand-in tokenizer for the tiny random LLaVA: known words get their own id, others a hash bucket.

    Ids: 0 pad, 1 bos, 2 eos, 3 the image token, then ``words``, then ``buckets`` hashed ids.
    """

    PAD, BOS, EOS, IMAGE = 0, 1, 2, 3

    def __init__(self, words: Sequence[str], vocab_size: int) -> None:
        self.words = list(dict.fromkeys(words))
        self.offset = 4
        self.buckets = vocab_size - self.offset - len(self.words)
        if self.buckets < 1:
            raise ValueError(f"vocab_size {vocab_size} too small for {len(self.words)} words")
        self.index = {w: self.offset + i for i, w in enumerate(self.words)}

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in text.lower().replace("?", " ?").replace(".", " .").split():
            if word in self.index:
                ids.append(self.index[word])
            else:
                h = int.from_bytes(hashlib.sha1(word.encode()).digest()[:4], "little")
                ids.append(self.offset + len(self.words) + h % self.buckets)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            if i == self.EOS:
                break
            if self.offset <= i < self.offset + len(self.words):
                out.append(self.words[i - self.offset])
        return " ".join(out)


class LlavaInstructionBackend(InstructionBackend):
    """The paper's ``g_text``: LLaVA-1.5 + LoRA (peft) on the side-by-side image prompt (§6.3).

    Args:
        model_path: HF-format LLaVA-1.5 folder (``config.json``, weights, processor files); ``null``
            builds ``LlavaForConditionalGeneration`` with random weights from ``model_config``
            (``{vision_config: ..., text_config: ...}``) and the :class:`WordTokenizer` stand-in.
        lora: peft ``LoraConfig`` arguments (``r``, ``lora_alpha``, ``lora_dropout``,
            ``target_modules``); ``null`` trains no adapter (inference with a merged model).
        prompt: the question ``p`` (default the chapter's, verbatim).
        image_order: ``"current_target"`` (``[I_{t-1} | I_T]``, as the question reads; default) or
            ``"target_current"`` (Eq. 6.2's literal order).
        max_new_tokens: greedy decoding length (answers have < 2 words).
        vocabulary: words the stand-in tokenizer knows (tiny config only).
        torch_dtype: dtype of the loaded LLaVA weights (``"bfloat16"`` for the 7B model on one GPU;
            ``null`` = float32). LoRA adapters stay float32 (peft's default adapter upcast).
        gradient_checkpointing: recompute the language model's (and vision tower's) activations in
            the backward pass (non-reentrant), for batch 16 within one 80 GB GPU.
    """

    def __init__(
        self,
        model_path: Optional[str] = None,
        model_config: Optional[dict] = None,
        lora: Optional[dict] = None,
        prompt: str = INSTRUCTION_PROMPT,
        image_order: str = "current_target",
        max_new_tokens: int = 4,
        vocabulary: Sequence[str] = PAINTING_VOCABULARY,
        torch_dtype: Optional[str] = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        from transformers import LlavaConfig, LlavaForConditionalGeneration

        if image_order not in IMAGE_ORDERS:
            raise ValueError(f"model.init_args.backend.init_args.image_order must be one of {list(IMAGE_ORDERS)}, got {image_order!r}")
        dtype = None
        if torch_dtype is not None:
            dtype = getattr(torch, str(torch_dtype), None)
            if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
                raise ValueError(f"model.init_args.backend.init_args.torch_dtype: {torch_dtype!r} is not a torch floating dtype "
                                 "(bfloat16, float16, float32)")
        self.image_order, self.torch_dtype, self.model_path, self.lora = image_order, dtype, model_path, lora
        self.prompt, self.max_new_tokens = prompt, int(max_new_tokens)
        if model_path is None:
            if model_config is None:
                raise ValueError("model.init_args.backend.init_args.model_path is null and no model_config was given")
            config = LlavaConfig(**dict(model_config))
            model = LlavaForConditionalGeneration(config)
            if dtype is not None:
                model = model.to(dtype)
            words = list(vocabulary) + prompt.lower().replace("?", " ?").replace(".", " .").split() + ["user:", "assistant:"]
            self.tokenizer: Any = WordTokenizer(words, config.text_config.vocab_size)
            self.processor = None
            config.image_token_index = WordTokenizer.IMAGE
        else:
            from transformers import AutoProcessor

            from lightning_modules.components.pretrained_paths import require_files

            root = require_files(model_path, "model.init_args.backend.init_args.model_path", ["config.json"], LLAVA_SOURCE)
            model = LlavaForConditionalGeneration.from_pretrained(str(root), local_files_only=True,
                                                                  **({"torch_dtype": dtype} if dtype is not None else {}))
            self.processor = AutoProcessor.from_pretrained(str(root), local_files_only=True)
            self.tokenizer = self.processor.tokenizer
        self.image_token = int(model.config.image_token_index)
        vision = model.config.vision_config
        self.image_size = int(vision.image_size)
        tokens = (self.image_size // int(vision.patch_size)) ** 2
        self.num_image_tokens = tokens + (1 if model.config.vision_feature_select_strategy == "full" else 0)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        self.gradient_checkpointing = bool(gradient_checkpointing)
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(**dict(lora)))
        self.model = model
        self.register_buffer("mean", torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1), persistent=False)

    # -- inputs ----------------------------------------------------------------------------
    def pixel_values(self, target: Tensor, canvas: Tensor) -> Tensor:
        """The pair image (``image_order``) padded to a square with the CLIP mean colour (LLaVA-1.5's
        ``image_aspect_ratio: pad``, ``expand2square`` with the processor's mean as background), CLIP-normalised."""
        image = instruction_image(target, canvas, self.image_order).float()
        b, _, h, w = image.shape
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        square = (self.mean * 2 - 1).to(image).expand(b, 3, side, side).clone()
        square[..., top : top + h, left : left + w] = image
        image = F.interpolate(square, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        pixels = ((image + 1) / 2 - self.mean) / self.std
        return pixels if self.torch_dtype is None else pixels.to(self.torch_dtype)

    def _text_ids(self, text: str) -> list[int]:
        if isinstance(self.tokenizer, WordTokenizer):
            return self.tokenizer.encode(text)
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _bos(self) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token_id", None) if not isinstance(self.tokenizer, WordTokenizer) else WordTokenizer.BOS
        return [bos] if bos is not None else []

    def _eos(self) -> int:
        return WordTokenizer.EOS if isinstance(self.tokenizer, WordTokenizer) else int(self.tokenizer.eos_token_id)

    def prompt_ids(self) -> list[int]:
        """``USER: <image>\\n{p} ASSISTANT:`` with the image token repeated once per visual token."""
        return (
            self._bos() + self._text_ids("USER:") + [self.image_token] * self.num_image_tokens
            + self._text_ids("\n" + self.prompt + " ASSISTANT:")
        )

    def loss(self, target: Tensor, canvas: Tensor, answers: Sequence[str]) -> Tensor:
        prompt = self.prompt_ids()
        rows, labels = [], []
        for answer in answers:
            answer_ids = self._text_ids(" " + answer) + [self._eos()]
            rows.append(prompt + answer_ids)
            labels.append([-100] * len(prompt) + answer_ids)
        length = max(len(r) for r in rows)
        pad = 0
        ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], device=target.device)
        lab = torch.tensor([l + [-100] * (length - len(l)) for l in labels], device=target.device)
        attention = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], device=target.device)
        out = self.model(input_ids=ids, pixel_values=self.pixel_values(target, canvas), attention_mask=attention, labels=lab)
        return out.loss

    @torch.no_grad()
    def generate(self, target: Tensor, canvas: Tensor) -> list[str]:
        """Greedy decoding of at most ``max_new_tokens`` tokens (stops at EOS)."""
        b = target.shape[0]
        ids = torch.tensor([self.prompt_ids()] * b, device=target.device)
        pixels = self.pixel_values(target, canvas)
        eos = self._eos()
        generated = [[] for _ in range(b)]
        done = torch.zeros(b, dtype=torch.bool, device=target.device)
        for _ in range(self.max_new_tokens):
            logits = self.model(input_ids=ids, pixel_values=pixels).logits[:, -1]
            logits[:, self.image_token] = float("-inf")
            nxt = logits.argmax(-1)
            for i, token in enumerate(nxt.tolist()):
                if not done[i]:
                    generated[i].append(token)
            done |= nxt == eos
            if bool(done.all()):
                break
            ids = torch.cat([ids, nxt[:, None]], dim=1)
        if isinstance(self.tokenizer, WordTokenizer):
            return [self.tokenizer.decode(g) for g in generated]
        return [self.tokenizer.decode([t for t in g if t != eos], skip_special_tokens=True).strip() for g in generated]


class TextInstructionGenerator(PredictOutputsMixin, FrozenPartsModule):
    """``g_text`` as a LightningModule (``configs/inverse_painting_text.yaml``): trains / runs a backend.

    Batches: ``target``, ``canvas`` and the GT instruction ``text`` of the next step.
    """

    def __init__(self, backend: InstructionBackend, optimizer: OptimizerCallable = torch.optim.AdamW,
                 method_name: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backend"])
        self.backend = backend
        self.optimizer_factory = optimizer
        self.method_name = method_name
        # a pretrained LLaVA used as it is (no LoRA to train: the §6.9 "pretrained LLaVA" baseline) needs no checkpoint
        self.loads_own_weights = bool(getattr(backend, "model_path", None) and getattr(backend, "lora", None) is None)

    @property
    def is_stand_in(self) -> bool:
        return bool(self.backend.is_stand_in)

    @property
    def uses_random_weights(self) -> bool:
        """A stand-in backend or a LLaVA built from ``model_config`` (no ``model_path``): rows say weights: random."""
        return bool(self.backend.is_stand_in or getattr(self.backend, "model_path", None) is None)

    def configure_optimizers(self) -> Any:
        return self.optimizer_factory(self.trainable_parameters())

    def _frozen_backbone_keys(self, prefix: str = "") -> set[str]:
        """Pretrained backbone weights that LoRA leaves frozen: not saved (they come from ``model_path``)."""
        if not isinstance(self.backend, LlavaInstructionBackend):
            return set()
        return {f"{prefix}backend.{n}" for n, p in self.backend.named_parameters() if not p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        frozen = self._frozen_backbone_keys()
        state = checkpoint["state_dict"]
        for key in [k for k in state if k in frozen]:
            del state[key]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        result = nn.Module.load_state_dict(self, state_dict, strict=False, assign=assign)
        frozen = self._frozen_backbone_keys() | {k for k in result.missing_keys if k.startswith(self._frozen_prefixes() or ("\0",))}
        missing = [k for k in result.missing_keys if k not in frozen]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"TextInstructionGenerator: checkpoint does not fit; missing {missing[:10]}, unexpected {result.unexpected_keys[:10]}")
        return result

    def loss(self, batch: Mapping[str, Any]) -> Tensor:
        return self.backend.loss(batch["target"], batch["canvas"], list(batch["text"]))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["canvas"].shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        predicted = self.generate(batch["target"], batch["canvas"])
        accuracy = sum(p == t for p, t in zip(predicted, batch["text"])) / max(len(predicted), 1)
        b = batch["canvas"].shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=b, sync_dist=True)
        self.log("val/accuracy", float(accuracy), batch_size=b, sync_dist=True)
        return loss

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self.log("test/loss", loss, batch_size=batch["canvas"].shape[0], sync_dist=True)
        return loss

    @torch.no_grad()
    def generate(self, target: Tensor, canvas: Tensor) -> list[str]:
        """``p̂_t`` for each item (§6.6 step 1)."""
        was_training = self.backend.training
        self.backend.eval()
        try:
            return self.backend.generate(target, canvas)
        finally:
            self.backend.train(was_training)

    #: no sampler: Lightning's batch progress bar stays
    predict_counts_sampler_steps = False

    def method_label(self) -> str:
        """The rows' method in ``paper_numbers.yaml`` "Sec. 6.3 text: instruction generators" (``method_name`` overrides)."""
        if self.method_name:
            return self.method_name
        return "Text generator (stand-in classifier, not the paper's)" if self.is_stand_in else "Text generator (ours)"

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Any], **_: Any) -> list[str]:
        """``p̂_t`` for each GT pair (GT current canvas): the §6.9 single-update analysis, scored by
        ``InstructionAccuracy`` through the EvaluationCallback (``per_batch_generation``)."""
        return self.generate(batch["target"], batch["canvas"])

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """``p̂_t`` for each painting of a ``predict`` batch (``target`` + ``canvas``, white unless
        ``predict_canvases``): one ``<name>.txt`` per input, the instruction also in ``manifest.json``."""
        answers = self.generate(batch["target"], batch["canvas"])
        writer = self.prediction_writer("instructions", {"module": type(self).__name__, "backend": type(self.backend).__name__,
                                                         "stand_in": self.is_stand_in})
        for i, name in enumerate(names_of(batch, batch_idx, len(answers))):
            path = writer.path_for(name, ext=".txt")
            path.write_text(answers[i] + "\n")
            source = batch["path"][i] if "path" in batch else f"predict split, batch {batch_idx} item {i}"
            writer.record(source, [path], instruction=answers[i])
