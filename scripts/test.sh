#!/usr/bin/env bash
# The whole test suite, twice: on the embedded defaults (SQLite, in-process event
# log), then on PostgreSQL and Redis. Arguments go to pytest (then only the
# first pass runs). Browser tests use Debian's chromium when it is installed; the
# real-model tests (marker realmodel) the model server of requirements-model.txt,
# installed here once (without it they are skipped, or under REQUIRE_SERVICES=1
# the run fails).
source "$(dirname "$0")/bootstrap.sh"

if ! install_model_requirements; then
  if [ "${REQUIRE_SERVICES:-0}" = 1 ]; then
    exit 1
  fi
  echo "== The real-model tests will be skipped."
fi

if [ $# -gt 0 ]; then
  exec python -m pytest "$@"
fi

echo "== Pass 1: SQLite, in-process event log"
env -u DATABASE_URL -u REDIS_URL python -m pytest

database_url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
redis_url="${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
if python - "$database_url" "$redis_url" <<'PY'
import sys, psycopg, redis
try:
    psycopg.connect(sys.argv[1], connect_timeout=3).close()
    redis.Redis.from_url(sys.argv[2], socket_connect_timeout=3).ping()
except Exception as exc:
    print(f"PostgreSQL or Redis is not reachable: {exc}")
    sys.exit(1)
PY
then
  # Without the real-model and browser tests: what this pass changes is storage
  # and the event log, which the other tests cover (streaming, Stop, Continue,
  # several workers, search); the model server and what the page shows are the
  # same as in pass 1. It keeps CI's whole run near half an hour.
  echo "== Pass 2: PostgreSQL ($database_url), Redis Streams ($redis_url), without the real model and the browser"
  DATABASE_URL="$database_url" REDIS_URL="$redis_url" python -m pytest -m "not realmodel and not browser"
elif [ "${REQUIRE_SERVICES:-0}" = 1 ]; then
  echo "Pass 2 needs PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL)." >&2
  exit 1
else
  echo "== Pass 2 skipped: start PostgreSQL and Redis (or set TEST_DATABASE_URL, TEST_REDIS_URL) to run it."
fi
