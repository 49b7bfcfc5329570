"""A small error hierarchy that maps one-to-one onto HTTP statuses.

Every message is written for the person who sent the request: it names the field and the rule.
Services turn these into `{"error": {"type", "message", "param"}}`; the web UI shows `message` as is.
"""

from __future__ import annotations


class FabulaError(Exception):
    """Base class: an error whose message is meant to be shown to a user."""

    status_code: int = 500
    error_type: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_body(self) -> dict:
        return {"error": {"type": self.error_type, "message": self.message, "param": self.param}}


class InvalidRequest(FabulaError):
    status_code = 400
    error_type = "invalid_request_error"


class InvalidImage(InvalidRequest):
    error_type = "invalid_image"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    error_type = "payload_too_large"


class AuthenticationFailed(FabulaError):
    status_code = 401
    error_type = "authentication_error"


class NotFound(FabulaError):
    status_code = 404
    error_type = "not_found"


class Conflict(FabulaError):
    status_code = 409
    error_type = "conflict"


class RateLimited(FabulaError):
    status_code = 429
    error_type = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after


class ModelNotReady(FabulaError):
    status_code = 503
    error_type = "model_not_ready"


class ModelUnavailable(FabulaError):
    """The configured weights are not on this machine (and the hub is not to be reached at run time)."""

    status_code = 503
    error_type = "model_unavailable"


class UpstreamError(FabulaError):
    """A service that Fabula depends on failed or could not be reached."""

    status_code = 502
    error_type = "upstream_error"

    def __init__(self, message: str, *, transient: bool = False, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.transient = transient
