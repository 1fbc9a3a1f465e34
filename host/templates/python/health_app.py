"""{{name}}: a vpcrouter health check in Python. A router is healthy while
it accepts TCP connections on --{{prefix}}_port. The host probes a round's
routers concurrently and hands the results over as they arrive (a probe
round); each verdict is reported at once, so a dead router is failed over
without waiting for the slowest probe."""

from typing import List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import probes, timers, types, verdicts

import logic

port = 0  # Set by init.

# A silent router counts as failed after a few of its round trips (as
# TCP's retransmission timer), at most a second.
TIMEOUT = probes.ProbeTimeout_Adaptive(1000)


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
        every = []
        with probes.start_round(probes.ProbeMethod_Tcp(port), hosts, TIMEOUT) as probing:
            while arrived := probing.next():
                decided = [
                    types.HostHealth(
                        host=probe.host,
                        state=types.HealthState.HEALTHY if logic.healthy(probe.ok) else types.HealthState.FAILED,
                        rtt_us=probe.rtt_us,
                        detail=probe.error,
                    )
                    for probe in arrived
                ]
                verdicts.report(decided)
                every.extend(decided)
        return every
