"""Generation.error_detail: the provider's own account of a failure, for staff
only (users read a fixed sentence in `error`). StopReason.OUTPUT_LIMIT: the model
asked for too many tool calls at once, or sent oversized arguments or lines."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0003_generation_owner'),
    ]

    operations = [
        migrations.AddField(
            model_name='generation',
            name='error_detail',
            field=models.TextField(blank=True),
        ),
        migrations.AlterField(
            model_name='generation',
            name='stop_reason',
            field=models.CharField(blank=True, choices=[('', '—'), ('user_stop', 'Stopped by the user'), ('provider_error', 'Model provider error'), ('server_restart', 'Server restarted'), ('token_limit', 'Reached the token limit'), ('tool_round_limit', 'Too many tool rounds'), ('unwatched', 'Nobody was watching'), ('answer_limit', 'Reached the answer length limit'), ('internal_error', 'Server error'), ('output_limit', "The model's output went past a limit")], max_length=20),
        ),
        migrations.AlterField(
            model_name='message',
            name='stop_reason',
            field=models.CharField(blank=True, choices=[('', '—'), ('user_stop', 'Stopped by the user'), ('provider_error', 'Model provider error'), ('server_restart', 'Server restarted'), ('token_limit', 'Reached the token limit'), ('tool_round_limit', 'Too many tool rounds'), ('unwatched', 'Nobody was watching'), ('answer_limit', 'Reached the answer length limit'), ('internal_error', 'Server error'), ('output_limit', "The model's output went past a limit")], db_index=True, max_length=20),
        ),
    ]
