"""Screenshots of the public status page for docs/: a desktop, a phone and dark mode.

    .venv/bin/python scripts/status_screenshots.py [--out docs]

It makes a throwaway database (named after TEST_DATABASE_NAME, else test_<NAME>, as the
tests do), migrates it, seeds the page the accessibility test checks
(tests/browser/status_seed.py), serves the console on 127.0.0.1 and renders the page in
Debian's Chromium (CHROMIUM_PATH) through Playwright, then drops the database. PostgreSQL
must be running; Redis is not needed (the page's cache is kept in memory here).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOTS = {
    "status-page-desktop.png": {
        "viewport": {"width": 1280, "height": 1000},
        "color_scheme": "light",
    },
    "status-page-phone.png": {
        "viewport": {"width": 390, "height": 844},
        "color_scheme": "light",
        "device_scale_factor": 2,
        "is_mobile": True,
    },
    "status-page-dark.png": {"viewport": {"width": 1280, "height": 1000}, "color_scheme": "dark"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs")
    out: Path = parser.parse_args().out
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

    import django

    django.setup()

    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.cache import cache
    from django.db import connection
    from django.test.testcases import LiveServerThread
    from django.test.utils import override_settings
    from django.urls import reverse
    from playwright.sync_api import sync_playwright

    from tests.browser.status_seed import seed_status_page
    from tests.chromium import CHROMIUM, CHROMIUM_ARGS

    memory_cache = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=memory_cache, ALLOWED_HOSTS=["127.0.0.1", "localhost"]):
        cache.clear()
        old_name = connection.settings_dict["NAME"]
        connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
        server = None
        try:
            seed_status_page()
            server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
            server.daemon = True
            server.start()
            server.is_ready.wait()
            if server.error:
                raise server.error
            url = f"http://127.0.0.1:{server.port}{reverse('status_page')}"
            out.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for name, options in SHOTS.items():
                    context = browser.new_context(**options)  # type: ignore[arg-type]
                    page = context.new_page()
                    page.goto(url)
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(out / name), full_page=True)
                    context.close()
                    print(f"wrote {out / name}")
                browser.close()
        finally:
            if server is not None:
                server.terminate()
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
