from django.conf import settings
from django.http import HttpRequest

from chat.provider.client import uses_demo_model


def model_info(request: HttpRequest) -> dict:
    return {"demo_model": uses_demo_model(), "chat_model": settings.CHAT_MODEL}
