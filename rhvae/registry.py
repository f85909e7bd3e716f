"""The component registry that plugins fill through ``rhvae_register(registry)``, and its loader.

Components are keyed ``(kind, name)`` and remember the plugin, distribution and version that
registered them, so every error can say where a component came from. Everything (built-ins,
backends, third parties) arrives through the ``rhvae`` entry-point group; :func:`get_registry`
loads it once, on first use. Two environment variables steer the loader:

- ``RHVAE_DISABLE_PLUGIN_AUTOLOAD=1``: load only the entry points of the ``rhvae`` distribution
  itself (built-ins and backends), no third-party plugin;
- ``RHVAE_BLOCK_PLUGINS=a,b``: skip the plugins (entry-point names) ``a`` and ``b``.

This module imports neither torch nor jax: factories are callables or lazy ``"module:attr"``
strings, imported only when a component is resolved.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from rhvae import hookspecs
from rhvae.errors import (
    BackendUnavailableError,
    DuplicateComponentError,
    DuplicatePluginError,
    InputError,
    InputTypeError,
    PluginLoadError,
    ProtocolError,
    RhvaeError,
    UnknownComponentError,
)
from rhvae.interfaces import PROTOCOLS, protocol_violations

KINDS: tuple[str, ...] = tuple(PROTOCOLS)
"""The component kinds, in display order."""

ENTRY_POINT_GROUP = "rhvae"
OWN_DISTRIBUTION = "rhvae"
"""The distribution whose entry points still load under ``RHVAE_DISABLE_PLUGIN_AUTOLOAD``."""
DISABLE_AUTOLOAD_ENV = "RHVAE_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_PLUGINS_ENV = "RHVAE_BLOCK_PLUGINS"
LOCAL = "<local>"
"""Plugin and distribution of components added outside any plugin's hook."""

Factory = Callable[..., Any]


_RECIPES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _remember(obj: Any, kind: str, name: str, kwargs: dict) -> None:
    """Record ``(kind, name, kwargs)`` for ``obj`` when the keyword arguments are plain JSON."""
    try:
        plain = json.loads(json.dumps(kwargs))
        _RECIPES[obj] = {"kind": kind, "name": name, "kwargs": plain}
    except (TypeError, ValueError):  # not JSON-able arguments, or an object without weak references
        pass


def recipe(obj: Any) -> dict | None:
    """``{"kind", "name", "kwargs"}`` that :meth:`Registry.create` made ``obj`` from (``kwargs`` as
    JSON: tuples became lists), or ``None`` for an object built any other way."""
    try:
        return _RECIPES.get(obj)
    except TypeError:
        return None


def _source(distribution: str, version: str) -> str:
    return f"{distribution} {version}".rstrip()


@dataclass(frozen=True)
class ComponentSpec:
    """One registered component: where it came from and how to build it.

    ``factory`` is a callable or a lazy ``"module:attr"`` string; ``backends=None`` marks a
    neutral component (written over ``B.xp``), available on every backend.
    """

    kind: str
    name: str
    factory: Factory | str
    backends: tuple[str, ...] | None = None
    doc: str = ""
    plugin: str = LOCAL
    distribution: str = LOCAL
    version: str = ""

    @property
    def source(self) -> str:
        """``"distribution version"``, as error messages cite it."""
        return _source(self.distribution, self.version)

    def available_on(self, backend: str) -> bool:
        """Whether the component can be used with ``backend``."""
        return self.backends is None or backend in self.backends

    def load(self) -> Factory:
        """The factory, importing a lazy ``"module:attr"`` string; failures raise ``PluginLoadError``."""
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        where = f"{self.kind} {self.name!r} (plugin {self.plugin!r} from {self.source})"
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise PluginLoadError(
                f"cannot load {where}: importing {self.factory!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(obj):
            raise PluginLoadError(f"cannot load {where}: {self.factory!r} is a {type(obj).__name__}, not a callable")
        return obj


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin (entry-point name), its distribution and the components it added."""

    name: str
    distribution: str
    version: str
    components: tuple[ComponentSpec, ...]


def _is_lazy_reference(factory: str) -> bool:
    module_name, colon, attr = factory.partition(":")
    parts = [*module_name.split("."), *attr.split(".")]
    return bool(colon) and all(part.isidentifier() for part in parts)


def _check_backends(kind: str, name: str, backends: Any) -> tuple[str, ...] | None:
    if backends is None:
        return None
    if not isinstance(backends, (tuple, list)) or not all(isinstance(b, str) and b for b in backends):
        raise InputTypeError(
            f"backends of {kind} {name!r} must be None (every backend) or a tuple of backend names, got {backends!r}"
        )
    if not backends:
        raise InputError(f"backends of {kind} {name!r} is empty; pass None for a component neutral to every backend")
    return tuple(backends)


class Registry:
    """Components keyed ``(kind, name)``, and the pluggy plugins that registered them.

    ``Registry()`` is empty (hermetic, for tests); :meth:`from_entry_points` loads the plugins.
    """

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.NAME)
        self._pm.add_hookspecs(hookspecs)
        self._specs: dict[tuple[str, str], ComponentSpec] = {}
        self._plugins: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self._current: tuple[str, str, str] = (LOCAL, LOCAL, "")  # who is registering now
        self.broken: dict[str, PluginLoadError] = {}
        """Plugins skipped because they failed to load (``strict=False``): name -> the error."""

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP, *, strict: bool = True) -> Registry:
        """A registry holding every plugin of the entry-point ``group`` (see :func:`load_entry_points`)."""
        registry = cls()
        load_entry_points(registry, group, strict=strict)
        return registry

    # -- components ---------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        name: str,
        factory: Factory | str,
        *,
        backends: tuple[str, ...] | list[str] | None = None,
        doc: str = "",
    ) -> ComponentSpec:
        """Register ``factory`` as the ``kind`` component ``name``, attributed to the current plugin."""
        self._check_kind(kind)
        if not isinstance(name, str) or not name.isidentifier():
            raise InputError(f"{kind} name {name!r} is not a Python identifier (e.g. 'student_t')")
        if not (callable(factory) or (isinstance(factory, str) and _is_lazy_reference(factory))):
            raise InputTypeError(f"factory of {kind} {name!r} must be a callable or a 'module:attr' string, got {factory!r}")
        plugin, distribution, version = self._current
        spec = ComponentSpec(
            kind, name, factory, _check_backends(kind, name, backends), doc, plugin, distribution, version
        )
        existing = self._specs.get((kind, name))
        if existing is not None:
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice: by {existing.source} (plugin {existing.plugin!r}) "
                f"and by {spec.source} (plugin {spec.plugin!r})"
            )
        self._specs[(kind, name)] = spec
        return spec

    def get(self, kind: str, name: str) -> ComponentSpec:
        """The spec of ``(kind, name)``; an unknown name raises ``UnknownComponentError`` with close matches."""
        self._check_kind(kind)
        spec = self._specs.get((kind, name))
        if spec is None:
            raise UnknownComponentError(self._unknown_message(kind, name))
        return spec

    def resolve(self, kind: str, name: str, backend: str | None = None) -> Factory:
        """The loaded factory of ``(kind, name)``, checking that it is available on ``backend``."""
        spec = self.get(kind, name)
        if backend is not None and not spec.available_on(backend):
            raise BackendUnavailableError(
                f"{kind} {name!r} has no {backend} implementation (available: {', '.join(spec.backends or ())})"
            )
        return spec.load()

    def create(self, kind: str, name: str, backend: str | None = None, **kwargs: Any) -> Any:
        """``factory(**kwargs)`` for ``(kind, name)``, validated against the Protocol of ``kind``.

        The object remembers how it was made (:func:`recipe`), so a checkpoint can rebuild it.
        """
        obj = self.validate(kind, self.resolve(kind, name, backend)(**kwargs))
        _remember(obj, kind, name, kwargs)
        return obj

    def validate(self, kind: str, obj: Any) -> Any:
        """``obj`` itself if it has every member of the Protocol of ``kind``, else ``ProtocolError``."""
        self._check_kind(kind)
        missing = protocol_violations(kind, obj)
        if missing:
            label = getattr(obj, "__name__", type(obj).__name__)
            raise ProtocolError(
                f"{kind} object {label} does not satisfy the {PROTOCOLS[kind].__name__} protocol: "
                f"missing {', '.join(missing)}"
            )
        return obj

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted."""
        self._check_kind(kind)
        return sorted(name for k, name in self._specs if k == kind)

    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        """The specs of ``kind`` (of every kind if None), ordered by kind then name."""
        if kind is not None:
            self._check_kind(kind)
        selected = [s for s in self._specs.values() if kind is None or s.kind == kind]
        return sorted(selected, key=lambda s: (KINDS.index(s.kind), s.name))

    # -- plugins ------------------------------------------------------------------------------

    def has_plugin(self, name: str) -> bool:
        """Whether a plugin is registered under ``name``."""
        return name in self._plugins

    def plugins(self) -> list[PluginInfo]:
        """The registered plugins in registration order, then ``<local>`` if components were added directly."""
        infos = [self._plugin_info(name) for name in self._plugins]
        local = self._plugin_info(LOCAL)
        return infos + [local] if local.components else infos

    def register_plugin(
        self, plugin: object, name: str, *, distribution: str = LOCAL, version: str = ""
    ) -> PluginInfo | None:
        """Register ``plugin`` (a module or object with an ``@rhvae.hookimpl rhvae_register``) and run its hook.

        Components it adds are attributed to ``name`` and ``distribution`` ``version``. Returns None,
        registering nothing, if ``name`` is blocked. On error the registry is left unchanged.
        """
        source = _source(distribution, version)
        if name in self._plugins:
            raise DuplicatePluginError(
                f"plugin {name!r} is provided by both {_source(*self._plugins[name])} and {source}"
            )
        other = self._pm.get_name(plugin)
        if other is not None:
            raise DuplicatePluginError(
                f"plugin {name!r} from {source} is the object already registered as plugin {other!r} "
                f"from {_source(*self._plugins[other])}"
            )
        if self._pm.is_blocked(name):
            return None
        try:
            self._pm.register(plugin, name)
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self._pm.get_plugin(name) is not None:  # pluggy may register before it validates
                self._pm.unregister(name=name)
            raise PluginLoadError(f"plugin {name!r} from {source} is not a valid rhvae plugin: {exc}") from exc
        self._plugins[name] = (distribution, version)
        impls = [impl for impl in self._pm.hook.rhvae_register.get_hookimpls() if impl.plugin_name == name]
        previous, self._current = self._current, (name, distribution, version)
        try:
            if not impls and hasattr(plugin, "rhvae_register"):
                raise PluginLoadError(f"plugin {name!r} from {source} defines rhvae_register without @rhvae.hookimpl")
            hook_kwargs = {"registry": self}
            for impl in impls:
                impl.function(**{arg: hook_kwargs[arg] for arg in impl.argnames})
        except Exception as exc:
            self.unregister_plugin(name)
            if isinstance(exc, (DuplicateComponentError, PluginLoadError)):  # these name the plugin already
                raise
            raise PluginLoadError(
                f"plugin {name!r} from {source} failed in rhvae_register: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self._current = previous
        return self._plugin_info(name)

    def unregister_plugin(self, name: str) -> None:
        """Remove plugin ``name`` and every component it registered."""
        if name not in self._plugins:
            raise InputError(f"no plugin {name!r} is registered; registered: {', '.join(self._plugins) or 'none'}")
        self._pm.unregister(name=name)
        del self._plugins[name]
        self._specs = {key: spec for key, spec in self._specs.items() if spec.plugin != name}

    @contextmanager
    def temporary_plugin(
        self, plugin: object, name: str, *, distribution: str = LOCAL, version: str = ""
    ) -> Iterator[PluginInfo | None]:
        """Register ``plugin`` for the duration of a ``with`` block (tests: register, then unregister)."""
        info = self.register_plugin(plugin, name, distribution=distribution, version=version)
        try:
            yield info
        finally:
            if info is not None:
                self.unregister_plugin(name)

    def block_plugin(self, name: str) -> None:
        """Refuse plugin ``name`` from now on, removing it and its components if registered."""
        if name in self._plugins:
            self.unregister_plugin(name)
        self._pm.set_blocked(name)

    def is_blocked(self, name: str) -> bool:
        """Whether plugin ``name`` is blocked."""
        return self._pm.is_blocked(name)

    # -- helpers ------------------------------------------------------------------------------

    def _plugin_info(self, name: str) -> PluginInfo:
        distribution, version = self._plugins.get(name, (LOCAL, ""))
        components = tuple(spec for spec in self.specs() if spec.plugin == name)
        return PluginInfo(name, distribution, version, components)

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in PROTOCOLS:
            close = difflib.get_close_matches(str(kind), KINDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown component kind {kind!r}{hint}; expected one of {', '.join(KINDS)}")

    def _unknown_message(self, kind: str, name: str) -> str:
        names = self.names(kind)
        if not names:
            broken = "; plugins that failed to load: " + "; ".join(str(e) for e in self.broken.values()) \
                if self.broken else ""
            return f"unknown {kind} {name!r}; no {kind} is registered{broken}"
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = ". "
        if close:
            options = " or ".join(f"{c!r} (from {self._specs[(kind, c)].source})" for c in close)
            hint = f"; did you mean {options}? "
        message = f"unknown {kind} {name!r}{hint}Available: {', '.join(names)}"
        if self.broken:
            message += "; plugins that failed to load: " + "; ".join(str(e) for e in self.broken.values())
        return message


def _normalize(distribution: str) -> str:
    return distribution.replace("_", "-").replace(".", "-").lower()


def load_entry_points(registry: Registry, group: str = ENTRY_POINT_GROUP, *, strict: bool = True) -> None:
    """Register every plugin of the entry-point ``group`` in ``registry`` and run its hook.

    Replaces ``PluginManager.load_setuptools_entrypoints``, which silently skips a second entry
    point of the same name: here a duplicate raises ``DuplicatePluginError`` naming both
    distributions, before anything is imported. Honours ``RHVAE_BLOCK_PLUGINS`` and
    ``RHVAE_DISABLE_PLUGIN_AUTOLOAD``. A plugin that fails to import or in its hook raises
    ``PluginLoadError`` chained to the cause; with ``strict=False`` (what :func:`get_registry`
    does) a failing plugin of another distribution than rhvae is instead skipped with a
    ``RuntimeWarning`` and kept in ``registry.broken``, so one broken package does not take the
    others down.
    """
    for name in os.environ.get(BLOCK_PLUGINS_ENV, "").split(","):
        if name.strip():
            registry.block_plugin(name.strip())
    own_only = os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("", "0")
    selected: dict[str, tuple[EntryPoint, str, str]] = {}
    for ep in entry_points(group=group):
        distribution, version = (ep.dist.name, ep.dist.version) if ep.dist else ("<unknown>", "")
        if registry.is_blocked(ep.name) or (own_only and _normalize(distribution) != OWN_DISTRIBUTION):
            continue
        if ep.name in selected:
            _, first, first_version = selected[ep.name]
            raise DuplicatePluginError(
                f"plugin {ep.name!r} (entry point group {group!r}) is declared by both "
                f"{_source(first, first_version)} and {_source(distribution, version)}; uninstall one, "
                f"or set {BLOCK_PLUGINS_ENV}={ep.name} to skip both"
            )
        selected[ep.name] = (ep, distribution, version)
    for ep, distribution, version in selected.values():
        try:
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {ep.name!r} from {_source(distribution, version)} failed to import: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            registry.register_plugin(plugin, ep.name, distribution=distribution, version=version)
        except RhvaeError as exc:  # an import failure, or a hook that failed (e.g. a duplicate component)
            if strict or _normalize(distribution) == OWN_DISTRIBUTION:
                raise
            if not isinstance(exc, PluginLoadError):
                exc = PluginLoadError(f"plugin {ep.name!r} from {_source(distribution, version)} failed in "
                                      f"rhvae_register: {exc}")
            if registry.has_plugin(ep.name):
                registry.unregister_plugin(ep.name)
            registry.broken[ep.name] = exc
            warnings.warn(f"{exc} (skipped; rhvae works without it)", RuntimeWarning, stacklevel=2)


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry; loads the ``rhvae`` entry points on the first call only."""
    global _default
    if _default is None:
        _default = Registry.from_entry_points(strict=False)
    return _default


def reset_registry() -> None:
    """Forget the process-wide registry, so that the next :func:`get_registry` loads afresh (tests)."""
    global _default
    _default = None
