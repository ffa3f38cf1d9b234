"""The tree (0005, 0006) keeps replaced answers as siblings: `superseded_by` goes."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0006_superseded_attempts_become_siblings"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="message",
            name="superseded_by",
        ),
    ]
