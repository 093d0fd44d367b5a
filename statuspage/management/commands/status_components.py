"""Give every production service without a status-page component one of its own (named
after the service), so a fresh console or the demo has a status page to show. Safe to run
again; components are edited (renamed, grouped, hidden by unlinking) in the admin."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from incidents.models import Environment, Service
from statuspage.models import Component


class Command(BaseCommand):
    help = "Create a status-page component for each production service that has none."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        services = Service.objects.filter(
            environment=Environment.PRODUCTION, status_component__isnull=True
        ).order_by("name")
        taken = set(Component.objects.values_list("name", flat=True))
        position = Component.objects.count()
        created = 0
        for service in services:
            name = service.name.replace("-", " ").capitalize()
            if name in taken:
                continue
            position += 1
            Component.objects.create(
                name=name, description=service.description, position=position, service=service
            )
            taken.add(name)
            created += 1
        self.stdout.write(f"{created} status-page component(s) created")
