"""The one exception type that learners and the CLI see."""


class LslmError(ValueError):
    """A problem with the user's input. The message is one line and says what to do next."""
