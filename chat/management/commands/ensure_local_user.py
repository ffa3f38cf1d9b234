"""Create the local user on a fresh install and say how to log in."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a local superuser (every permission, the admin site) with a random password if there is no user yet."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options) -> None:
        User = get_user_model()
        if User.objects.exists():
            self.stdout.write(
                f"Log in with your existing user. Forgot the password? python manage.py changepassword {username}"
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.SUCCESS("Created a local superuser for this machine (it can also use /admin/):"))
        self.stdout.write(f"    username: {username}\n    password: {password}")
        self.stdout.write("Keep the password: it is shown only this once.")
