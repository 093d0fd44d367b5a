"""The public pages' branding from settings (statuspage.conf): a logo, the link behind it,
and a brand colour for the header band.

The pages run under a Content-Security-Policy that allows no inline style, so the colour
cannot be written into the HTML. It reaches the page as a tiny stylesheet of two custom
properties, served from the page's own origin (`brand_stylesheet`, at `brand.css` beside the
page) and cached by a version in its URL. The text on the band is black or white, whichever
contrasts more with the colour by WCAG's relative luminance, so any colour reads at least
4.5:1 (the worst case, a mid grey, still gives about 4.6:1).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from statuspage import conf

logger = logging.getLogger(__name__)

HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
BLACK, WHITE = "#000000", "#ffffff"
# The band's colour while STATUS_PAGE_BRAND_COLOR is unusable (the console's own top bar).
FALLBACK = "#141a26"
UNSAFE = frozenset(" \"'<>;,\\`")
# The public pages allow no script at all; images also from a logo's own origin.
POLICY = "default-src 'self'; img-src 'self' data:{logo}; script-src 'none'; object-src 'none'"


class BrandingError(ValueError):
    """A branding setting that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Brand:
    """What the public pages show of the brand: colours as #rrggbb, URLs as configured."""

    color: str
    text_color: str
    logo_url: str
    homepage_url: str

    @property
    def version(self) -> str:
        """Changes with the colours: the stylesheet's URL carries it, so caches refresh."""
        return hashlib.sha256(f"{self.color}{self.text_color}".encode()).hexdigest()[:10]


def hex_color(value: str, *, setting: str = "STATUS_PAGE_BRAND_COLOR") -> str:
    """`value` as a lowercase #rrggbb, or BrandingError naming `setting`."""
    if not HEX_COLOR.fullmatch(value):
        raise BrandingError(
            f"{setting} is {value[:40]!r}, not a hex colour: write #rgb or #rrggbb, e.g. #24478f."
        )
    digits = value[1:].lower()
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    return f"#{digits}"


def relative_luminance(color: str) -> float:
    """WCAG 2's relative luminance of a #rrggbb colour (0 black to 1 white)."""

    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (int(color[index : index + 2], 16) for index in (1, 3, 5))
    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2's contrast ratio of two #rrggbb colours (1 to 21)."""
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def text_color_on(color: str) -> str:
    """Black or white, whichever contrasts more with `color`."""
    return WHITE if contrast_ratio(color, WHITE) >= contrast_ratio(color, BLACK) else BLACK


def page_url_setting(value: str, setting: str, *, path_allowed: bool) -> str:
    """`value` if it is an http(s) URL (or, where `path_allowed`, a path on this host), or
    BrandingError naming `setting`. Empty stays empty."""
    if not value:
        return value
    where = "an http(s) URL" + (" or a path starting with /" if path_allowed else "")
    # Nothing that could end the HTML attribute or the policy's source list it lands in.
    if not (value.isascii() and value.isprintable()) or any(c in value for c in UNSAFE):
        raise BrandingError(
            f"{setting} is {value[:80]!r}: give {where}, without spaces, quotes, ; or ,."
        )
    if path_allowed and value.startswith("/") and not value.startswith("//"):
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BrandingError(f"{setting} is {value[:80]!r}: give {where}.")
    return value


def brand() -> Brand:
    """The brand as the settings give it now; BrandingError for a setting that is wrong."""
    color = hex_color(conf.brand_color())
    return Brand(
        color=color,
        text_color=text_color_on(color),
        logo_url=page_url_setting(conf.logo_url(), "STATUS_PAGE_LOGO_URL", path_allowed=True),
        homepage_url=page_url_setting(
            conf.homepage_url(), "STATUS_PAGE_HOMEPAGE_URL", path_allowed=False
        ),
    )


def brand_or_fallback() -> Brand:
    """The brand, or (when a setting is wrong and the start-up check was bypassed) a plain
    one without logo or link, so that the public pages still answer; the fault is logged."""
    try:
        return brand()
    except BrandingError as error:
        logger.error("status page branding ignored: %s", error)
        return Brand(
            color=FALLBACK, text_color=text_color_on(FALLBACK), logo_url="", homepage_url=""
        )


def brand_stylesheet(current: Brand) -> str:
    """The brand's colours as the custom properties status.css uses."""
    return (
        "/* The status page's brand (STATUS_PAGE_BRAND_COLOR), made by statuspage.branding. */\n"
        f".public-status {{ --brand: {current.color}; --on-brand: {current.text_color}; }}\n"
    )


def public_page_policy(current: Brand | None = None) -> str:
    """The Content-Security-Policy of the public pages: no script, nothing from elsewhere
    but the logo's images."""
    logo = (current or brand_or_fallback()).logo_url
    parts = urlsplit(logo)
    origin = f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return POLICY.format(logo=origin)
