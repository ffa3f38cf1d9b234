"""`manage.py ensure_local_user` (run by `make run`): the first user of a fresh
install, and what it is told about it."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands, load_command_class

pytestmark = pytest.mark.django_db


def ensure_local_user() -> str:
    out = StringIO()
    call_command("ensure_local_user", stdout=out)
    return out.getvalue()


def test_it_creates_a_superuser_and_calls_it_one():
    output = ensure_local_user()
    user = get_user_model().objects.get()
    assert (user.username, user.is_superuser, user.is_staff) == ("admin", True, True)
    assert "Created a local superuser for this machine" in output
    password = output.split("password: ")[1].split()[0]
    assert user.check_password(password)
    help_text = load_command_class(get_commands()["ensure_local_user"], "ensure_local_user").help
    assert "superuser" in help_text
    assert "staff" not in (help_text + output).lower()


def test_it_keeps_an_existing_user_and_shows_no_password(alice):
    output = ensure_local_user()
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["alice"]
    assert "password:" not in output
    assert "Log in with your existing user." in output
