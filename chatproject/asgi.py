import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
application = get_asgi_application()

from django.conf import settings  # noqa: E402

from chat.serving.db_threads import SharedDatabaseThreads  # noqa: E402

if settings.SERVE_STATIC:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

application = SharedDatabaseThreads(application)
