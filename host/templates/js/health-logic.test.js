import assert from 'node:assert';
import { test } from 'node:test';
import { port, verdict } from './logic.js';

test('ports are checked', () => {
  assert.strictEqual(port('22'), 22);
  for (const bad of ['0', '65536', 'ssh', '']) assert.throws(() => port(bad));
});

test('an answer is health', () => {
  assert.strictEqual(verdict(true), 'healthy');
  assert.strictEqual(verdict(false), 'failed');
});
