// {{name}}: a vpcrouter config source in JavaScript. It reads the route spec
// from the file the operator gives with --{{prefix}}_file (lines of
// `CIDR HOST...`) and reads it again whenever it changes.
import { readFile, watchFile } from 'vpcrouter:plugin/files@{{wit}}';
import { log } from 'vpcrouter:plugin/log@{{wit}}';
import { parse } from './logic.js';
import { reportingErrors } from './errors.js';

let path = '';

export const configSource = reportingErrors({
  describe() {
    return {
      name: '{{name}}',
      version: '0.1.0',
      description: 'Route spec from a file of CIDR HOST... lines',
      options: [{ name: '{{prefix}}_file', help: 'The routes file', required: true, kind: 'file' }],
      httpPaths: [],
    };
  },

  init(options) {
    path = options.find(([name]) => name === '{{prefix}}_file')[1];
    watchFile(path);
  },

  onEvent(event) {
    if (event.tag === 'timer') {
      return undefined;
    }
    const text = new TextDecoder().decode(readFile(path));
    let routes;
    try {
      routes = parse(text);
    } catch (e) {
      throw new Error(`${path}: ${e.message}`);
    }
    log('info', `${routes.length} routes from ${path}`);
    return routes;
  },

  handleHttp(request) {
    return [{ status: 404, contentType: 'text/plain', body: new Uint8Array() }, undefined];
  },
});
