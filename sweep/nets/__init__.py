"""Networks: the architecture contract and registry (``contract``), one family per module (``mlp``,
``resnet``), the activations (``activations``), initialisers, normalisation layers, and what the engine
derives from any architecture (``forward``, ``block_jacobian``)."""

from sweep.nets.contract import (
    Architecture,
    ArchitectureError,
    NewField,
    Spec,
    architecture_names,
    register_architecture,
    resolve,
)

__all__ = [
    "Architecture",
    "ArchitectureError",
    "NewField",
    "Spec",
    "architecture_names",
    "register_architecture",
    "resolve",
]
