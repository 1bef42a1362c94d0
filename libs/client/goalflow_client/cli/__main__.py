"""``python -m goalflow_client.cli``: the same as the ``goalflow`` script."""

from goalflow_client.cli import main

main(prog_name="goalflow")
