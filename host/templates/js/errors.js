// An export whose WIT result has a string error reports what it throws,
// but componentize-js takes only a string there ("expected a string,
// received [object]" for an Error): wrapped exports turn every thrown
// value into its message (an import's error arrives as an exception whose
// payload is the text).
export function reportingErrors(exports) {
  const wrap = (call) => (...args) => {
    try {
      return call(...args);
    } catch (e) {
      throw typeof e === 'string' ? e : String(e?.payload ?? e?.message ?? e);
    }
  };
  return Object.fromEntries(Object.entries(exports).map(([name, call]) => [name, wrap(call)]));
}
