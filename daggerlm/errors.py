"""One exception type for bad user input, so the CLI can print it as a single line and exit non-zero."""


class InputError(ValueError):
    """Bad input from a user file or parameter; the message names the file, field or value."""
