"""The "Your data" page: one's conversations exported as a file, and files
imported (chat/portability.py)."""

import json

from django.conf import settings
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from chat import portability
from chat.serving.login import login_required


@require_GET
@login_required
def data(request: HttpRequest) -> HttpResponse:
    return _page(request)


def _page(request: HttpRequest, *, status: int = 200, **context) -> HttpResponse:
    context["max_import_mb"] = settings.CHAT_MAX_IMPORT_BYTES / 1_000_000
    return render(request, "chat/data.html", context, status=status)


@require_GET
@login_required
def export(request: HttpRequest) -> HttpResponse:
    document = portability.export_of(request.user)
    response = HttpResponse(json.dumps(document, ensure_ascii=False, indent=1), content_type="application/json")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="chats-{stamp}.json"'
    return response


@require_POST
@login_required
def import_file(request: HttpRequest) -> HttpResponse:
    upload = request.FILES.get("file")
    if upload is None:
        return _page(request, status=400, refused="Choose a file to import.")
    try:
        portability.check_size(upload.size)  # before the file is read
        imported = portability.store(request.user, portability.read(upload.read()))
    except portability.ImportRefused as refused:
        return _page(request, status=400, refused=str(refused))
    except IntegrityError:
        # The same file imported at the same moment by another request: its
        # conversations are there (or will be) once; this one stored nothing.
        return _page(request, status=409, refused="That file is being imported already. Reload in a moment.")
    return _page(request, imported=imported)
