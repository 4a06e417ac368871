#!/usr/bin/env bash
# Runs every bench of BENCHMARKS.md one after the other (never in parallel), then prints the
# tables. When PostgreSQL is installed (as scripts/test expects it), a throwaway server is
# started for the PostgreSQL first-login figures and the benches are built with
# `--features postgres`; otherwise those rows are skipped.
#
#   ./benches/run.sh                 # the whole suite, ~10 minutes on 2 cores after the build
#   ./benches/run.sh callback        # one bench
set -euo pipefail
shopt -s lastpipe
cd "$(dirname "$0")/.."

ARGS=(--warm-up-time 1 --measurement-time 3)
BENCHES=("$@")
[ ${#BENCHES[@]} -gt 0 ] || BENCHES=(authenticated_request callback bearer first_login breakdown mapping)
FEATURES=()

stop_postgres() {
  if [ -n "${JIT_PG_DIR:-}" ]; then
    "${JIT_PG_AS[@]}" "$JIT_PG_BIN/pg_ctl" -D "$JIT_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$JIT_PG_DIR"
  fi
}

if [ -z "${JIT_BENCH_PG_URL:-}" ] && [[ " ${BENCHES[*]} " == *" first_login "* ]]; then
  JIT_PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$JIT_PG_BIN" ] && [ -x "$JIT_PG_BIN/initdb" ]; then
    echo "== starting a throwaway PostgreSQL ($JIT_PG_BIN), fsync on"
    JIT_PG_DIR=$(mktemp -d /tmp/jit-bench-pg.XXXXXX)
    JIT_PG_AS=()
    if [ "$(id -u)" = 0 ]; then
      chown postgres "$JIT_PG_DIR"
      JIT_PG_AS=(runuser -u postgres --)
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    trap stop_postgres EXIT
    "${JIT_PG_AS[@]}" "$JIT_PG_BIN/initdb" -D "$JIT_PG_DIR/data" -A trust -U postgres >/dev/null
    "${JIT_PG_AS[@]}" "$JIT_PG_BIN/pg_ctl" -D "$JIT_PG_DIR/data" -l "$JIT_PG_DIR/log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $JIT_PG_DIR" start >/dev/null
    export JIT_BENCH_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  fi
fi
if [ -n "${JIT_BENCH_PG_URL:-}" ]; then
  FEATURES=(--features postgres)
fi

LOG="${CARGO_TARGET_DIR:-target}/benches.log"
mkdir -p "$(dirname "$LOG")"
: > "$LOG"
echo "== $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo 'no git'), load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
for bench in "${BENCHES[@]}"; do
  echo "== cargo bench --bench $bench ${FEATURES[*]} -- ${ARGS[*]}" | tee -a "$LOG"
  cargo bench --bench "$bench" "${FEATURES[@]}" -- "${ARGS[@]}" 2>&1 | tee -a "$LOG"
done

python3 benches/report.py
echo
echo "== interleaved comparisons and checks (from $LOG)"
grep -E "interleaved|per round|per request|provisioned|answered|users written|creates|token of|signing" "$LOG" || true
