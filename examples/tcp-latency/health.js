// tcp-latency: a host is healthy when it answers a TCP handshake on a port,
// questionable when it answers slower than --slow_ms, failed otherwise.
// The host probes every host of the round at once; this decides what a
// probe means.
import { probeTcp } from 'vpcrouter:plugin/probes@0.1.0';
import { setTimer } from 'vpcrouter:plugin/timers@0.1.0';
import { log } from 'vpcrouter:plugin/log@0.1.0';

let port = 0;
let slowUs = 0;

function option(options, name) {
  const found = options.find(([key]) => key === name);
  return found ? found[1] : undefined;
}

function seconds(options, name) {
  const value = Number(option(options, name));
  if (!(value > 0 && value <= 3600)) {
    throw new Error(`--${name} ${option(options, name)}: expected seconds, e.g. 1 or 0.5`);
  }
  return Math.round(value * 1000);
}

// An export whose WIT result has a string error reports what it throws,
// but componentize-js takes only a string there ("expected a string,
// received [object]" for an Error): every thrown value becomes its message
// (an import's error arrives as an exception whose payload is the text).
function reportingErrors(exports) {
  const wrap = (call) => (...args) => {
    try {
      return call(...args);
    } catch (e) {
      throw typeof e === 'string' ? e : String(e?.payload ?? e?.message ?? e);
    }
  };
  return Object.fromEntries(Object.entries(exports).map(([name, call]) => [name, wrap(call)]));
}

export const healthCheck = reportingErrors({
  describe() {
    return {
      name: 'tcp-latency',
      version: '0.1.0',
      description: 'Healthy if the host accepts a TCP connection quickly',
      options: [
        { name: 'latency_port', help: 'Port to probe', required: true, kind: 'text' },
        { name: 'latency_interval', help: 'Seconds between rounds', default: '1', required: false, kind: 'text' },
        { name: 'latency_slow_ms', help: 'Answers slower than this make a host questionable', default: '100', required: false, kind: 'text' },
      ],
      httpPaths: [],
    };
  },

  init(options) {
    port = Number(option(options, 'latency_port'));
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`--latency_port ${option(options, 'latency_port')}: expected 1-65535`);
    }
    slowUs = Number(option(options, 'latency_slow_ms')) * 1000;
    setTimer(seconds(options, 'latency_interval'));
    log('info', `probing port ${port}, slow above ${slowUs / 1000} ms`);
  },

  check(hosts) {
    return probeTcp(hosts, port, 1000).map((probe) => ({
      host: probe.host,
      state: !probe.ok ? 'failed' : probe.rttUs > slowUs ? 'questionable' : 'healthy',
      rttUs: probe.rttUs,
      detail: probe.error,
    }));
  },
});
