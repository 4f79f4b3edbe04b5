"""netem's delay distribution tables, read from iproute2's ``<name>.dist`` files.

The kernel has no built-in tables: tc (and we) read them from iproute2's files
and send them with the qdisc (TCA_NETEM_DELAY_DIST). Each entry is an int16; an
entry of :data:`NETEM_DIST_SCALE` means one jitter above the mean delay.
"""

import functools
import glob
import os

from wirelab.errors import ConfigError

#: netem refuses distribution tables longer than this (NETEM_DIST_MAX).
NETEM_DIST_MAX = 16384
#: netem scales table entries by this: an entry of 8192 means one jitter.
NETEM_DIST_SCALE = 8192
#: Where iproute2 installs its tables (Debian: multiarch dir), TC_LIB_DIR first.
DIST_DIRS = ("/usr/lib/x86_64-linux-gnu/tc", "/usr/lib/aarch64-linux-gnu/tc",
             "/usr/lib/tc", "/usr/lib64/tc", "/lib/tc")
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")


def distribution_dirs():
    """Folders searched for tables, in order: $TC_LIB_DIR, then iproute2's."""
    env = os.environ.get("TC_LIB_DIR")
    dirs = [env] if env else []
    dirs += list(DIST_DIRS) + sorted(glob.glob("/usr/lib/*-linux-gnu*/tc"))
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


@functools.lru_cache(maxsize=None)
def load_distribution(name):
    """iproute2's ``<name>.dist`` table as a tuple of int16, or ConfigError."""
    if name not in DISTRIBUTIONS or name == "uniform":
        raise ConfigError(f"netem distribution={name!r}: no table for it")
    for d in distribution_dirs():
        path = os.path.join(d, f"{name}.dist")
        if os.path.exists(path):
            break
    else:
        raise ConfigError(
            f"netem distribution={name}: {name}.dist not found in "
            f"{', '.join(distribution_dirs())} (install iproute2 or set TC_LIB_DIR)")
    values = []
    with open(path, encoding="ascii") as f:
        for line in f:
            for token in line.split("#", 1)[0].split():
                v = int(token)
                if not -32768 <= v <= 32767:
                    raise ConfigError(f"{path}: value {v} does not fit in 16 bits")
                values.append(v)
    if not 0 < len(values) <= NETEM_DIST_MAX:
        raise ConfigError(f"{path}: {len(values)} values; netem takes 1..{NETEM_DIST_MAX}")
    return tuple(values)


def dist_bounds(name):
    """(lowest, highest) delay offset of a distribution, in units of jitter."""
    if name == "uniform":
        return -1.0, 1.0
    table = load_distribution(name)
    return min(table) / NETEM_DIST_SCALE, max(table) / NETEM_DIST_SCALE
