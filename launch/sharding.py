"""FSDP2 sharding for the suite's networks.

Lightning's ``strategy="fsdp"`` (FSDP1) refuses the CPU and wraps modules from
outside. The FSDP2 path used here instead is ``ModelParallelStrategy`` plus
``torch.distributed.fsdp.fully_shard`` called from the module's
``configure_model()``; it runs on CPU (gloo) and GPU alike and saves distributed
checkpoints. A ``DiffusionModule`` only needs::

    def configure_model(self):
        from launch.sharding import shard_for_strategy
        shard_for_strategy(self)            # no-op unless the strategy is ModelParallel

Sharding plan: every block (each child of every ``nn.ModuleList`` in the network,
or each instance of the given ``layer_classes``) becomes its own FSDP unit, so its
parameters are gathered just for its forward/backward, then the network root
holds the rest (embeddings, heads). Frozen parts (VAE, encoders) are not sharded
by ``shard_for_strategy``: they are not part of ``module.network`` and stay
replicated, which is what their inference-only use wants.

torch is imported inside the functions so ``launch.slurm`` stays stdlib-only.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional, Union


def _matches(module: Any, layer_classes: Iterable[Union[type, str]]) -> bool:
    for cls in layer_classes:
        if isinstance(cls, str):
            if type(module).__name__ == cls:
                return True
        elif isinstance(module, cls):
            return True
    return False


def default_units(root: Any, layer_classes: Optional[Iterable[Union[type, str]]] = None) -> list[Any]:
    """The submodules that become separate FSDP units, outermost first, root excluded."""
    from torch import nn

    units: list[Any] = []
    seen: set[int] = set()
    for _, sub in root.named_modules():
        if sub is root:
            continue
        if layer_classes is not None:
            if _matches(sub, list(layer_classes)) and id(sub) not in seen:
                units.append(sub)
                seen.add(id(sub))
        elif isinstance(sub, nn.ModuleList):
            for block in sub:
                if id(block) not in seen and any(True for _ in block.parameters()):
                    units.append(block)
                    seen.add(id(block))
    return units


def is_fsdp2(module: Any) -> bool:
    """Whether ``fully_shard`` was already applied to ``module``."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch < 2.6
        return False
    return isinstance(module, FSDPModule)


def shard_module_fsdp2(
    module: Any,
    mesh: Any = None,
    *,
    layer_classes: Optional[Iterable[Union[type, str]]] = None,
    reshard_after_forward: bool = True,
    param_dtype: Any = None,
    reduce_dtype: Any = None,
    cpu_offload: bool = False,
) -> Any:
    """Apply FSDP2 ``fully_shard`` to the blocks of ``module`` and then to ``module`` itself.

    Args:
        module: the network to shard in place (returned for convenience).
        mesh: a 1-D ``DeviceMesh`` over the data-parallel ranks (``None``: all ranks).
        layer_classes: classes (or class names) whose instances become FSDP units; default: the children
            of every ``nn.ModuleList``.
        reshard_after_forward: free gathered parameters after forward (ZeRO-3); ``False`` keeps them
            until backward (ZeRO-2-like, more memory, less communication).
        param_dtype / reduce_dtype: FSDP2 ``MixedPrecisionPolicy`` dtypes (``None``: the parameters' dtype).
        cpu_offload: keep the sharded parameters on the CPU between uses.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    if is_fsdp2(module):
        return module
    kwargs: dict[str, Any] = {"reshard_after_forward": reshard_after_forward}
    if mesh is not None:
        kwargs["mesh"] = mesh
    if param_dtype is not None or reduce_dtype is not None:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    if cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    # innermost first: fully_shard on a block whose child was already sharded is fine, the other
    # way round the child's parameters are DTensors already (nested ModuleLists, e.g. diffusers UNets)
    for unit in reversed(default_units(module, layer_classes)):
        if not is_fsdp2(unit):
            fully_shard(unit, **kwargs)
    fully_shard(module, **kwargs)
    return module


def shard_for_strategy(pl_module: Any, attribute: str = "network", **kwargs: Any) -> bool:
    """Shard ``pl_module.<attribute>`` with FSDP2 when the trainer's strategy is ``ModelParallelStrategy``.

    Call from ``configure_model()``. Returns whether it sharded. Uses the strategy's
    ``"data_parallel"`` mesh dimension; tensor parallelism (if any) must be applied before.
    """
    trainer = getattr(pl_module, "_trainer", None)
    if trainer is None:
        return False
    from lightning.pytorch.strategies import ModelParallelStrategy

    if not isinstance(trainer.strategy, ModelParallelStrategy):
        return False
    mesh = trainer.strategy.device_mesh
    dp_mesh = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
    network = pl_module
    for part in attribute.split("."):
        network = getattr(network, part)
    shard_module_fsdp2(network, dp_mesh, **kwargs)
    return True
