"""csv-routes: the route spec from a CSV file, one route per line:
`CIDR,HOST[,HOST...]` (`#` starts a comment). Re-read whenever it changes.
"""

from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import files, log, types

# Set by init: the granted file.
path = ""


def parse(text: str) -> List[types.Route]:
    if not text.strip():
        # What a writer leaves for a moment; an empty spec would delete
        # every managed route.
        raise ValueError("the file is empty; the spec in force stays")
    routes = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cidr, *hosts = [field.strip() for field in line.split(",")]
        if not hosts:
            raise ValueError(f"line {number}: {cidr} has no hosts")
        routes.append(types.Route(cidr=cidr, hosts=hosts))
    return routes


class ConfigSource(exports.ConfigSource):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="csv-routes",
            version="0.1.0",
            description="Route spec from a CSV file of CIDR,HOST... lines",
            options=[
                types.OptionSpec(
                    name="csv",
                    help="The routes file",
                    default=None,
                    required=True,
                    kind=types.OptionKind.FILE,
                )
            ],
            http_paths=[],
        )

    def init(self, options: List[Tuple[str, str]]) -> None:
        global path
        path = dict(options)["csv"]
        files.watch_file(path)

    def on_event(self, event: types.Event) -> Optional[List[types.Route]]:
        if isinstance(event, types.Event_Timer):
            return None
        text = files.read_file(path).decode("utf-8")
        try:
            routes = parse(text)
        except ValueError as e:
            raise Err(f"{path}: {e}")
        log.log(log.Level.INFO, f"{len(routes)} routes from {path}")
        return routes

    def handle_http(
        self, request: types.HttpRequest
    ) -> Tuple[types.HttpResponse, Optional[List[types.Route]]]:
        return (types.HttpResponse(status=404, content_type="text/plain", body=b"no paths"), None)
