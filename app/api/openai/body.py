"""What every OpenAI request shape here is built on: unknown fields refused, types exact, and
fields taken only at the values that change nothing (`only`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

T = TypeVar("T")


@dataclass(frozen=True)
class Only:
    """A field taken only at values that change nothing here (null always does): any other is
    refused, and the API's document lists the values it takes."""

    neutral: tuple[Any, ...]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "enum": [*self.neutral, None]}

    def _check(self, value: T) -> T:
        if value is not None and value not in self.neutral:
            named = " or ".join(json.dumps(v) for v in self.neutral) or "null"
            raise ValueError(f"not served: only {named} (or null), which changes nothing here")
        return value


def only(*neutral: object) -> Only:
    return Only(neutral)


class OpenAIBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # unknown fields refused, types exact
