"""JSON parsing that keeps numbers exact: a JSON number with a fraction becomes a Decimal, never a float."""

from __future__ import annotations

import json
from decimal import Decimal, DecimalException

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class ExactJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):  # noqa: ANN001, ANN201
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        except DecimalException:  # a number no Decimal holds (1e9999999999999999999)
            raise ParseError("JSON parse error - a number is out of range.") from None
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
