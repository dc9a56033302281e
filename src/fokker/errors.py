"""Errors a user can cause. The CLI prints their message on one line and exits with status 2."""


class UserError(Exception):
    """A bad path, image, option value or checkpoint: the message names the value and what is accepted."""
