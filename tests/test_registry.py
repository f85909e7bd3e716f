"""The Registry on its own: hermetic registries and in-process fake plugins, no entry points."""

from __future__ import annotations

import numpy as np
import pytest

import rhvae.registry as registry_module
from rhvae import hookimpl
from rhvae.errors import (
    BackendUnavailableError,
    DuplicateComponentError,
    DuplicatePluginError,
    PluginLoadError,
    ProtocolError,
    RhvaeError,
    UnknownComponentError,
)
from rhvae.interfaces import PROTOCOLS
from rhvae.registry import KINDS, ComponentSpec, PluginInfo, Registry


class Spherical:
    """A neutral prior: log N(z; 0, I) up to a constant."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def log_prob(self, B, z):
        return -0.5 * (z * z).sum(-1) / self.scale**2


class NotAnEncoder:
    def init(self, rng, input_dim, latent_dim):
        return {}


def plugin(register):
    """A plugin object whose ``rhvae_register`` hook calls ``register(registry)``."""

    class Plugin:
        @hookimpl
        def rhvae_register(self, registry):
            register(registry)

    return Plugin()


def add_priors(*names, **kwargs):
    return plugin(lambda registry: [registry.add("prior", n, Spherical, **kwargs) for n in names])


@pytest.fixture
def registry():
    return Registry()


def test_kinds_are_the_protocol_kinds():
    assert KINDS == tuple(PROTOCOLS)


def test_errors_derive_from_rhvae_error_and_the_expected_builtin():
    assert issubclass(PluginLoadError, ImportError)
    assert issubclass(DuplicatePluginError, ValueError)
    assert issubclass(DuplicateComponentError, ValueError)
    assert issubclass(UnknownComponentError, ValueError) and issubclass(UnknownComponentError, LookupError)
    assert issubclass(BackendUnavailableError, ValueError)
    assert issubclass(ProtocolError, TypeError)
    for error in (PluginLoadError, DuplicatePluginError, DuplicateComponentError, UnknownComponentError,
                  BackendUnavailableError, ProtocolError):
        assert issubclass(error, RhvaeError)


def test_plugin_components_are_attributed_to_their_distribution(registry):
    info = registry.register_plugin(
        plugin(lambda r: r.add("prior", "student_t", Spherical, backends=["torch", "jax"], doc="Student-t")),
        "student-t",
        distribution="rhvae-student-t",
        version="0.1.0",
    )
    spec = registry.get("prior", "student_t")
    assert spec == ComponentSpec("prior", "student_t", Spherical, ("torch", "jax"), "Student-t",
                                 "student-t", "rhvae-student-t", "0.1.0")
    assert spec.source == "rhvae-student-t 0.1.0"
    assert info == PluginInfo("student-t", "rhvae-student-t", "0.1.0", (spec,))
    assert registry.plugins() == [info]
    assert registry.names("prior") == ["student_t"]
    assert registry.names("encoder") == []


def test_direct_adds_are_listed_as_local(registry):
    registry.add("prior", "b", Spherical)
    registry.add("tempering", "none", lambda K, beta0: np.full(K + 1, beta0))
    registry.add("prior", "a", Spherical)
    assert [s.name for s in registry.specs()] == ["a", "b", "none"]
    assert [s.name for s in registry.specs("tempering")] == ["none"]
    (local,) = registry.plugins()
    assert (local.name, local.distribution, len(local.components)) == ("<local>", "<local>", 3)


def test_add_rejects_an_unknown_kind_listing_the_kinds(registry):
    with pytest.raises(ValueError, match="unknown component kind 'priors'") as info:
        registry.add("priors", "x", Spherical)
    assert "did you mean 'prior'?" in str(info.value)
    assert ", ".join(KINDS) in str(info.value)


@pytest.mark.parametrize("name", ["student-t", "1st", "", None])
def test_add_rejects_a_name_that_is_not_an_identifier(registry, name):
    with pytest.raises(ValueError, match=f"prior name {name!r} is not a Python identifier"):
        registry.add("prior", name, Spherical)


@pytest.mark.parametrize("factory", [42, "no_colon", "pkg:bad-attr", ":Attr", "pkg:"])
def test_add_rejects_a_factory_that_is_neither_callable_nor_module_attr(registry, factory):
    with pytest.raises(TypeError, match=r"factory of prior 'p' must be a callable or a 'module:attr' string"):
        registry.add("prior", "p", factory)


def test_add_checks_backends(registry):
    with pytest.raises(TypeError, match="backends of prior 'p' must be None"):
        registry.add("prior", "p", Spherical, backends="torch")
    with pytest.raises(TypeError, match="backends of prior 'p' must be None"):
        registry.add("prior", "p", Spherical, backends=("torch", 3))
    with pytest.raises(ValueError, match="backends of prior 'p' is empty; pass None"):
        registry.add("prior", "p", Spherical, backends=())
    assert registry.add("prior", "p", Spherical, backends=["torch"]).backends == ("torch",)


def test_duplicate_component_names_both_distributions_and_rolls_back(registry):
    registry.register_plugin(add_priors("student_t"), "student-t", distribution="rhvae-student-t", version="0.1.0")
    with pytest.raises(DuplicateComponentError) as info:
        registry.register_plugin(add_priors("cauchy", "student_t"), "other", distribution="other-priors", version="2.0")
    message = str(info.value)
    assert "prior 'student_t' is registered twice" in message
    assert "rhvae-student-t 0.1.0" in message and "other-priors 2.0" in message
    assert registry.names("prior") == ["student_t"]
    assert [p.name for p in registry.plugins()] == ["student-t"]


def test_unknown_name_suggests_close_matches_with_their_source(registry):
    registry.register_plugin(add_priors("student_t"), "student-t", distribution="rhvae-student-t", version="0.1.0")
    registry.add("prior", "spherical", Spherical)
    with pytest.raises(UnknownComponentError) as info:
        registry.get("prior", "studnet_t")
    assert str(info.value) == (
        "unknown prior 'studnet_t'; did you mean 'student_t' (from rhvae-student-t 0.1.0)? "
        "Available: spherical, student_t"
    )
    with pytest.raises(UnknownComponentError, match=r"^unknown prior 'laplace'\. Available: spherical, student_t$"):
        registry.get("prior", "laplace")
    with pytest.raises(UnknownComponentError, match="unknown encoder 'mlp'; no encoder is registered"):
        registry.resolve("encoder", "mlp")


def test_get_rejects_an_unknown_kind(registry):
    with pytest.raises(ValueError, match="unknown component kind 'nope'") as info:
        registry.get("nope", "x")
    assert not isinstance(info.value, UnknownComponentError)


def test_resolve_checks_the_backend(registry):
    registry.add("prior", "fast", Spherical, backends=("torch",))
    registry.add("prior", "neutral", Spherical)
    assert registry.resolve("prior", "fast", "torch") is Spherical
    assert registry.resolve("prior", "fast") is Spherical
    assert registry.resolve("prior", "neutral", "jax") is Spherical
    with pytest.raises(BackendUnavailableError) as info:
        registry.resolve("prior", "fast", "jax")
    assert str(info.value) == "prior 'fast' has no jax implementation (available: torch)"
    assert registry.get("prior", "fast").available_on("torch")
    assert not registry.get("prior", "fast").available_on("jax")


def test_create_calls_the_factory_with_kwargs_and_validates(registry):
    registry.add("prior", "spherical", Spherical)
    prior = registry.create("prior", "spherical", scale=2.0)
    assert isinstance(prior, Spherical) and prior.scale == 2.0
    np.testing.assert_allclose(prior.log_prob(None, np.ones((3, 2))), -0.25 * np.ones(3))


def test_create_rejects_an_object_missing_protocol_members(registry):
    registry.add("encoder", "broken", NotAnEncoder)
    with pytest.raises(ProtocolError) as info:
        registry.create("encoder", "broken")
    assert str(info.value) == "encoder object NotAnEncoder does not satisfy the Encoder protocol: missing __call__"
    assert isinstance(info.value, TypeError)


def test_validate(registry):
    def quadratic(K, beta0):
        return np.full(K + 1, beta0)

    assert registry.validate("tempering", quadratic) is quadratic
    prior = Spherical()
    assert registry.validate("prior", prior) is prior
    expected = "prior object object does not satisfy the LogPrior protocol: missing log_prob"
    with pytest.raises(ProtocolError, match=expected):
        registry.validate("prior", object())
    with pytest.raises(ProtocolError, match="missing __call__, init"):
        registry.validate("encoder", object())


def test_lazy_factory_is_imported_on_load(registry):
    spec = registry.add("prior", "frac", "fractions:Fraction")
    from fractions import Fraction

    assert spec.load() is Fraction
    assert registry.resolve("prior", "frac") is Fraction


@pytest.mark.parametrize(
    ("factory", "cause"),
    [("rhvae_no_such_module:Prior", ModuleNotFoundError), ("fractions:NoSuchPrior", AttributeError)],
)
def test_lazy_factory_import_failure_names_component_plugin_and_distribution(registry, factory, cause):
    registry.register_plugin(
        plugin(lambda r: r.add("prior", "student_t", factory)),
        "student-t",
        distribution="rhvae-student-t",
        version="0.1.0",
    )
    with pytest.raises(PluginLoadError) as info:
        registry.resolve("prior", "student_t")
    message = str(info.value)
    assert "prior 'student_t'" in message and "plugin 'student-t'" in message
    assert "rhvae-student-t 0.1.0" in message and repr(factory) in message
    assert isinstance(info.value.__cause__, cause)
    assert isinstance(info.value, ImportError)


def test_lazy_factory_that_is_not_callable(registry):
    registry.add("prior", "pi", "math:pi")
    with pytest.raises(PluginLoadError, match="'math:pi' is a float, not a callable"):
        registry.resolve("prior", "pi")


def test_hookimpl_may_take_fewer_arguments_than_the_spec(registry):
    calls = []

    class NoArgs:
        @hookimpl
        def rhvae_register(self):
            calls.append(True)

    info = registry.register_plugin(NoArgs(), "no-args")
    assert calls == [True] and info.components == ()


def test_hookimpl_with_an_unknown_argument_is_rejected(registry):
    class ExtraArg:
        @hookimpl
        def rhvae_register(self, registry, backend):
            pass

    with pytest.raises(PluginLoadError) as info:
        registry.register_plugin(ExtraArg(), "extra", distribution="extra-dist", version="1.0")
    assert "plugin 'extra' from extra-dist 1.0 is not a valid rhvae plugin" in str(info.value)
    assert "backend" in str(info.value.__cause__)
    assert registry.plugins() == []
    registry.register_plugin(add_priors("p"), "extra")  # the name is free again


def test_misspelt_hook_name_is_caught_by_check_pending(registry):
    class Typo:
        @hookimpl
        def rhvae_regster(self, registry):
            pass

    with pytest.raises(PluginLoadError, match="plugin 'typo' from typo-dist 0.3 is not a valid rhvae plugin") as info:
        registry.register_plugin(Typo(), "typo", distribution="typo-dist", version="0.3")
    assert "rhvae_regster" in str(info.value)
    assert registry.plugins() == []


def test_hook_without_the_hookimpl_marker_is_reported(registry):
    class Unmarked:
        def rhvae_register(self, registry):
            registry.add("prior", "p", Spherical)

    expected = "plugin 'unmarked' from unmarked-dist 1 defines rhvae_register without @rhvae.hookimpl"
    with pytest.raises(PluginLoadError, match=expected):
        registry.register_plugin(Unmarked(), "unmarked", distribution="unmarked-dist", version="1")
    assert registry.plugins() == []


def test_failing_hook_is_wrapped_with_its_plugin_and_rolled_back(registry):
    def register(r):
        r.add("prior", "first", Spherical)
        raise RuntimeError("Don't hide me!")

    with pytest.raises(PluginLoadError) as info:
        registry.register_plugin(plugin(register), "bad", distribution="bad-dist", version="0.2")
    assert str(info.value) == "plugin 'bad' from bad-dist 0.2 failed in rhvae_register: RuntimeError: Don't hide me!"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert registry.names("prior") == [] and registry.plugins() == []


def test_invalid_add_inside_a_hook_names_the_plugin(registry):
    expected = "plugin 'p' from p-dist 1.0 failed in rhvae_register: InputError: prior name 'a-b'"
    with pytest.raises(PluginLoadError, match=expected) as info:
        registry.register_plugin(add_priors("a-b"), "p", distribution="p-dist", version="1.0")
    assert isinstance(info.value.__cause__, ValueError)


def test_duplicate_plugin_name_names_both_distributions(registry):
    registry.register_plugin(add_priors("a"), "priors", distribution="dist-one", version="1.0")
    with pytest.raises(DuplicatePluginError) as info:
        registry.register_plugin(add_priors("b"), "priors", distribution="dist-two", version="2.0")
    assert str(info.value) == "plugin 'priors' is provided by both dist-one 1.0 and dist-two 2.0"
    assert registry.names("prior") == ["a"]


def test_same_plugin_object_under_two_names(registry):
    obj = add_priors("a")
    registry.register_plugin(obj, "first", distribution="dist-one", version="1.0")
    expected = "plugin 'second' from dist-two 2.0 is the object already registered as plugin 'first' from dist-one 1.0"
    with pytest.raises(DuplicatePluginError, match=expected):
        registry.register_plugin(obj, "second", distribution="dist-two", version="2.0")


def test_unregister_removes_the_plugin_and_its_components(registry):
    registry.register_plugin(add_priors("a", "b"), "priors")
    registry.add("prior", "local", Spherical)
    registry.unregister_plugin("priors")
    assert registry.names("prior") == ["local"]
    assert [p.name for p in registry.plugins()] == ["<local>"]
    with pytest.raises(ValueError, match="no plugin 'priors' is registered; registered: none"):
        registry.unregister_plugin("priors")


def test_temporary_plugin(registry):
    with registry.temporary_plugin(add_priors("a"), "tmp", distribution="tmp-dist", version="0") as info:
        assert info.distribution == "tmp-dist" and registry.names("prior") == ["a"]
    assert registry.names("prior") == [] and registry.plugins() == []


def test_blocked_plugin_is_refused_and_removed(registry):
    registry.register_plugin(add_priors("a"), "blocked")
    registry.block_plugin("blocked")
    assert registry.is_blocked("blocked")
    assert registry.names("prior") == [] and registry.plugins() == []
    assert registry.register_plugin(add_priors("b"), "blocked") is None
    assert registry.names("prior") == []


def test_get_registry_loads_once_and_reset_drops_it(monkeypatch):
    built = []

    def fake_from_entry_points(cls, group=registry_module.ENTRY_POINT_GROUP, strict=True):
        built.append(group)
        return cls()

    monkeypatch.setattr(registry_module, "_default", None)
    monkeypatch.setattr(Registry, "from_entry_points", classmethod(fake_from_entry_points))
    first = registry_module.get_registry()
    assert registry_module.get_registry() is first
    assert built == ["rhvae"]
    registry_module.reset_registry()
    assert registry_module.get_registry() is not first
    assert built == ["rhvae", "rhvae"]
