#!/usr/bin/env bash
# Starts three local Switchboard nodes on 127.0.0.1 (ports 7400-7406, 7410-7416,
# 7420-7426) with a shared CA and gossip key under DIR; Ctrl-C stops them all.
# Usage: scripts/cluster.sh BINARY DIR
set -euo pipefail
bin=${1:?binary}
dir=${2:?directory}
mkdir -p "$dir/tls"
[ -f "$dir/tls/switchboard-ca.pem" ] || "$bin" tls ca create --dir "$dir/tls" >/dev/null
[ -f "$dir/gossip.key" ] || (umask 077; "$bin" gossip-key >"$dir/gossip.key")
key=$(cat "$dir/gossip.key")
# One host token for the whole cluster (a host may open a session through any
# node); the nodes are given only its hash.
if [ ! -f "$dir/host-token" ]; then
  (umask 077; head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' | sed 's/^/sbh_/' >"$dir/host-token")
fi
token=$(cat "$dir/host-token")
token_hash=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
pids=()
stop() {
  trap - INT TERM
  echo "stopping nodes..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM
for i in 1 2 3; do
  n=n$i
  base=$((7400 + (i - 1) * 10))
  [ -f "$dir/tls/$n.pem" ] || "$bin" tls cert create --dir "$dir/tls" --node "$n" >/dev/null
  join=()
  for j in 1 2 3; do [ "$j" = "$i" ] || join+=("127.0.0.1:$((7403 + (j - 1) * 10))"); done
  "$bin" serve --node-id "$n" --data-dir "$dir/$n" \
    --raft-bind 127.0.0.1:$base --api-bind 127.0.0.1:$((base + 1)) --http-bind 127.0.0.1:$((base + 2)) \
    --gossip-bind 127.0.0.1:$((base + 3)) --actor-bind 127.0.0.1:$((base + 4)) --session-bind 127.0.0.1:$((base + 5)) \
    --admin-bind 127.0.0.1:$((base + 6)) \
    --join "$(IFS=,; echo "${join[*]}")" --bootstrap-expect 3 --gossip-key "$key" \
    --session-host-tokens "supporter:sha256:$token_hash" \
    --tls-ca-file "$dir/tls/switchboard-ca.pem" --tls-cert-file "$dir/tls/$n.pem" --tls-key-file "$dir/tls/$n-key.pem" \
    > >(sed "s/^/[$n] /") 2> >(sed "s/^/[$n] /" >&2) &
  pids+=($!)
done
echo "three nodes starting; readiness: curl http://127.0.0.1:7402/readyz (and :7412, :7422). Ctrl-C stops them."
echo "sessions: wss://127.0.0.1:7405/v1/session (and :7415, :7425); CA: $dir/tls/switchboard-ca.pem; host token (all nodes): $token"
echo "console: https://127.0.0.1:7406/ (and :7416, :7426); the first administrator's one-time password is printed by the node that created it"
wait "${pids[@]}"
