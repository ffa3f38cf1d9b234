import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from chat.serving.db_threads import SharedDatabaseThreads  # noqa: E402
from chat.serving.handler import ChatASGIHandler  # noqa: E402

# Django's ASGI handler (as get_asgi_application() builds it), without the
# reference cycle a disconnect leaves (chat/serving/handler.py).
application = ChatASGIHandler()

if settings.SERVE_STATIC:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

application = SharedDatabaseThreads(application)
