"""A bad DATABASE_URL or REDIS_URL stops the process at start-up, naming the
variable, instead of failing at the first request.

Settings are read once per process, so each case starts a fresh Python with a
clean environment (no PYTEST_VERSION, which relaxes settings for the tests).
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

# Every case starts a Python process and the whole app: not in the quick loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {"DJANGO_DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50)}


def start(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "chatproject.settings", **PRODUCTION, **env}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(env: dict[str, str]) -> str:
    """The last line of the traceback: what an operator reads."""
    result = start(env)
    assert result.returncode != 0, f"{env} was accepted"
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("django.core.exceptions.ImproperlyConfigured: "), result.stderr
    return line


def test_it_starts_with_postgresql_and_redis_urls():
    # Nothing connects at start-up: the servers need not be running.
    result = start(
        {"DATABASE_URL": "postgres://chat@db.example:5432/chat", "REDIS_URL": "redis://cache.example:6379/0"}
    )
    assert result.returncode == 0, result.stderr
    result = start({"DATABASE_URL": "postgresql://chat@db.example/chat", "REDIS_URL": "unix:///run/redis.sock?db=2"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "url", "schemes"),
    [
        ("DATABASE_URL", "mysql://chat@db.example/chat", "sqlite://, postgres://, postgresql://"),
        ("DATABASE_URL", "db.example:5432/chat", "sqlite://, postgres://, postgresql://"),
        ("DATABASE_URL", "http://db.example/chat", "sqlite://, postgres://, postgresql://"),
        ("REDIS_URL", "http://cache.example:6379", "redis://, rediss://, unix://"),
        ("REDIS_URL", "cache.example:6379", "redis://, rediss://, unix://"),
        ("REDIS_URL", "memcached://cache.example", "redis://, rediss://, unix://"),
    ],
)
def test_a_url_of_another_kind_is_refused_with_its_name(name, url, schemes):
    line = refused({name: url})
    assert f"{name}={url!r} must start with one of: {schemes}." in line


@pytest.mark.parametrize(
    ("name", "url"),
    [("DATABASE_URL", "postgres://chat@db.example:port/chat"), ("REDIS_URL", "redis://cache.example:port/0")],
)
def test_a_malformed_url_is_refused_with_its_name(name, url):
    assert name in refused({name: url})


def test_encryption_keys_must_be_fernet_keys_and_are_never_repeated():
    from cryptography.fernet import Fernet

    good = Fernet.generate_key().decode()
    assert start({"CHAT_ENCRYPTION_KEYS": f"{good}, {Fernet.generate_key().decode()}"}).returncode == 0
    line = refused({"CHAT_ENCRYPTION_KEYS": f"{good},not-a-key-but-a-secret"})
    assert "CHAT_ENCRYPTION_KEYS: key number 2 is not a Fernet key" in line
    assert "not-a-key-but-a-secret" not in line and good not in line
