"""The ``sublim-jax`` command line: the parser over the experiments' registered commands."""
