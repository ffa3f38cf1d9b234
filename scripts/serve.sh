#!/usr/bin/env bash
# Development server: install, migrate, create the local superuser once, serve with daphne.
source "$(dirname "$0")/bootstrap.sh"
export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"
python manage.py migrate --noinput
python manage.py ensure_local_user
port="${PORT:-8000}"
echo
echo "Chat is at http://127.0.0.1:${port}/ (Ctrl+C stops it)."
if [ -z "${OPENAI_API_KEY:-}" ] && [ -z "${OPENAI_BASE_URL:-}" ]; then
  echo "No OPENAI_API_KEY: the offline demo model answers."
fi
exec daphne -b 127.0.0.1 -p "$port" chatproject.asgi:application
