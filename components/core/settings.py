"""The process-wide settings every entry point reads from the environment before any work.

`MOVIEREC_LOG_LEVEL` and `MOVIEREC_DEBUG` apply to the whole process (`movierec`, the predictor's
`python -m predictor`); they are validated here, once, so that `MOVIEREC_LOG_LEVEL=verbose` is one
line naming the accepted values instead of a traceback from `logging`. Settings that belong to one
command (`MOVIEREC_STORE`, `MOVIEREC_EVENTS`, ...) stay with that command's flag (`envvar=`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from components.core.errors import UserError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOVIEREC_", env_ignore_empty=True, extra="ignore")

    log_level: LogLevel = "INFO"
    debug: bool = False

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


def load_settings() -> Settings:
    """The validated settings, or a `UserError` naming the variable and what it accepts."""
    try:
        return Settings()
    except ValidationError as error:
        problems = []
        for e in error.errors(include_url=False):
            name = f"MOVIEREC_{str(e['loc'][0]).upper()}"
            accepted = {"log_level": ", ".join(LogLevel.__args__), "debug": "1/0, true/false, yes/no, on/off"}
            problems.append(f"{name}={e['input']!r} is not valid (use one of {accepted.get(e['loc'][0], '?')})")
        raise UserError("; ".join(problems)) from None
