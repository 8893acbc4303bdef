"""The one exception type that learners and the CLI see."""


class LslmError(ValueError):
    """A problem with the user's input. The message is one line and says what to do next."""


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for quoting a user's value in a
    one-line message: a long or multi-line value cannot flood or break the line."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails (or recurses too deep) still gives a message
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def whole_number(name: str, value: object, minimum: int | None = None,
                 maximum: int | None = None) -> int:
    """``value`` as an ``int`` if it is a whole number (not a bool, not a float) within
    ``[minimum, maximum]``; else a one-line ``LslmError`` naming ``name``."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise LslmError(f"{name} must be a whole number, got {shown(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        want = "a positive whole number" if minimum == 1 else f"at least {minimum}"
        raise LslmError(f"{name} must be {want}, got {shown(value)}")
    if maximum is not None and value > maximum:
        raise LslmError(f"{name} must be at most {maximum}, got {shown(value)}")
    return value


def real_number(name: str, value: object, low: float = -float("inf"), high: float = float("inf"),
                high_open: bool = False) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``[low, high)`` with ``high_open``);
    ints are welcome, bools, strings and NaN are not; else a one-line ``LslmError``."""
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LslmError(f"{name} must be a number, got {shown(value)}")
    try:
        value = float(value)
    except (OverflowError, ValueError):  # an int too large for a float
        raise LslmError(f"{name} must be a finite number, got {shown(value)}") from None
    if not math.isfinite(value):
        raise LslmError(f"{name} must be a finite number, got {value}")
    if value < low or value > high or (high_open and value == high):
        right = ")" if high_open else "]"
        raise LslmError(f"{name} must be in [{low:g}, {high:g}{right}, got {value:g}")
    return value
