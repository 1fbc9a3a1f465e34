#!/usr/bin/env bash
# Demo: the daemon with the configfile plugin on a copy of examples/spec.json.
# It applies the spec, then picks up an edit, ignores a broken edit (keeping
# the spec in force), and stops cleanly. Everything stays on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/debug/vpcrouter
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cp examples/spec.json "$work/spec.json"

step() { sleep 1.5; printf '\n\033[1m>>> %s\033[0m\n' "$*"; }

# -H none: the example spec names VPC addresses, which must not be probed
# from this machine.
"$bin" -m configfile -f "$work/spec.json" -H none -a 127.0.0.1 -p 33289 --plugin-dir plugins &
pid=$!

step "adding a router for 10.55.16.0/24 (edit the spec file)"
cat > "$work/spec.json" <<JSON
{"10.55.16.0/24": ["10.33.20.142", "10.33.20.143"], "10.66.17.0/24": ["10.33.20.93", "10.33.30.22"]}
JSON

step "writing a broken spec: rejected with the reason, the spec in force stays"
echo '{"10.55.16.1/24": ["10.33.20.142"]}' > "$work/spec.json"

step "stopping (SIGTERM)"
kill -TERM "$pid"
wait "$pid"
echo "demo finished"
