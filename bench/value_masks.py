"""Time the masking of secret values in an API's answer (executors.value_masks): what a
usual error costs, and what an answer built to be expensive costs at worst.

    .venv/bin/python bench/value_masks.py [--repeat 5]

Each case masks one text for its values, cut to the 300 characters executors.rest quotes,
and prints the median and the slowest of `--repeat` calls, the characters read (the text is
read only READ_AHEAD characters per value character past the cut), and whether the value
was masked. The usual cases are what the backends meet: a JSON error repeating a token or
a connection URL, Doppler's three values, a 1 MB HTML error page from a proxy. The worst
cases pair the largest value a secret store keeps (64 KiB) with text made only of what
masking decodes (percent escapes, backslashes, entities), so that every reading of it
differs. No target: an error is masked once, off any request's path, and the figures say
what the worst answer costs a worker's thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from executors.url_credentials import MASK
from executors.value_masks import READ_AHEAD, mask_values

EXCERPT = 300
URL = "postgres://orders:ｐａｓｓ-密码-🔑@db.internal:5432/orders?sslmode=require"
TOKEN = "dp.st.prd." + "Qx7" * 14
BIG = "-----BEGIN CERTIFICATE-----\n" + "MIIB" * 16_380 + "\n-----END CERTIFICATE-----"


def cases() -> list[tuple[str, str, list[str]]]:
    """(name, text, values) of each case."""
    doppler = [
        URL,
        URL.replace("db.internal", "db-b.internal"),
        "0123456789abcdef sha256:1 sha256:2",
    ]
    return [
        ("JSON error repeating the token", json.dumps({"message": f"bad token {TOKEN}"}), [TOKEN]),
        ("JSON error, a value escaped twice", json.dumps({"e": json.dumps(URL)}), [URL]),
        ("Doppler's three values, one repeated", f"Invalid value {json.dumps(URL)}", doppler),
        ("1 MB HTML page, no value in it", "<p>upstream error</p>" * 50_000, [TOKEN]),
        ("64 KiB value, 2.4 MB of plain text", "a" * 2_400_000, [BIG]),
        ("64 KiB value, 2.4 MB of %41", "%41" * 800_000, [BIG]),
        ("64 KiB value, 2.4 MB of \\\\u0041", "\\\\u0041" * 300_000, [BIG]),
        ("64 KiB value, 2.4 MB of &#65;", "&#65;" * 480_000, [BIG]),
        (
            "50 values of 1 KiB, 2.4 MB of %41",
            "%41" * 800_000,
            [f"{n:04d}" * 256 for n in range(50)],
        ),
    ]


def timed(call: Callable[[], str], repeat: int) -> tuple[float, float, str]:
    seconds, result = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), max(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    print(f"masking, cut to {EXCERPT} characters; median and slowest of {options.repeat} calls")
    print(f"  {'case':<40} {'median':>9} {'slowest':>9} {'chars read':>11}  masked")
    for name, text, values in cases():

        def call(text: str = text, values: list[str] = values) -> str:
            return mask_values(text, values, limit=EXCERPT)

        median, slowest, result = timed(call, options.repeat)
        read = min(len(text), EXCERPT + READ_AHEAD * max(len(value.encode()) for value in values))
        masked = "yes" if MASK in result else "no value"
        print(
            f"  {name:<40} {median * 1000:>7.1f}ms {slowest * 1000:>7.1f}ms {read:>11,}  {masked}"
        )


if __name__ == "__main__":
    main()
