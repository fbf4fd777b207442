"""The runtime ``maas`` command line: serve, predict, batch and the store commands. No torch here.

Each command group is its own module, registered by one line in ``maas.cli.COMMANDS``; only ``maas build``
reaches into ``model_build`` (and torch), and only when it runs.
"""
