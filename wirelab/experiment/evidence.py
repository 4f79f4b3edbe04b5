"""A results folder, read as evidence.

``verify`` and ``plot`` see an experiment's run only through :class:`Evidence`:
``params.json`` (the typed parameters, rebuilt), ``run.json`` (what the run
recorded about the network: addresses, offloads, the cases in order), each
case's ``case.json`` and the raw files beside them (pcaps, logs). So an old
folder can be verified again, without root, by ``wirelab verify DIR``.
"""

import dataclasses
import json
import os
import typing

from wirelab.errors import WirelabError


class EvidenceError(WirelabError):
    """A results folder lacks a file verify needs, or holds a broken one."""

    exit_code = 9


def to_jsonable(obj):
    if hasattr(obj, "to_dict") and not isinstance(obj, type):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def write_json(path, obj):
    """Write ``obj`` as JSON, atomically (a reader never sees half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(to_jsonable(obj), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def params_from_dict(params_cls, values):
    """The frozen ``Params`` dataclass from its JSON form (lists back to tuples)."""
    hints = typing.get_type_hints(params_cls)
    kwargs = {}
    for field in dataclasses.fields(params_cls):
        if not field.init or field.name not in values:
            continue
        value = values[field.name]
        if isinstance(value, list) and typing.get_origin(hints[field.name]) is tuple:
            value = tuple(value)
        kwargs[field.name] = value
    return params_cls(**kwargs)


class Evidence:
    """Read-only view of ``results/<experiment>/<time>/`` for verify and plot.

    ``metrics``: figures verify derives (written to metrics.json by the run).
    ``save()`` writes a derived file (a ledger summary, a table for a plot)
    only when the folder is being verified by its own run; a re-verification
    of an old folder changes nothing in it.
    """

    def __init__(self, folder, params_cls=None, writable=False):
        self.folder = os.path.abspath(folder)
        self.writable = writable
        self.metrics = {}
        head = self.json("params.json")
        self.experiment = head.get("experiment")
        self.params_dict = head.get("params") or {}
        self.params = params_from_dict(params_cls, self.params_dict) if params_cls else None
        self._run = None

    def path(self, *parts):
        return os.path.join(self.folder, *parts)

    def exists(self, *parts):
        return os.path.exists(self.path(*parts))

    def json(self, *parts, default=None):
        """A JSON file of the folder; ``default`` when it is absent (if given)."""
        path = self.path(*parts)
        try:
            with open(path) as f:
                return json.load(f)
        except FileNotFoundError:
            if default is not None:
                return default
            raise EvidenceError(f"{os.path.relpath(path)}: missing from the results folder") from None
        except (OSError, ValueError) as exc:
            raise EvidenceError(f"{os.path.relpath(path)}: cannot read: {exc}") from None

    @property
    def run(self):
        """run.json: what the run recorded about the network and its cases."""
        if self._run is None:
            self._run = self.json("run.json", default={})
        return self._run

    def case_names(self):
        return list(self.run.get("cases", []))

    def case(self, name):
        """A case's record (case.json), see :class:`wirelab.experiment.cases.CaseRecord`."""
        return self.json(name, "case.json")

    def cases(self):
        return [self.case(n) for n in self.case_names()]

    def save(self, relpath, obj):
        if self.writable:
            write_json(self.path(relpath), obj)
