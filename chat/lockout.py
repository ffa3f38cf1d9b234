"""The page of a sign-in refused after too many failures (django-axes)."""

import math
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


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
