import assert from 'node:assert';
import { test } from 'node:test';
import { parse } from './logic.js';

test('lines become routes and an empty file is refused', () => {
  assert.deepStrictEqual(parse('# rack 1\n10.55.0.0/16 10.0.0.5 10.0.0.6\n'), [
    { cidr: '10.55.0.0/16', hosts: ['10.0.0.5', '10.0.0.6'] },
  ]);
  assert.throws(() => parse(''));
  assert.throws(() => parse('10.55.0.0/16\n'), /line 1/);
});
