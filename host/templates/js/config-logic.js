// What the plugin decides, kept apart from the bindings so that it is
// tested with plain Node (`node --test`).

// {cidr, hosts} per line of `CIDR HOST...`; `#` starts a comment. An empty
// file is an error, not an empty spec (which would delete every route the
// daemon manages).
export function parse(text) {
  if (text.trim() === '') {
    throw new Error('the file is empty; the spec in force stays');
  }
  const routes = [];
  text.split('\n').forEach((line, index) => {
    const words = line.split('#')[0].split(/\s+/).filter((w) => w !== '');
    if (words.length === 0) return;
    if (words.length < 2) throw new Error(`line ${index + 1}: ${words[0]} has no hosts`);
    routes.push({ cidr: words[0], hosts: words.slice(1) });
  });
  return routes;
}
