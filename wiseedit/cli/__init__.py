"""The ``wiseedit`` command line: :mod:`wiseedit.cli.app` builds it; one module per subcommand."""
