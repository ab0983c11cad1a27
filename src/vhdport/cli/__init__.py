"""The ``vhdport`` command line: argument parsing and output only; the work is in the layers below."""
