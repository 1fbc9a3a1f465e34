#!/bin/bash
# `host/benches/first_load.sh BINARY` (make bench runs it on the dist build).
# First load of the Python and JS examples: cold (empty cache), rebuild
# (a new build of the same file: custom section appended), cached (after
# `plugin compile`). Prints seconds to "vpcrouter started", and for a plugin
# that started on quick code, to its optimised code swapped in; peak RSS of
# the daemon or its compiler children (wait4 via /usr/bin/time), daemon RSS
# after.
B=$(realpath "$1"); cd "$(dirname "$0")/../.."
PY=examples/csv-routes/csv_routes.wasm; JS=examples/tcp-latency/tcp_latency.wasm
W=$(mktemp -d); echo "10.55.0.0/16,127.0.0.1" > $W/r.csv
args() { case $1 in
  py) echo "--mode-plugin $W/p.wasm --csv $W/r.csv -H none" ;;
  js) echo "-m fixedconf --fixed_cidr 10.55.0.0/16 --fixed_hosts 127.0.0.1 --health-plugin $W/p.wasm --latency_port 33299" ;;
esac; }
run() { # kind label
  rm -f $W/log; local start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o $W/rss $B $(args $1) --sim-vpc examples/sim-vpc.json --plugin-dir plugins \
     --plugin-cache-dir $W/cache --state-dir $W/state -p 39177 > $W/log 2>&1 &
  local tpid=$!
  until grep -qs "vpcrouter started" $W/log; do sleep 0.05; done
  local end=$(date +%s.%N) optimised="-"
  if grep -q 'code="quick"' $W/log; then
    until grep -q "swapped for the quick code" $W/log; do sleep 0.05; done
    optimised=$(printf "%.1f s" $(echo "$(date +%s.%N) - $start" | bc))
  fi
  sleep 1
  local pid=$(pgrep -f -n "^$B .*plugin-cache-dir $W/cache")
  local rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  kill $pid; wait $tpid
  printf "%s %-8s %6.1f s  optimised at %7s  peak %4d MiB  daemon after %3d MiB\n" $1 $2 $(echo "$end - $start" | bc) "$optimised" $(( $(tail -1 $W/rss) / 1024 )) $(( rss / 1024 ))
}
for k in ${KINDS:-py js}; do
  rm -rf $W/cache; f=$PY; [ $k = js ] && f=$JS; cp $f $W/p.wasm
  run $k cold
  python3 -c "
import sys; p=sys.argv[1]; b=open(p,'rb').read(); n=b'rebuild'; pl=bytes([len(n)])+n+b'x'
open(p,'wb').write(b+bytes([0,len(pl)])+pl)" $W/p.wasm
  run $k rebuild
  rm -rf $W/cache; $B plugin compile $W/p.wasm --plugin-cache-dir $W/cache --state-dir $W/state >/dev/null 2>&1
  run $k cached
done
rm -rf $W
