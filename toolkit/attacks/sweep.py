"""`--sweep NAME=V1,V2,...`: parsed without torch, so a typo fails before any model is loaded."""

from __future__ import annotations

from toolkit.errors import ToolkitError


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """`eps=0,1/255,2/255` -> ("eps", [0.0, 0.0039.., 0.0078..]); fractions and decimals accepted."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise ToolkitError(f"--sweep {text!r}: expected NAME=V1,V2,... (e.g. eps=0,1/255,2/255,4/255)")
    parsed = []
    for item in values.split(","):
        item = item.strip()
        try:
            numerator, slash, denominator = item.partition("/")
            value = float(numerator) / float(denominator) if slash else float(item)
        except (ValueError, ZeroDivisionError):
            raise ToolkitError(
                f"--sweep {text!r}: {item!r} is not a number or a fraction such as 8/255"
            ) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ToolkitError(f"--sweep {text!r}: {item!r} is not finite")
        parsed.append(value)
    if len(parsed) > 64:
        raise ToolkitError(f"--sweep {text!r}: at most 64 values")
    return name.strip(), parsed
