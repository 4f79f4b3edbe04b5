"""tc's units, parsed and printed: times, percentages, rates and counts.

Pure functions: every value a user can write (``20ms``, ``1.5s``, ``1%``,
``10mbit``, ``1mbps``) becomes a number in one unit, or a one-line
:class:`~wirelab.errors.ConfigError` that names the key and the value.
"""

import math
import re

from wirelab.errors import ConfigError

_TIME_UNITS = {"": 1.0, "ms": 1.0, "msec": 1.0, "s": 1000.0, "sec": 1000.0,
               "us": 1e-3, "usec": 1e-3, "ns": 1e-6}
# tc's units: bit suffixes are bits per second, bps suffixes are BYTES per second.
_RATE_UNITS = {"": 1, "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9,
               "tbit": 10**12, "kibit": 2**10, "mibit": 2**20, "gibit": 2**30,
               "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9}
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)\s*([A-Za-z%]*)\s*$",
                     re.IGNORECASE)


def _split(key, value):
    m = _NUMBER.match(str(value))
    if not m:
        raise ConfigError(f"netem {key}={value!r}: not a number")
    return float(m.group(1)), m.group(2).lower()


def _finite(key, number):
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ConfigError(f"netem {key}={number!r}: not a number")
    if math.isnan(number) or math.isinf(number):
        raise ConfigError(f"netem {key}={number}: must be a finite number")
    return number


def parse_time_ms(key, value):
    """``20``, ``20ms``, ``1.5s``, ``500us`` -> milliseconds (float)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(_finite(key, value))
    number, unit = _split(key, value)
    if unit not in _TIME_UNITS:
        raise ConfigError(f"netem {key}={value!r}: unknown time unit {unit!r} (use ms, s or us)")
    return _finite(key, number * _TIME_UNITS[unit])


def parse_percent(key, value):
    """``1%`` or ``1`` (tc reads a bare number as percent too) -> percent (float)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(_finite(key, value))
    number, unit = _split(key, value)
    if unit not in ("", "%"):
        raise ConfigError(f"netem {key}={value!r}: a percentage, e.g. {key}=1%")
    return _finite(key, number)


def parse_rate_bps(key, value):
    """``10mbit``, ``1gbit``, ``10000000`` (bit/s), ``1mbps`` (bytes/s, as tc) -> bit/s."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = _finite(key, value), ""
    else:
        number, unit = _split(key, value)
    if unit not in _RATE_UNITS:
        raise ConfigError(f"netem {key}={value!r}: unknown rate unit {unit!r} (use kbit, mbit, gbit)")
    bps = _finite(key, number * _RATE_UNITS[unit])
    return int(round(bps))


def parse_count(key, value):
    """A whole number: ``5``, ``5.0``, ``"5"`` -> 5; ``5.5`` or ``True`` -> ConfigError."""
    if isinstance(value, bool):
        raise ConfigError(f"netem {key}={value!r}: not a whole number")
    if isinstance(value, float):
        _finite(key, value)
        if value != int(value):
            raise ConfigError(f"netem {key}={value}: must be a whole number")
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[-+]?\d+", text):
        raise ConfigError(f"netem {key}={value!r}: must be a whole number")
    return int(text)


def format_number(x):
    """Shortest text for a float: 20.0 -> '20', 0.1 -> '0.1'."""
    return f"{x:g}"


def format_rate(bps):
    """bit/s -> tc's wording: 10_000_000 -> '10Mbit', 1_500_000 -> '1.5Mbit'."""
    for unit, scale in (("Gbit", 10**9), ("Mbit", 10**6), ("Kbit", 10**3)):
        if bps >= scale and bps % (scale // 1000 or 1) == 0:
            return f"{bps / scale:g}{unit}"
    return f"{bps}bit"
