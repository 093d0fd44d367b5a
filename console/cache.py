"""The cache's serializer: JSON, never pickle.

Django's Redis cache stores pickles by default, and unpickling runs code: whoever can write
to the Redis (a shared instance, a leaked password) could then run code in every web and
worker process. JSON carries data only. Integers stay bare, as Django's own serializer keeps
them, so that incr() and decr() work in Redis. Values must be JSON-able (dates and decimals
as DjangoJSONEncoder writes them, read back as strings): cache what a page renders, never
model instances.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


class JsonSerializer:
    def dumps(self, value: Any) -> bytes | int:
        if type(value) is int:
            return value
        return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        try:
            return int(data)
        except ValueError:
            return json.loads(data)
