"""Which experiments exist: ``experiments/<name>.py``, each an :class:`Experiment`."""

import importlib.util
import os
import sys

from wirelab.errors import ConfigError
from wirelab.experiment.core import REPO, Experiment

EXPERIMENTS_DIR = os.path.join(REPO, "experiments")
# In teaching order: addresses and routes, paths, the services a joining host
# uses, packets and what TCP hides, then the distributed systems riding on them.
# Experiments not listed here come after, by name.
ORDER = ["routing", "traceroute", "backbone", "internet_services", "packets", "tcp_recovery", "mapreduce",
         "heartbeats"]


def names():
    found = sorted(f[:-3] for f in os.listdir(EXPERIMENTS_DIR)
                   if f.endswith(".py") and not f.startswith("_"))
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def script(name):
    return os.path.join(EXPERIMENTS_DIR, f"{name}.py")


def load(name):
    """The Experiment subclass of ``experiments/<name>.py``."""
    if name not in names():
        raise ConfigError(f"unknown experiment {name!r}; choose from {', '.join(names())}")
    module_name = f"wirelab_experiments.{name}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, script(name))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Experiment) and value.name == name:
            return value
    raise ConfigError(f"{script(name)} defines no Experiment named {name!r}")


def summary(name):
    """The first line of an experiment's description, for ``wirelab list``."""
    cls = load(name)
    doc = (cls.description or cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
