"""Deliveries may go to PagerDuty (statuspage.pagerduty, the Events API v2)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("statuspage", "0007_update_templates_from_defaults"),
    ]

    operations = [
        migrations.AlterField(
            model_name="delivery",
            name="channel",
            field=models.CharField(
                choices=[
                    ("slack", "Slack webhook"),
                    ("email", "Email"),
                    ("pagerduty", "PagerDuty"),
                ],
                max_length=10,
            ),
        ),
    ]
