"""rhvae: the Riemannian Hamiltonian VAE on PyTorch and JAX through one plugin registry."""

from rhvae.errors import (
    BackendUnavailableError,
    BadBatchError,
    ComponentError,
    DuplicateComponentError,
    DuplicatePluginError,
    InputError,
    InputTypeError,
    PluginLoadError,
    ProtocolError,
    RhvaeError,
    TrainingDivergedError,
    TrainingInterrupted,
    UnknownComponentError,
)
from rhvae.hookspecs import hookimpl
from rhvae.model import RHVAE
from rhvae.registry import Registry, get_registry
from rhvae.state import Noise, TrainState

load = RHVAE.from_checkpoint

__version__ = "0.3.0"
__all__ = [
    "BackendUnavailableError",
    "BadBatchError",
    "ComponentError",
    "DuplicateComponentError",
    "DuplicatePluginError",
    "InputError",
    "InputTypeError",
    "PluginLoadError",
    "ProtocolError",
    "Noise",
    "RHVAE",
    "Registry",
    "RhvaeError",
    "TrainState",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "UnknownComponentError",
    "__version__",
    "get_registry",
    "hookimpl",
    "load",
]
