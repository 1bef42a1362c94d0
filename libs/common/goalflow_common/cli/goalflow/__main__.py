"""``python -m goalflow_common.cli.goalflow``: the same as the ``goalflow`` script."""

from goalflow_common.cli.goalflow import main

main(prog_name="goalflow")
