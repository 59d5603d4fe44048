#!/usr/bin/env bash
# Native data-plane spike: single-core Rust reverse proxy vs nginx proxy_pass.
# Builds the spike, starts an nginx upstream (core 1), an nginx proxy_pass
# reference and the Rust proxy (both on core 0), and runs wrk (core 1)
# alternating the cases. Every process it starts is stopped on exit.
#
# Env: ROUNDS (default 3), DURATION (default 10s), CONNS (default 50),
#      BASE_PORT (default 18080), OUT (results file, default /tmp/native-spike-results.txt)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-50}"
BASE_PORT="${BASE_PORT:-18080}"
OUT="${OUT:-/tmp/native-spike-results.txt}"
UP_PORT=$((BASE_PORT + 1))      # nginx `return 200 "ok"` upstream
NGX_PORT=$((BASE_PORT + 2))     # nginx proxy_pass
RS_PORT=$((BASE_PORT + 3))      # rust proxy
RSK_PORT=$((BASE_PORT + 4))     # rust proxy + key check
KEY="key-04242"                 # one of the 10,000 preloaded keys

for t in nginx wrk taskset cargo curl; do
  command -v "$t" >/dev/null || { echo "missing: $t (apt-get install -y nginx-light wrk curl)" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs >= 2 cores" >&2; exit 1; }

WORK="$(mktemp -d /tmp/native-spike.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "== build"
( cd "$HERE" && cargo build --release --quiet )
BIN="$HERE/target/release/native-spike"

nginx_conf() { # name port body
  mkdir -p "$WORK/$1/logs"
  cat > "$WORK/$1/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_max_body_size 16m;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/$1/cb;
  proxy_temp_path $WORK/$1/px;
  fastcgi_temp_path $WORK/$1/fc;
  uwsgi_temp_path $WORK/$1/uw;
  scgi_temp_path $WORK/$1/sc;
  $3
  server {
    listen 127.0.0.1:$2 backlog=4096;
    $4
  }
}
CONF
}

nginx_conf upstream "$UP_PORT" "" 'location / { return 200 "ok"; }'
nginx_conf proxy "$NGX_PORT" \
  "upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }" \
  'location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_buffering on; }'

echo "== start (upstream + wrk on core 1, proxies on core 0)"
taskset -c 1 nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -e "$WORK/upstream/logs/error.log" & PIDS+=($!)
taskset -c 0 nginx -p "$WORK/proxy" -c "$WORK/proxy/nginx.conf" -e "$WORK/proxy/logs/error.log" & PIDS+=($!)
NGX_PROXY_MASTER=${PIDS[1]}
taskset -c 0 "$BIN" "$RS_PORT" "$UP_PORT" & PIDS+=($!); RS_PID=$!
taskset -c 0 "$BIN" "$RSK_PORT" "$UP_PORT" --keycheck & PIDS+=($!); RSK_PID=$!

wait_port() {
  for _ in $(seq 1 50); do
    curl -s -o /dev/null -H "authorization: $KEY" "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "port $1 did not come up" >&2; exit 1
}
for p in "$UP_PORT" "$NGX_PORT" "$RS_PORT" "$RSK_PORT"; do wait_port "$p"; done

echo "== sanity"
check() { # expected_code url [curl args...]
  local want="$1" url="$2"; shift 2
  local got; got="$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")"
  [ "$got" = "$want" ] || { echo "FAIL $url -> $got (want $want)" >&2; exit 1; }
  echo "ok  $want $url $*"
}
check 200 "http://127.0.0.1:$NGX_PORT/"
check 200 "http://127.0.0.1:$RS_PORT/"
check 200 "http://127.0.0.1:$RSK_PORT/" -H "authorization: $KEY"
check 401 "http://127.0.0.1:$RSK_PORT/"
check 401 "http://127.0.0.1:$RSK_PORT/" -H "authorization: key-99999"
body="$(curl -s "http://127.0.0.1:$RS_PORT/")"; [ "$body" = "ok" ] || { echo "bad body: $body" >&2; exit 1; }
echo "ok  body=$body"
# POST body streams through (upstream answers 200 regardless)
check 200 "http://127.0.0.1:$RS_PORT/post" --data-binary "@$BIN"

declare -A URL=( [a_upstream]="http://127.0.0.1:$UP_PORT/" [b_nginx_proxy]="http://127.0.0.1:$NGX_PORT/"
                 [c_rust_proxy]="http://127.0.0.1:$RS_PORT/" [d_rust_keycheck]="http://127.0.0.1:$RSK_PORT/" )
CASES=(a_upstream b_nginx_proxy c_rust_proxy d_rust_keycheck)
NGX_WORKER="$(pgrep -P "$NGX_PROXY_MASTER" | head -1)"
UP_WORKER="$(pgrep -P "${PIDS[0]}" | head -1)"
# process whose CPU time is charged to the case (the proxy under test; the upstream for a)
declare -A CPU_PID=( [a_upstream]="$UP_WORKER" [b_nginx_proxy]="$NGX_WORKER" [c_rust_proxy]="$RS_PID" [d_rust_keycheck]="$RSK_PID" )
HZ="$(getconf CLK_TCK)"
proc_cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }  # utime+stime in ticks

cpu0() { # prints "busy total" jiffies of core 0, then of core 1
  awk '$1=="cpu0"||$1=="cpu1"{t=0; for(i=2;i<=NF;i++) t+=$i; printf "%d %d ", t-$5-$6, t} END{print ""}' /proc/stat
}

run_wrk() { # case duration
  taskset -c 1 wrk -t1 -c"$CONNS" -d"$2" --latency -H "authorization: $KEY" "${URL[$1]}"
}

echo "== warm-up (2 s each)"
for c in "${CASES[@]}"; do run_wrk "$c" 2s >/dev/null; done

: > "$OUT"
for r in $(seq 1 "$ROUNDS"); do
  for c in "${CASES[@]}"; do
    log="$WORK/wrk-$c-$r.txt"
    read -r b0 t0 c0 u0 < <(cpu0); pc0=$(proc_cpu "${CPU_PID[$c]}")
    run_wrk "$c" "$DURATION" > "$log"
    read -r b1 t1 c1 u1 < <(cpu0); pc1=$(proc_cpu "${CPU_PID[$c]}")
    core1=$(awk -v b=$((c1-c0)) -v t=$((u1-u0)) 'BEGIN{printf "%.0f", (t>0?100*b/t:0)}')
    pcpu=$(awk -v d=$((pc1-pc0)) -v hz="$HZ" -v t=$((t1-t0)) 'BEGIN{printf "%.0f", (t>0?100*d/t:0)}')
    nreq=$(awk '/requests in/{print $1}' "$log")
    uspr=$(awk -v d=$((pc1-pc0)) -v hz="$HZ" -v n="$nreq" 'BEGIN{printf "%.1f", (n>0?1e6*d/hz/n:0)}')
    core0=$(awk -v b=$((b1-b0)) -v t=$((t1-t0)) 'BEGIN{printf "%.0f", (t>0?100*b/t:0)}')
    rps=$(awk '/^Requests\/sec:/{print $2}' "$log")
    p50=$(awk '$1=="50%"{print $2}' "$log")
    p99=$(awk '$1=="99%"{print $2}' "$log")
    bad=$(awk '/Non-2xx/{print $NF} /Socket errors/{print "sockerr:" $0}' "$log" | tr '\n' ' ')
    printf '%s round=%s rps=%s p50=%s p99=%s core0=%s%% cpu_us_per_req=%s proc_cpu=%s%% core1=%s%% %s\n' "$c" "$r" "$rps" "$p50" "$p99" "$core0" "$uspr" "$pcpu" "$core1" "$bad" | tee -a "$OUT"
  done
done

echo "== summary (mean and best over $ROUNDS rounds; ratios vs b_nginx_proxy; CPU us/req = proxy process utime+stime / requests, upstream worker for a)"
awk '
function ms(v){ if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
{ split($3,a,"="); split($4,b,"="); split($5,c,"="); split($6,d,"="); split($7,e,"="); n[$1]++; cpu[$1]+=d[2]+0; us[$1]+=e[2]; if (a[2]>best[$1]) best[$1]=a[2]; rps[$1]+=a[2]; p50[$1]+=ms(b[2]); p99[$1]+=ms(c[2]) }
END {
  ref = rps["b_nginx_proxy"]/n["b_nginx_proxy"]
  bref = best["b_nginx_proxy"]; uref = us["b_nginx_proxy"]/n["b_nginx_proxy"]
  printf "| case | req/s mean | x nginx | req/s best | x nginx (best) | p50 ms | p99 ms | core0 busy %% | CPU us/req | x nginx CPU |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
  split("a_upstream b_nginx_proxy c_rust_proxy d_rust_keycheck", order, " ")
  for (i=1;i<=4;i++){ k=order[i]; m=rps[k]/n[k]
    u=us[k]/n[k]
    printf "| %s | %.0f | %.2f | %.0f | %.2f | %.3f | %.3f | %.0f | %.1f | %.2f |\n", k, m, m/ref, best[k], best[k]/bref, p50[k]/n[k], p99[k]/n[k], cpu[k]/n[k], u, u/uref }
}' "$OUT"
echo "(raw per-round lines in $OUT)"
