"""``python -m rhvae``: the ``rhvae`` command."""

from rhvae.cli import main

raise SystemExit(main())
