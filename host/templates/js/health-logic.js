// What the plugin decides, kept apart from the bindings so that it is
// tested with plain Node (`node --test`).

// A TCP port, 1-65535.
export function port(value) {
  const number = Number(value);
  if (!/^[0-9]+$/.test(value ?? '') || number < 1 || number > 65535) {
    throw new Error(`${JSON.stringify(value)}: expected 1-65535`);
  }
  return number;
}

// What one probe means: an answer is health.
export function verdict(answered) {
  return answered ? 'healthy' : 'failed';
}
