#!/usr/bin/env bash
# Start a PostgreSQL server on loopback for the bar-store tests and print its SQLAlchemy URL on
# stdout. Installs Debian's postgresql when missing (CI runs as root). When a step fails it
# prints nothing on stdout, says on stderr which step failed with that command's output, and
# exits 1 (.ci/run then fails the run under CI=true).
set -u

fail() {  # fail STEP OUTPUT
  printf '.ci/postgres.sh: %s failed\n%s\n' "$1" "$2" >&2
  exit 1
}

step() {  # step WHAT COMMAND...: run COMMAND, or fail with WHAT and its output
  local what=$1 out
  shift
  out=$("$@" 2>&1) || fail "$what ($*)" "$out"
}

as_postgres() {  # as_postgres SQL: run one statement as the postgres superuser
  su postgres -c "psql -qAtc \"$1\""
}

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  [ "$(id -u)" = "0" ] || fail "installing postgresql" "not root: cannot apt-get install postgresql"
  command -v apt-get >/dev/null 2>&1 || fail "installing postgresql" "no apt-get on this machine"
  step "apt-get update" apt-get update -qq
  step "installing postgresql" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
  step "initdb" pg_createcluster "$version" main
fi
read -r cluster_version cluster_name port status _ < <(pg_lsclusters -h | head -1)
if [ "$status" != "online" ]; then
  step "starting the server" pg_ctlcluster "$cluster_version" "$cluster_name" start
fi
ready=""
for _ in $(seq 1 30); do
  ready=$(as_postgres "select 1" 2>&1) && break
  sleep 1
done
if [ "$ready" != "1" ]; then
  log="/var/log/postgresql/postgresql-${cluster_version}-${cluster_name}.log"
  fail "waiting 30 s for the server to accept connections" \
    "$ready$( [ -r "$log" ] && printf '\n--- last lines of %s\n' "$log" && tail -20 "$log")"
fi
roles=$(as_postgres "select 1 from pg_roles where rolname='kerastrader'" 2>&1) \
  || fail "looking up role kerastrader" "$roles"
[ "$roles" = "1" ] || step "creating role kerastrader" \
  su postgres -c "psql -qc \"create role kerastrader login password 'kerastrader'\""
dbs=$(as_postgres "select 1 from pg_database where datname='kerastrader_test'" 2>&1) \
  || fail "looking up database kerastrader_test" "$dbs"
[ "$dbs" = "1" ] || step "creating database kerastrader_test" \
  su postgres -c "createdb -O kerastrader kerastrader_test"
echo "postgresql+psycopg://kerastrader:kerastrader@127.0.0.1:${port}/kerastrader_test"
