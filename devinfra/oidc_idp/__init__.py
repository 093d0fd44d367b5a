"""An OpenID Connect provider for the tests and the demo, standing in for the identity
provider an organisation signs in with (Okta, Entra ID, Keycloak, Google Workspace).

It is django-oidc-provider 0.9 (OpenID Connect Core 1.0 and Discovery 1.0: the
authorization code flow with PKCE, RS256-signed ID tokens, a JWKS endpoint, userinfo) in a
Django project of its own, run as a separate process on its own port and SQLite file:

    python -m devinfra.oidc_idp --port 9400 --directory var/idp.json \\
        --client-id backout --client-secret s3cret \\
        --redirect-uri http://127.0.0.1:8000/oidc/callback/

The directory file lists the people who can sign in, with the groups the `groups` claim
carries and whether their sign-in counts as multi-factor (then the ID token's `amr` claim
says `["pwd", "mfa"]`, as a provider that enforced a second factor would):

    {"people": [{"username": "alice", "password": "...", "email": "alice@example.com",
                 "name": "Alice Ng", "groups": ["sre-oncall"], "mfa": true}]}

The client needs no consent screen. Its cookies are named apart from the console's, since
both run on 127.0.0.1 and browsers share cookies across ports. Endpoints, under /openid/:
authorize, token, userinfo, jwks, .well-known/openid-configuration; /login/ is its sign-in page.
"""
