"""rhvae-student-t: a Student-t position prior and a linear tempering schedule for rhvae.

The ``rhvae`` entry point of this distribution names this module; rhvae calls its
:func:`rhvae_register` hook once, on first use of the registry. The factories are lazy
``"module:attr"`` strings, the pattern for components with heavy imports; these two need only
numpy, so the package also re-exports them for ``RHVAE(position_prior=StudentT(df=5.0))``.
"""

import rhvae

from rhvae_student_t.priors import StudentT
from rhvae_student_t.tempering import Linear

__version__ = "0.1.0"
__all__ = ["Linear", "StudentT", "__version__", "rhvae_register"]


@rhvae.hookimpl
def rhvae_register(registry):
    registry.add("prior", "student_t", "rhvae_student_t.priors:StudentT",
                 doc="multivariate Student-t; df=3.0, scale=1.0")
    registry.add("tempering", "linear", "rhvae_student_t.tempering:Linear",
                 doc="1/sqrt(beta_k) linear in k/K, beta_K = 1")
