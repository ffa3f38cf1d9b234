"""Generation.owner: the per-minute limit counts a user's attempts of the last
minute through an (owner, started_at) index instead of joining every message of
the user. Existing rows take their conversation's owner."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def fill_owner(apps, schema_editor):
    Generation = apps.get_model("chat", "Generation")
    Message = apps.get_model("chat", "Message")
    owners = Message.objects.filter(pk=models.OuterRef("message_id")).values("conversation__owner_id")
    Generation.objects.update(owner_id=models.Subquery(owners))


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("chat", "0002_generation_started_at_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="generation",
            name="owner",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.RunPython(fill_owner, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="generation",
            name="owner",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.AlterField(
            model_name="generation",
            name="started_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddIndex(
            model_name="generation",
            index=models.Index(fields=["owner", "started_at"], name="chat_genera_owner_i_fa4a7e_idx"),
        ),
    ]
