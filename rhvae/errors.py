"""The exceptions rhvae raises; each also derives from the builtin a caller would expect."""

from __future__ import annotations


class RhvaeError(Exception):
    """Base class of every rhvae error; the CLI prints these as one line, exit code 2."""


class InputError(RhvaeError, ValueError):
    """A bad value given to rhvae: an argument, data, a configuration field, a device; the message
    names it, what was expected and what arrived. The command line prints it as one line."""


class InputTypeError(RhvaeError, TypeError):
    """An argument of the wrong type; the message names it, what was expected and what arrived."""


class PluginLoadError(RhvaeError, ImportError):
    """A plugin or a lazy component factory failed to import; the original error is ``__cause__``."""


class DuplicatePluginError(RhvaeError, ValueError):
    """Two distributions declare the same plugin (entry-point) name."""


class DuplicateComponentError(RhvaeError, ValueError):
    """Two plugins register the same ``(kind, name)``."""


class UnknownComponentError(RhvaeError, ValueError, LookupError):
    """No component of that kind is registered under that name."""


class BackendUnavailableError(RhvaeError, ValueError):
    """A component restricted to some backends was requested for another one."""


class ProtocolError(RhvaeError, TypeError):
    """An object lacks members of the Protocol of its component kind."""


class ComponentError(RhvaeError, ValueError):
    """A component returned the wrong shape, dtype or non-finite values on the probe batch a model
    runs when it is built; the message names the component and the plugin that registered it."""


class TrainingDivergedError(RhvaeError, FloatingPointError):
    """The loss became NaN or infinite during ``fit``; ``state`` is the last state whose loss was
    measured finite (``finite`` is True), or, when the first step of the ``fit`` call already
    failed, the state ``fit`` started from (``finite`` is False: its loss is the non-finite one).
    ``history`` is the history up to it (``loss`` includes the finite steps of the failing epoch)."""

    def __init__(self, epoch: int, step: int, loss: float, state: object, history: dict | None = None,
                 finite: bool = True) -> None:
        kept = "the last state with a finite loss" if finite else "the starting state (its first step failed)"
        super().__init__(
            f"the loss became {loss} at epoch {epoch + 1}, step {step}; {kept} is attached as .state "
            f"(try a smaller eps or learning_rate, or a larger lam)"
        )
        self.epoch, self.step, self.loss, self.state, self.finite = epoch, step, loss, state, finite
        self.history = history if history is not None else {}


class BadBatchError(RhvaeError, ValueError):
    """``fit`` met rows it cannot train on (NaN or infinite values, targets outside the likelihood's
    support) in a source read batch by batch (a memory-mapped file); ``state`` is the state after
    the last good step, so no progress is lost, and ``history`` the history up to it."""

    def __init__(self, epoch: int, step: int, problem: str, state: object, history: dict | None = None) -> None:
        super().__init__(f"epoch {epoch + 1}, step {step}: {problem}; the state after the last good step is "
                         f"attached as .state (clean or drop those rows, then continue fit from it)")
        self.epoch, self.step, self.problem, self.state = epoch, step, problem, state
        self.history = history if history is not None else {}


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (``KeyboardInterrupt``) during ``fit``; ``state`` is the state after the last completed
    step and ``history`` the history up to it, so nothing done before the interruption is lost.
    Only a ``KeyboardInterrupt`` (not an ``Exception``, not a ``RhvaeError``): ``except Exception``
    does not swallow it, and it still ends a program that does not catch it."""

    def __init__(self, epoch: int, step: int, state: object, history: dict | None = None) -> None:
        super().__init__(f"interrupted during epoch {epoch + 1}, before step {step}; the state after the last "
                         f"completed step is attached as .state")
        self.epoch, self.step, self.state = epoch, step, state
        self.history = history if history is not None else {}
