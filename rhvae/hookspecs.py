"""The plugin hook of rhvae (pluggy), and the markers plugin authors import.

A plugin is a module named by an entry point of the ``rhvae`` group::

    [project.entry-points.rhvae]
    my-plugin = "my_pkg.rhvae_plugin"

that implements :func:`rhvae_register`::

    import rhvae

    @rhvae.hookimpl
    def rhvae_register(registry):
        registry.add("prior", "student_t", "my_pkg.priors:StudentT", doc="Student-t prior")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from rhvae.registry import Registry

NAME = "rhvae"
hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)


@hookspec
def rhvae_register(registry: Registry) -> None:
    """Add components to ``registry`` with ``registry.add(kind, name, factory, backends=None, doc="")``.

    ``kind`` is one of ``backend encoder decoder metric prior tempering grad_h``; ``factory``
    is a callable returning the component, or a lazy ``"module:attr"`` string imported on first
    use. ``backends=None`` declares the component neutral (written over ``B.xp``, so available on
    every backend); ``backends=("torch",)`` restricts it.
    """
