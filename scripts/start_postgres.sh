#!/usr/bin/env bash
# A local PostgreSQL server with a database for Optuna studies, for trying
# hydra.sweeper.storage=postgresql://... and for the tests marked `postgres` (docs/cluster.md).
# Idempotent: a running server, user and database are left as they are.
#
#   sudo scripts/start_postgres.sh         # prints the storage URL, e.g.
#                                          # postgresql://rnnexp:rnnexp@localhost:5432/optuna
#   scripts/start_postgres.sh --stop
#
# Needs root and Debian's packages: apt-get install -y postgresql
# The Python driver is an extra: pip install -e ".[postgres]" (psycopg 3).
# Settings (environment): RNNEXP_PG_USER, RNNEXP_PG_PASSWORD (both default "rnnexp"),
# RNNEXP_PG_DB (default "optuna").
set -euo pipefail

USER_NAME=${RNNEXP_PG_USER:-rnnexp}
PASSWORD=${RNNEXP_PG_PASSWORD:-rnnexp}
DB=${RNNEXP_PG_DB:-optuna}

say() { echo "start_postgres: $*" >&2; }

command -v pg_ctlcluster >/dev/null || { say "PostgreSQL not found: apt-get install -y postgresql"; exit 1; }
[[ $(id -u) == 0 ]] || { say "run as root (the server runs as the postgres user)"; exit 1; }

# The newest installed server version, and its "main" cluster (created when missing).
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$VERSION main"; then
    pg_createcluster "$VERSION" main >/dev/null
fi

if [[ "${1:-}" == "--stop" ]]; then
    pg_ctlcluster "$VERSION" main stop || true
    exit 0
fi

PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')
if ! pg_isready -q -h localhost -p "$PORT"; then
    pg_ctlcluster "$VERSION" main start
    for _ in $(seq 100); do pg_isready -q -h localhost -p "$PORT" && break; sleep 0.2; done
fi
pg_isready -q -h localhost -p "$PORT" || { say "the server did not start; see /var/log/postgresql/"; exit 1; }

psql_admin() { runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }
if [[ -z $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$USER_NAME'") ]]; then
    psql_admin -c "CREATE ROLE \"$USER_NAME\" LOGIN PASSWORD '$PASSWORD'"
fi
if [[ -z $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
    psql_admin -c "CREATE DATABASE \"$DB\" OWNER \"$USER_NAME\""
fi
# Many sweep workers and SLURM jobs each hold a connection pool: allow more than the default 100.
if [[ $(psql_admin -c "SHOW max_connections") -lt 300 ]]; then
    psql_admin -c "ALTER SYSTEM SET max_connections = 300"
    pg_ctlcluster "$VERSION" main restart
    for _ in $(seq 100); do pg_isready -q -h localhost -p "$PORT" && break; sleep 0.2; done
fi
echo "postgresql://$USER_NAME:$PASSWORD@localhost:$PORT/$DB"
