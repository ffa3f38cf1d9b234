"""Signing in: `login_required` for this app's views, sync and async, and the
page of a sign-in refused after too many failures."""

import math
from datetime import timedelta

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.contrib.auth import decorators
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


async def _is_authenticated(user) -> bool:
    return user.is_authenticated


def login_required(view):
    """Django's decorator, except that for an async view the check runs on the
    event loop: Django's runs its test function in a thread, a round trip per
    request (two per answer: the POST and its stream) for one attribute read."""
    if iscoroutinefunction(view):
        return decorators.user_passes_test(_is_authenticated)(view)
    return decorators.login_required(view)


def locked_out(request: HttpRequest, *_axes_arguments) -> HttpResponse:
    """django-axes' AXES_LOCKOUT_CALLABLE: what a locked-out sign-in gets.

    Every attempt, refused ones included, restarts the wait, so the whole of it is
    what is left. (What else axes passes, the original response and the
    credentials, is not needed; its async middleware passes them in another order.)"""
    wait = settings.AXES_COOLOFF_TIME
    response = render(request, "registration/locked_out.html", {"wait": _duration(wait)}, status=429)
    response["Retry-After"] = str(math.ceil(wait.total_seconds()))
    return response


def _duration(wait: timedelta) -> str:
    seconds = math.ceil(wait.total_seconds())
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
