"""What the debug error page (DEBUG=1) and error e-mails may show of the settings.

Django hides settings whose names say they are secret (KEY, TOKEN, PASS...). Ours also keep
credentials under names that do not: DATABASE_URL, the broker and cache URLs, the Slack
webhook URL (the URL is the credential) and the registered commands (their `env`). Those are
hidden whole, and in every other value a URL's password is masked.
"""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

from executors.url_credentials import mask_url_credentials


class SettingsFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|CREDENTIAL|DSN|DATABASE_URL|BROKER_URL|REDIS_URL"
        "|WEBHOOK|REGISTERED_COMMANDS",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):  # lazy strings too (they pass for str)
            return mask_url_credentials(str(cleansed), self.cleansed_substitute)
        return cleansed
