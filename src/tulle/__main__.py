"""``python -m tulle``: the ``tulle`` command (how ``tulle proxy --workers`` starts its
workers: with the interpreter that runs the supervisor, whatever the PATH says)."""

from tulle.cli.main import main

main()
