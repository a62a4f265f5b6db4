#!/usr/bin/env bash
# A PostgreSQL server of its own for Optuna studies shared by several sweep workers or SLURM jobs
# (hydra.sweeper.storage=postgresql://..., docs/cluster.md). It lives in one folder (its data, its log,
# its generated password) and listens on localhost on its own port; the machine's own PostgreSQL
# clusters, roles, databases and settings are never touched. Idempotent: a running server is left
# as it is and its URL printed again.
#
#   scripts/start_postgres.sh            # prints the storage URL, e.g.
#                                        # postgresql://rnnexp:<generated>@localhost:5433/optuna
#   scripts/start_postgres.sh --stop     # stops it (the folder, with the studies, stays)
#
# Needs PostgreSQL's server binaries (Debian: apt-get install -y postgresql; they are found in
# /usr/lib/postgresql/<version>/bin or on PATH). As root the server runs as the postgres user.
# The Python driver is an extra: pip install -e ".[postgres]" (psycopg 3).
# Settings (environment): RNNEXP_PG_DIR (the folder; default ~/.local/share/rnnexp/postgres, as root
# /var/lib/rnnexp-postgres), RNNEXP_PG_PORT (default 5433), RNNEXP_PG_DB (default optuna).
# The tests do not use this script: they start a throwaway server per session (tests/helpers/services.py).
set -euo pipefail

if [[ $(id -u) == 0 ]]; then
    DIR=${RNNEXP_PG_DIR:-/var/lib/rnnexp-postgres}
else
    DIR=${RNNEXP_PG_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/rnnexp/postgres}
fi
PORT=${RNNEXP_PG_PORT:-5433}
DB=${RNNEXP_PG_DB:-optuna}
USER_NAME=rnnexp

say() { echo "start_postgres: $*" >&2; }

BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$BIN" ]]; then
    BIN=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
fi
[[ -x "$BIN/initdb" && -x "$BIN/pg_ctl" ]] || { say "PostgreSQL's server binaries not found: apt-get install -y postgresql"; exit 1; }

as_owner() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

url() { echo "postgresql://$USER_NAME:$(cat "$DIR/password")@localhost:$PORT/$DB"; }

if [[ "${1:-}" == "--stop" ]]; then
    if [[ -d "$DIR/data" ]]; then as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast stop || true; fi
    exit 0
fi

mkdir -p "$DIR"
chmod 700 "$DIR"
if [[ $(id -u) == 0 ]]; then chown postgres:postgres "$DIR"; fi
if [[ ! -s "$DIR/password" ]]; then
    # A password of its own for every server: 24 random letters and digits (no pipe: pipefail).
    password=$(tr -dc 'A-Za-z0-9' < <(head -c 400 /dev/urandom))
    (umask 077; printf '%s' "${password:0:24}" > "$DIR/password")
    if [[ $(id -u) == 0 ]]; then chown postgres:postgres "$DIR/password"; fi
fi
if [[ ! -s "$DIR/data/PG_VERSION" ]]; then
    # Local (Unix socket) connections by the owner need no password; TCP ones need the generated one.
    as_owner "$BIN/initdb" -D "$DIR/data" -U "$USER_NAME" --pwfile="$DIR/password" \
        --auth-local=peer --auth-host=scram-sha-256 -E UTF8 >/dev/null
fi
if ! as_owner "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    # Many sweep workers and SLURM jobs each hold a connection pool: more than the default 100.
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
        -o "-p $PORT -k $DIR -c listen_addresses=localhost -c max_connections=300" start >/dev/null \
        || { say "the server did not start; see $DIR/server.log"; exit 1; }
fi
export PGPASSWORD; PGPASSWORD=$(cat "$DIR/password")
if [[ -z $(as_owner env PGPASSWORD="$PGPASSWORD" "$BIN/psql" -h localhost -p "$PORT" -U "$USER_NAME" -d postgres -qtA \
        -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
    as_owner env PGPASSWORD="$PGPASSWORD" "$BIN/createdb" -h localhost -p "$PORT" -U "$USER_NAME" "$DB"
fi
url
