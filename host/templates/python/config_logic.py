"""What the plugin decides, kept apart from the bindings so that it is
tested with plain Python (`python3 -m unittest`)."""

from typing import List, Tuple


def parse(text: str) -> List[Tuple[str, List[str]]]:
    """(CIDR, hosts) per line of `CIDR HOST...`; `#` starts a comment. An
    empty file is an error, not an empty spec (which would delete every
    route the daemon manages)."""
    if not text.strip():
        raise ValueError("the file is empty; the spec in force stays")
    routes = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) < 2:
            raise ValueError(f"line {number}: {words[0]} has no hosts")
        routes.append((words[0], words[1:]))
    return routes
