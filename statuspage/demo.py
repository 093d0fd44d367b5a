"""The demo's status page: components customers recognise, fed by the demo's services
(incidents.demo and devinfra.demo name them). Several services stand behind "Checkout";
the databases' internals, the status site's DNS record and the integrity check feed
nothing customers would name, so they are on no line of the page.

`manage.py status_components` (as bin/demo runs it) lays this out with
statuspage.components.components_lay_out: only the components whose services exist, so
the fallback demo without infrastructure (one "checkout" service) gets "Checkout" alone.
"""

from __future__ import annotations

from statuspage.components import PlannedComponent, PlannedGroup

DEMO_LAYOUT: tuple[PlannedGroup | PlannedComponent, ...] = (
    PlannedGroup(
        "Online store",
        "What shoppers use",
        (
            PlannedComponent(
                "Storefront",
                "Browsing the shop, search and product pages",
                ("storefront-web", "web-frontend"),
            ),
            PlannedComponent(
                "Checkout",
                "Basket, card payments and order confirmation",
                ("checkout", "payments-api", "storefront-api", "new-checkout-flow"),
            ),
            PlannedComponent(
                "Order history",
                "Past orders and receipts in your account",
                ("orders-db", "orders-schema"),
            ),
        ),
    ),
    PlannedGroup(
        "For merchants",
        "Tools for the shops selling with us",
        (
            PlannedComponent(
                "Dashboard",
                "Orders, refunds and payouts in the merchant dashboard",
                ("storefront-api", "payments-api", "orders-db"),
            ),
            PlannedComponent("API", "The REST API and its webhooks", ("storefront-api",)),
        ),
    ),
    PlannedComponent(
        "Email notifications",
        "Order confirmations and shipping updates by email",
        ("storefront-worker",),
        only_show_if_degraded=True,
    ),
)
