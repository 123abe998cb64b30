#!/usr/bin/env bash
# Start a PostgreSQL server on loopback for the bar-store tests and print its SQLAlchemy URL.
# Installs Debian's postgresql when missing (CI runs as root). Prints nothing on failure, so
# the PostgreSQL tests skip with their reason instead of failing the run.
set -u
{
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  fi
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
    pg_createcluster "$version" main
  fi
  cluster=$(pg_lsclusters -h | head -1 | awk '{print $1" "$2}')
  pg_ctlcluster $cluster start || true
  for _ in $(seq 1 30); do
    su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
    sleep 1
  done
  su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname='kerastrader'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"create role kerastrader login password 'kerastrader'\""
  su postgres -c "psql -qAtc \"select 1 from pg_database where datname='kerastrader_test'\"" \
    | grep -q 1 || su postgres -c "createdb -O kerastrader kerastrader_test"
  port=$(pg_lsclusters -h | head -1 | awk '{print $3}')
} >/dev/null 2>&1 || exit 0
su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 || exit 0
echo "postgresql+psycopg://kerastrader:kerastrader@127.0.0.1:${port}/kerastrader_test"
