from django.contrib import admin
from django.urls import include, path

from chat import stream, views

# /c/<conversation>/m/<message>/...: actions on one message.
message_urls = [
    path("stream/", stream.stream, name="chat-stream"),
    path("stop/", views.stop, name="chat-stop"),
    path("continue/", views.continue_answer, name="chat-continue"),
    path("retry/", views.retry, name="chat-retry"),
    path("feedback/", views.feedback, name="chat-feedback"),
    # On any message: a prompt's edit, the branch of a prompt or answer shown.
    path("edit/", views.edit, name="chat-edit"),
    path("switch/", views.switch, name="chat-switch"),
]

# /c/<conversation>/...: one conversation.
conversation_urls = [
    path("", views.conversation, name="chat-conversation"),
    path("send/", views.send, name="chat-send"),
    path("rename/", views.rename, name="chat-rename"),
    path("delete/", views.delete, name="chat-delete"),
    path("m/<int:message_id>/", include(message_urls)),
]

urlpatterns = [
    path("", views.home, name="chat-home"),
    path("c/new/", views.new_conversation, name="chat-new"),
    path("c/<int:conversation_id>/", include(conversation_urls)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
