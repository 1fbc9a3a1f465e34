"""{{name}}: a vpcrouter health check in Python. A router is healthy while
it accepts TCP connections on --{{prefix}}_port; the daemon runs each
round's probes concurrently, this decides what a probe means."""

from typing import List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import probes, timers, types

import logic

port = 0  # Set by init.


class HealthCheck(exports.HealthCheck):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{{name}}",
            version="0.1.0",
            description="Healthy while the router accepts TCP connections",
            options=[
                types.OptionSpec(name="{{prefix}}_port", help="TCP port to probe",
                                 default=None, required=True, kind=types.OptionKind.TEXT),
                types.OptionSpec(name="{{prefix}}_interval", help="Seconds between rounds",
                                 default="2", required=False, kind=types.OptionKind.TEXT),
            ],
            http_paths=[],
        )

    def init(self, options: List[Tuple[str, str]]) -> None:
        global port
        given = dict(options)
        try:
            port = logic.port(given["{{prefix}}_port"])
        except ValueError as e:
            raise Err(f"--{{prefix}}_port: {e}")
        timers.set_timer(int(float(given["{{prefix}}_interval"]) * 1000))

    def check(self, hosts: List[str]) -> List[types.HostHealth]:
        return [
            types.HostHealth(
                host=probe.host,
                state=types.HealthState.HEALTHY if logic.healthy(probe.ok) else types.HealthState.FAILED,
                rtt_us=probe.rtt_us,
                detail=probe.error,
            )
            for probe in probes.probe_tcp(hosts, port, 1000)
        ]
