"""One folder per pipeline step. Importing this package first sets up the TF stack (see stack)."""

from components import stack  # noqa: F401
