"""A small error hierarchy that maps one-to-one onto HTTP statuses.

Every message is written for the person who sent the request: it names the field and the rule.
Services turn these into `{"error": {"type", "message", "param"}}`; the web UI shows `message` as is.
"""

from __future__ import annotations


def error_body(error_type: str, message: str, param: str | None = None) -> dict:
    """The one JSON error shape of every Fabula answer (OpenAI's): `{"error": {"type", "message", "param"}}`."""
    return {"error": {"type": error_type, "message": message, "param": param}}


class FabulaError(Exception):
    """Base class: an error whose message is meant to be shown to a user."""

    status_code: int = 500
    error_type: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_body(self) -> dict:
        return error_body(self.error_type, self.message, self.param)


class InvalidRequest(FabulaError):
    status_code = 400
    error_type = "invalid_request_error"


class InvalidImage(InvalidRequest):
    error_type = "invalid_image"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    error_type = "payload_too_large"


class ClientDisconnected(InvalidRequest):
    """The client went away before its request could be answered; nobody reads the answer, it only keeps the log honest."""

    error_type = "client_disconnected"


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


class StorageFull(FabulaError):
    """The disk that holds the books (or the job database) is full: nothing new can be saved until space is freed.

    Jobs that meet it fail with this message and keep their finished steps, so they resume once there is room.
    """

    status_code = 507
    error_type = "insufficient_storage"

    @classmethod
    def for_folder(cls, where: str) -> StorageFull:
        return cls(
            f"The disk that holds Fabula's books ({where}) is full. Free some space (or move FABULA_DATA_DIR to a "
            "bigger disk), then resume: finished steps are kept.",
            param="FABULA_DATA_DIR",
        )

    @classmethod
    def for_database(cls, where: str) -> StorageFull:
        return cls(
            f"The disk that holds the job database ({where}) is full. Free some space, then resume: finished steps are kept.",
            param="FABULA_DATABASE_URL",
        )


class DeadlineExceeded(FabulaError):
    """The request waited past its deadline before its model work could start, so it was never run."""

    status_code = 504
    error_type = "deadline_exceeded"


class InvalidSetting(FabulaError):
    """A setting holds a value the server cannot work with; reported through `/readyz` at start-up."""

    status_code = 500
    error_type = "invalid_setting"


class UpstreamError(FabulaError):
    """A service that Fabula depends on failed or could not be reached."""

    status_code = 502
    error_type = "upstream_error"

    def __init__(self, message: str, *, transient: bool = False, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.transient = transient


class HttpStatusError(FabulaError):
    """A status the framework answered by itself (an unknown path, a wrong method), in the same shape."""

    def __init__(self, status_code: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.status_code = status_code
        self.error_type = error_type_for(status_code)


# The error type of an HTTP status that no `FabulaError` raised (a framework's 404 or 405, an unknown failure).
ERROR_TYPES_BY_STATUS: dict[int, str] = {
    400: InvalidRequest.error_type,
    401: AuthenticationFailed.error_type,
    404: NotFound.error_type,
    403: "permission_denied",
    405: "method_not_allowed",
    409: Conflict.error_type,
    413: PayloadTooLarge.error_type,
    415: "unsupported_media_type",
    507: StorageFull.error_type,
    429: RateLimited.error_type,
    500: FabulaError.error_type,
    503: ModelNotReady.error_type,
    504: DeadlineExceeded.error_type,
}


def error_type_for(status_code: int) -> str:
    return ERROR_TYPES_BY_STATUS.get(status_code, "invalid_request_error" if status_code < 500 else "internal_error")
