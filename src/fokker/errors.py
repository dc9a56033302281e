"""Errors a user can cause. The CLI prints their message on one line and exits with status 2."""


class UserError(Exception):
    """A bad path, image, option value or checkpoint: the message names the value and what is accepted."""


class FokkerWarning(UserWarning):
    """Something was damaged and repaired (a log line cut short, a checkpoint that does not read): the CLI
    prints the message on one line, `fokker CMD: warning: ...`."""
