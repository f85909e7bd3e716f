"""Entry-point discovery on fake distributions written to ``tmp_path``, and the ``rhvae`` CLI.

The fake distributions declare their entry points in a test-only group, so the installed
plugins (``rhvae-builtins``, ``rhvae-torch``, ``rhvae-jax``) never load here.
"""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest

import rhvae.cli as cli
from rhvae.errors import DuplicatePluginError, PluginLoadError
from rhvae.interfaces import protocol_violations
from rhvae.registry import BLOCK_PLUGINS_ENV, DISABLE_AUTOLOAD_ENV, Registry, load_entry_points

GROUP = "rhvae_test_discovery"

PRIOR_PLUGIN = """
import rhvae

class Spherical:
    def log_prob(self, B, z):
        return -0.5 * (z * z).sum(-1)

@rhvae.hookimpl
def rhvae_register(registry):
    registry.add("prior", "{component}", Spherical, doc="fake prior")
"""


@pytest.fixture
def make_dist(tmp_path, monkeypatch):
    """``make_dist(name, version, {entry point: module}, {module: source})`` on ``sys.path``."""
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv(BLOCK_PLUGINS_ENV, raising=False)
    written = []

    def make(name, version, entry_points, modules):
        info = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")
        for module, source in modules.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            written.append(module)
        importlib.invalidate_caches()

    yield make
    for module in written:
        sys.modules.pop(module, None)


def prior_dist(make_dist, dist, version, entry_point, module, component):
    make_dist(dist, version, {entry_point: module}, {module: PRIOR_PLUGIN.format(component=component)})


def test_a_fake_distribution_is_discovered_with_its_distribution(make_dist):
    prior_dist(make_dist, "fake-priors", "0.1", "fake-priors", "fake_priors_mod", "fake_spherical")
    registry = Registry.from_entry_points(GROUP)
    (info,) = registry.plugins()
    assert (info.name, info.distribution, info.version) == ("fake-priors", "fake-priors", "0.1")
    spec = registry.get("prior", "fake_spherical")
    assert (spec.plugin, spec.distribution, spec.version) == ("fake-priors", "fake-priors", "0.1")
    assert spec.doc == "fake prior"
    prior = registry.create("prior", "fake_spherical", backend="jax")
    np.testing.assert_allclose(prior.log_prob(None, np.ones((2, 3))), [-1.5, -1.5])


def test_lazy_factories_are_imported_only_when_resolved(make_dist):
    make_dist("lazy-dist", "1.0", {"lazy": "lazy_plugin_mod"}, {
        "lazy_plugin_mod": """
            import rhvae

            @rhvae.hookimpl
            def rhvae_register(registry):
                registry.add("prior", "heavy", "lazy_heavy_mod:Heavy")
        """,
        "lazy_heavy_mod": """
            class Heavy:
                def log_prob(self, B, z):
                    return z.sum(-1)
        """,
    })
    registry = Registry.from_entry_points(GROUP)
    assert "lazy_plugin_mod" in sys.modules and "lazy_heavy_mod" not in sys.modules
    assert registry.resolve("prior", "heavy").__name__ == "Heavy"
    assert "lazy_heavy_mod" in sys.modules


def test_duplicate_entry_point_names_both_distributions_before_importing(make_dist):
    prior_dist(make_dist, "dist-a", "0.1", "dup", "dup_a_mod", "a")
    prior_dist(make_dist, "dist-b", "0.2", "dup", "dup_b_mod", "b")
    with pytest.raises(DuplicatePluginError) as info:
        Registry.from_entry_points(GROUP)
    message = str(info.value)
    assert "plugin 'dup'" in message
    assert "dist-a 0.1" in message and "dist-b 0.2" in message
    assert f"{BLOCK_PLUGINS_ENV}=dup" in message
    assert "dup_a_mod" not in sys.modules and "dup_b_mod" not in sys.modules


def test_an_entry_point_already_registered_by_hand_is_a_duplicate(make_dist):
    prior_dist(make_dist, "dist-a", "0.1", "mine", "mine_mod", "a")
    registry = Registry()
    registry.register_plugin(object(), "mine", distribution="local-tests", version="0")
    with pytest.raises(DuplicatePluginError, match="plugin 'mine' is provided by both local-tests 0 and dist-a 0.1"):
        load_entry_points(registry, GROUP)


@pytest.mark.parametrize(
    ("source", "cause", "text"),
    [
        ("raise ImportError(\"Don't hide me!\")", ImportError, "ImportError: Don't hide me!"),
        ("import rhvae_no_such_dependency", ModuleNotFoundError, "No module named 'rhvae_no_such_dependency'"),
        ("1 / 0", ZeroDivisionError, "ZeroDivisionError: division by zero"),
    ],
)
def test_a_plugin_that_fails_to_import_is_wrapped_with_its_name_and_distribution(make_dist, source, cause, text):
    make_dist("broken-dist", "0.3", {"broken": "broken_mod"}, {"broken_mod": source})
    with pytest.raises(PluginLoadError) as info:
        Registry.from_entry_points(GROUP)
    message = str(info.value)
    assert message.startswith("plugin 'broken' from broken-dist 0.3 failed to import: ")
    assert text in message
    assert isinstance(info.value.__cause__, cause)
    assert isinstance(info.value, ImportError)


def test_an_entry_point_to_a_missing_module(make_dist):
    make_dist("ghost-dist", "1.0", {"ghost": "rhvae_ghost_mod_missing"}, {})
    with pytest.raises(PluginLoadError, match="plugin 'ghost' from ghost-dist 1.0 failed to import") as info:
        Registry.from_entry_points(GROUP)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


@pytest.fixture
def own_and_third_party(make_dist):
    """A fake ``rhvae`` distribution (the built-ins) and third parties, one hijacking ``shared``."""
    make_dist("rhvae", "0.1.0", {"fake-builtins": "fake_builtins_mod", "shared": "own_shared_mod"}, {
        "fake_builtins_mod": PRIOR_PLUGIN.format(component="builtin_prior"),
        "own_shared_mod": PRIOR_PLUGIN.format(component="own_shared"),
    })
    make_dist("third-party", "9.0", {"third-party": "third_party_mod", "shared": "third_shared_mod"}, {
        "third_party_mod": PRIOR_PLUGIN.format(component="third_prior"),
        "third_shared_mod": PRIOR_PLUGIN.format(component="third_shared"),
    })
    prior_dist(make_dist, "rhvae-extra", "0.1.0", "extra", "extra_mod", "extra_prior")


def test_disable_autoload_loads_only_the_rhvae_distribution(own_and_third_party, monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    registry = Registry.from_entry_points(GROUP)
    assert sorted(p.name for p in registry.plugins()) == ["fake-builtins", "shared"]
    assert registry.names("prior") == ["builtin_prior", "own_shared"]
    assert {spec.distribution for spec in registry.specs()} == {"rhvae"}
    for module in ("third_party_mod", "third_shared_mod", "extra_mod"):
        assert module not in sys.modules


@pytest.mark.parametrize("value", ["", "0"])
def test_without_the_switch_a_hijacked_name_raises(own_and_third_party, monkeypatch, value):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, value)
    with pytest.raises(DuplicatePluginError) as info:
        Registry.from_entry_points(GROUP)
    assert "plugin 'shared'" in str(info.value)
    assert "rhvae 0.1.0" in str(info.value) and "third-party 9.0" in str(info.value)


def test_block_plugins_skips_them_without_importing(own_and_third_party, make_dist, monkeypatch):
    make_dist("bomb-dist", "1.0", {"bomb": "bomb_mod"}, {"bomb_mod": "raise RuntimeError('imported a blocked plugin')"})
    monkeypatch.setenv(BLOCK_PLUGINS_ENV, " bomb , shared,")
    registry = Registry.from_entry_points(GROUP)
    assert registry.is_blocked("bomb") and registry.is_blocked("shared")
    assert sorted(p.name for p in registry.plugins()) == ["extra", "fake-builtins", "third-party"]
    assert registry.names("prior") == ["builtin_prior", "extra_prior", "third_prior"]
    for module in ("bomb_mod", "own_shared_mod", "third_shared_mod"):
        assert module not in sys.modules


# -- the CLI ----------------------------------------------------------------------------------


def fake_backend(version="9.9", devices=("cpu", "cuda:0")):
    members = {m: (lambda self, *args, **kwargs: None) for m in protocol_violations("backend", object())}
    members |= {"name": "fake", "xp": np, "version": version, "devices": lambda self: list(devices)}
    return type("FakeBackend", (), members)


def missing_backend():
    raise ImportError("No module named 'fakeframework'")


@pytest.fixture
def cli_registry(make_dist, monkeypatch):
    prior_dist(make_dist, "rhvae-student-t", "0.1.0", "student-t", "student_t_mod", "student_t")
    registry = Registry.from_entry_points(GROUP)
    registry.add("prior", "fast", "student_t_mod:Spherical", backends=("torch",))
    registry.add("backend", "fake", fake_backend())
    registry.add("backend", "missing", missing_backend)
    monkeypatch.setattr(cli, "get_registry", lambda: registry)
    return registry


def test_cli_plugins_lists_distributions_and_components(cli_registry, capsys):
    assert cli.main(["plugins"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "student-t (from rhvae-student-t 0.1.0)",
        "  prior:student_t [all backends]  fake prior",
        "<local> (from <local>)",
        "  backend:fake [all backends]",
        "  backend:missing [all backends]",
        "  prior:fast [torch]",
    ]


def test_cli_info_reports_versions_devices_and_missing_backends(cli_registry, capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"rhvae {cli.rhvae.__version__}"
    assert out[1].startswith(f"python {sys.version_info.major}.{sys.version_info.minor}")
    assert out[2] == f"numpy {np.__version__}"
    assert out[3:] == [
        "backend fake: 9.9 (devices: cpu, cuda:0)",
        "backend missing: not installed: No module named 'fakeframework'",
    ]


@pytest.mark.parametrize("argv", [["bogus"], [], ["plugins", "--nope"]])
def test_cli_bad_arguments_give_one_line_and_exit_code_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rhvae: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_rhvae_errors_give_one_line_and_exit_code_2(make_dist, monkeypatch, capsys):
    prior_dist(make_dist, "dist-a", "0.1", "dup", "dup_a_mod", "a")
    prior_dist(make_dist, "dist-b", "0.2", "dup", "dup_b_mod", "b")
    monkeypatch.setattr(cli, "get_registry", lambda: Registry.from_entry_points(GROUP))
    assert cli.main(["plugins"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rhvae: error: plugin 'dup'") and err.count("\n") == 1
    assert "dist-a 0.1" in err and "dist-b 0.2" in err


def test_cli_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rhvae {cli.rhvae.__version__}"


def test_a_broken_third_party_plugin_is_named_and_skipped_by_the_default_registry(make_dist, monkeypatch, capsys):
    prior_dist(make_dist, "good-dist", "1.0", "good", "good_mod", "good_prior")
    make_dist("broken-dist", "0.3", {"broken": "broken_mod2"}, {"broken_mod2": "raise ImportError('no gpu lib')"})
    with pytest.warns(RuntimeWarning, match="plugin 'broken' from broken-dist 0.3 failed to import"):
        registry = Registry.from_entry_points(GROUP, strict=False)
    assert registry.names("prior") == ["good_prior"] and list(registry.broken) == ["broken"]
    with pytest.raises(Exception, match="plugins that failed to load: plugin 'broken'"):
        registry.create("prior", "student_t")
    monkeypatch.setattr(cli, "get_registry", lambda: registry)
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "good (from good-dist 1.0)"
    assert out[-1].startswith("broken (BROKEN, not loaded): plugin 'broken' from broken-dist 0.3 failed to import")


def test_a_third_party_hook_that_fails_with_a_duplicate_component_is_skipped_too(make_dist):
    prior_dist(make_dist, "first-dist", "1.0", "first", "first_mod", "shared_prior")
    prior_dist(make_dist, "second-dist", "2.0", "second", "second_mod", "shared_prior")
    with pytest.warns(RuntimeWarning, match=r"failed in rhvae_register: prior 'shared_prior' is registered twice"):
        registry = Registry.from_entry_points(GROUP, strict=False)  # the later of the two loses
    assert registry.names("prior") == ["shared_prior"] and len(registry.broken) == 1
    assert {p.name for p in registry.plugins()} | set(registry.broken) == {"first", "second"}
