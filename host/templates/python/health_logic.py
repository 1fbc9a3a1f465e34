"""What the plugin decides, kept apart from the bindings so that it is
tested with plain Python (`python3 -m unittest`)."""


def port(value: str) -> int:
    """A TCP port, 1-65535."""
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"{value!r}: expected 1-65535")
    return int(value)


def healthy(answered: bool) -> bool:
    """What one probe means: an answer is health."""
    return answered
