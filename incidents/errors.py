"""The errors domain operations raise; their messages are fit to show the user."""


class DomainError(Exception):
    """An operation that the rules forbid; the message is fit to show the user."""


class PermissionDenied(DomainError):
    """The actor lacks the role the operation needs."""
