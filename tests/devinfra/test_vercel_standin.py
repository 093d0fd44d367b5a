"""The Vercel stand-in speaks Vercel's error shape, auth and pagination."""

from __future__ import annotations

import requests

from devinfra.hosted.vercel import VercelStandin


def test_errors_have_vercels_shape_and_the_token_is_required(vercel: VercelStandin):
    missing = requests.get(f"{vercel.url}/v9/projects/web", timeout=5)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "forbidden"

    auth = {"Authorization": f"Bearer {vercel.token}"}
    gone = requests.get(f"{vercel.url}/v13/deployments/dpl_nosuch", headers=auth, timeout=5)
    assert gone.status_code == 404
    assert gone.json() == {
        "error": {"code": "not_found", "message": "The deployment could not be found."}
    }


def test_throttled_answers_carry_the_rate_limit_headers(vercel: VercelStandin):
    vercel.throttle_next(1, reset_in=5)
    auth = {"Authorization": f"Bearer {vercel.token}"}

    answer = requests.get(f"{vercel.url}/v9/projects/web", headers=auth, timeout=5)

    assert answer.status_code == 429 and answer.json()["error"]["code"] == "rate_limited"
    assert answer.headers["X-RateLimit-Remaining"] == "0"
    assert int(answer.headers["X-RateLimit-Reset"]) > 0


def test_deployments_page_by_until(vercel: VercelStandin):
    auth = {"Authorization": f"Bearer {vercel.token}"}
    query = {"projectId": "web", "target": "production", "limit": 2}

    first = requests.get(f"{vercel.url}/v6/deployments", params=query, headers=auth, timeout=5)
    until = first.json()["pagination"]["next"]
    rest = requests.get(
        f"{vercel.url}/v6/deployments", params={**query, "until": until}, headers=auth, timeout=5
    ).json()

    assert len(first.json()["deployments"]) == 2
    assert len(rest["deployments"]) == 1 and rest["pagination"]["next"] is None


def test_the_demo_seed_serves_the_marketing_site_with_its_bad_deployment_live(monkeypatch):
    from devinfra.hosted.vercel import seed_demo
    from executors.base import Connections
    from executors.vercel import VercelBackend

    seeded = seed_demo(Connections())
    try:
        (service,) = seeded.services
        monkeypatch.setenv(*next(iter(seeded.env.items())))
        chosen = VercelBackend(service.target_config, Connections())
        assert service.target_config["api_url"] == seeded.standin.url
        assert chosen.live_version() == service.live_version == service.releases[-1].artifact
        assert [release.known_good for release in service.releases] == [True, True, False]
    finally:
        seeded.standin.stop()
