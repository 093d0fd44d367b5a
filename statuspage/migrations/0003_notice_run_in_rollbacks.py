"""A notice's run is now rollbacks.Run: the same table, so state only."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('rollbacks', '0001_initial'),
        ('statuspage', '0002_default_texts'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
            model_name='notice',
            name='run',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='notices', to='rollbacks.run'),
                ),
            ],
        ),
    ]
