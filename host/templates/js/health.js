// {{name}}: a vpcrouter health check in JavaScript. A router is healthy
// while it accepts TCP connections on --{{prefix}}_port; the daemon runs
// each round's probes concurrently, this decides what a probe means.
import { probeTcp } from 'vpcrouter:plugin/probes@{{wit}}';
import { setTimer } from 'vpcrouter:plugin/timers@{{wit}}';
import { port, verdict } from './logic.js';

let probePort = 0;

export const healthCheck = {
  describe() {
    return {
      name: '{{name}}',
      version: '0.1.0',
      description: 'Healthy while the router accepts TCP connections',
      options: [
        { name: '{{prefix}}_port', help: 'TCP port to probe', required: true, kind: 'text' },
        { name: '{{prefix}}_interval', help: 'Seconds between rounds', default: '2', required: false, kind: 'text' },
      ],
      httpPaths: [],
    };
  },

  init(options) {
    const given = Object.fromEntries(options);
    try {
      probePort = port(given['{{prefix}}_port']);
    } catch (e) {
      throw `--{{prefix}}_port: ${e.message}`;
    }
    setTimer(Math.round(Number(given['{{prefix}}_interval']) * 1000));
  },

  check(hosts) {
    return probeTcp(hosts, probePort, 1000).map((probe) => ({
      host: probe.host,
      state: verdict(probe.ok),
      rttUs: probe.rttUs,
      detail: probe.error,
    }));
  },
};
