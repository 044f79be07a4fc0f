"""``python -m hookproxy`` does what the ``hookproxy`` command does."""

from .cli import main

main()
