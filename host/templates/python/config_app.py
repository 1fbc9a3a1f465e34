"""{{name}}: a vpcrouter config source in Python. It reads the route spec
from the file the operator gives with --{{prefix}}_file (lines of
`CIDR HOST...`) and reads it again whenever it changes."""

from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import files, log, types

import logic

path = ""  # The granted file, set by init.


class ConfigSource(exports.ConfigSource):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{{name}}",
            version="0.1.0",
            description="Route spec from a file of CIDR HOST... lines",
            options=[
                types.OptionSpec(
                    name="{{prefix}}_file",
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
        path = dict(options)["{{prefix}}_file"]
        files.watch_file(path)

    def on_event(self, event: types.Event) -> Optional[List[types.Route]]:
        if isinstance(event, types.Event_Timer):
            return None
        try:
            routes = logic.parse(files.read_file(path).decode("utf-8"))
        except ValueError as e:
            raise Err(f"{path}: {e}")
        log.log(log.Level.INFO, f"{len(routes)} routes from {path}")
        return [types.Route(cidr=cidr, hosts=hosts) for cidr, hosts in routes]

    def handle_http(
        self, request: types.HttpRequest
    ) -> Tuple[types.HttpResponse, Optional[List[types.Route]]]:
        return (types.HttpResponse(status=404, content_type="text/plain", body=b""), None)
