// {{name}}: a vpcrouter health check in JavaScript. A router is healthy
// while it accepts TCP connections on --{{prefix}}_port. The host probes a
// round's routers concurrently and hands the results over as they arrive
// (a probe round); each verdict is reported at once, so a dead router is
// failed over without waiting for the slowest probe.
import { startRound } from 'vpcrouter:plugin/probes@{{wit}}';
import { report } from 'vpcrouter:plugin/verdicts@{{wit}}';
import { setTimer } from 'vpcrouter:plugin/timers@{{wit}}';
import { port, verdict } from './logic.js';
import { reportingErrors } from './errors.js';

let probePort = 0;

// A silent router counts as failed after a few of its round trips (as
// TCP's retransmission timer), at most a second.
const TIMEOUT = { tag: 'adaptive', val: 1000 };

export const healthCheck = reportingErrors({
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
      throw new Error(`--{{prefix}}_port: ${e.message}`);
    }
    setTimer(Math.round(Number(given['{{prefix}}_interval']) * 1000));
  },

  check(hosts) {
    const round = startRound({ tag: 'tcp', val: probePort }, hosts, TIMEOUT);
    const all = [];
    try {
      for (let arrived = round.next(); arrived.length > 0; arrived = round.next()) {
        const verdicts = arrived.map((probe) => ({
          host: probe.host,
          state: verdict(probe.ok),
          rttUs: probe.rttUs,
          detail: probe.error,
        }));
        report(verdicts);
        all.push(...verdicts);
      }
    } finally {
      // Dropped now, not when the garbage collector gets to it: the host
      // keeps at most 4 rounds open per plugin and refuses a fifth.
      round[Symbol.dispose]();
    }
    return all;
  },
});
