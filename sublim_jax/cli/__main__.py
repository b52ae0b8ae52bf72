"""``python -m sublim_jax.cli``: the ``sublim-jax`` command line."""

import sys

from sublim_jax.cli.main import main

sys.exit(main())
