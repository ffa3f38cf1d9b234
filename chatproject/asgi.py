import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from chat.db_threads import SharedDatabaseThreads  # noqa: E402
from chat.inline_middleware import InlineMiddlewareASGIHandler  # noqa: E402

# Django's ASGI handler, with the middleware hooks that need no thread run inline.
application = InlineMiddlewareASGIHandler()

if settings.SERVE_STATIC:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

application = SharedDatabaseThreads(application)
