"""`login_required` for this app's views, sync and async.

What would let it go: Django's decorator checking an async view's user on the
event loop (its check is a plain function, so Django sends it to a thread)."""

from asgiref.sync import iscoroutinefunction
from django.contrib.auth import decorators


async def _is_authenticated(user) -> bool:
    return user.is_authenticated


def login_required(view):
    """Django's decorator, except that for an async view the check runs on the
    event loop: Django's runs its test function in a thread, a round trip per
    request (two per answer: the POST and its stream) for one attribute read."""
    if iscoroutinefunction(view):
        return decorators.user_passes_test(_is_authenticated)(view)
    return decorators.login_required(view)
