from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _search_index_in_place(using: str, apps=None, **kwargs) -> None:
    """A later migration that rebuilds a table on SQLite drops its triggers, and
    the full-text index would stop following its rows: put them back (when the
    schema has the index at all: migration 0010 made Share)."""
    from chat.search import install_index

    try:
        if apps is not None:  # a migration's state (a flush sends none: the schema is the models')
            apps.get_model("chat", "Share")
    except LookupError:
        return
    connection = connections[using]
    with connection.schema_editor() as schema_editor:
        install_index(schema_editor)


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the deploy check for the middleware subclasses.
        from chat.serving import middleware  # noqa: F401

        post_migrate.connect(_search_index_in_place, sender=self)
