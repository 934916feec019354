"""Bi-Noising diffusion (thesis 001 Ch. 8): conditional restoration regularised by an unconditional prior."""
from lightning_modules.bi_noising.evaluation import BiNoisingEvaluationCallback
from lightning_modules.bi_noising.module import BiNoisingRestoration
from lightning_modules.bi_noising.networks import ConditionalADMUNet, EpsilonOnly, load_prior_weights

__all__ = ["BiNoisingEvaluationCallback", "BiNoisingRestoration", "ConditionalADMUNet", "EpsilonOnly", "load_prior_weights"]
