"""The ``tying`` command-line tool."""
