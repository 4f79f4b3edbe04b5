"""The MapReduce wire protocol (U. Michigan EECS 485 Project 4), as data.

One JSON object per TCP connection (the sender writes it, then shuts down its
write side; the receiver reads to EOF), one JSON object per UDP datagram.
Every message has ``message_type``; :data:`MESSAGES` lists, per type, the
fields it must carry, its transport and who sends it to whom.
:func:`check_message` checks any object against that table -- ours, or one
seen on the wire from somebody else's implementation.
"""

import dataclasses

MANAGER, WORKER, SUBMITTER = "manager", "worker", "submitter"
TCP, UDP = "tcp", "udp"


@dataclasses.dataclass(frozen=True)
class MessageSpec:
    required: tuple          # field names besides message_type
    transport: str           # TCP or UDP
    senders: tuple           # roles that send it
    receivers: tuple         # roles that receive it
    optional: tuple = ()     # fields that may appear without a warning


MESSAGES = {
    "register": MessageSpec(("worker_host", "worker_port"), TCP, (WORKER,), (MANAGER,)),
    # P4 versions differ: some echo the worker's address, some send nothing.
    "register_ack": MessageSpec((), TCP, (MANAGER,), (WORKER,), optional=("worker_host", "worker_port")),
    "new_manager_job": MessageSpec(
        ("input_directory", "output_directory", "mapper_executable", "reducer_executable",
         "num_mappers", "num_reducers"), TCP, (SUBMITTER,), (MANAGER,)),
    "new_map_task": MessageSpec(
        ("task_id", "executable", "input_paths", "output_directory", "num_partitions",
         "worker_host", "worker_port"), TCP, (MANAGER,), (WORKER,)),
    "new_reduce_task": MessageSpec(
        ("task_id", "executable", "input_paths", "output_directory", "worker_host", "worker_port"),
        TCP, (MANAGER,), (WORKER,)),
    "finished": MessageSpec(("task_id", "worker_host", "worker_port"), TCP, (WORKER,), (MANAGER,)),
    "heartbeat": MessageSpec(("worker_host", "worker_port"), UDP, (WORKER,), (MANAGER,)),
    # The submitter (or a test) asks the manager; the manager tells every live worker.
    "shutdown": MessageSpec((), TCP, (SUBMITTER, MANAGER), (MANAGER, WORKER)),
}

# Types of the fields, where the protocol fixes one. bool is an int in Python:
# excluded explicitly, a port of true is a mistake.
_INT_FIELDS = {"worker_port", "task_id", "num_mappers", "num_reducers", "num_partitions"}
_STR_FIELDS = {"worker_host", "input_directory", "output_directory", "mapper_executable",
               "reducer_executable", "executable"}
_POSITIVE = {"num_mappers", "num_reducers", "num_partitions"}


def _field_error(name, value):
    if name in _INT_FIELDS:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name} must be an integer, got {type(value).__name__}"
        if name == "worker_port" and not 0 < value < 65536:
            return f"worker_port {value} is not a port (1..65535)"
        if name in _POSITIVE and value < 1:
            return f"{name} must be at least 1, got {value}"
        if name == "task_id" and value < 0:
            return f"task_id must not be negative, got {value}"
    elif name in _STR_FIELDS:
        if not isinstance(value, str) or not value:
            return f"{name} must be a non-empty string"
    elif name == "input_paths":
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            return "input_paths must be a list of non-empty strings"
    return None


def check_message(obj, transport=None, receiver=None):
    """``(errors, warnings)`` for ``obj`` as a protocol message.

    Errors: not an object, no or unknown ``message_type``, a required field
    missing or of the wrong type, and (when given) the wrong ``transport`` or a
    ``receiver`` role that never receives this type. Warnings: fields the
    table does not know (a receiver should still accept the message).
    """
    errors, warnings = [], []
    if not isinstance(obj, dict):
        return [f"not a JSON object but {type(obj).__name__}"], warnings
    kind = obj.get("message_type")
    if not isinstance(kind, str):
        return ["no message_type (string)"], warnings
    spec = MESSAGES.get(kind)
    if spec is None:
        return [f"unknown message_type {kind[:40]!r}"], warnings
    if transport is not None and transport != spec.transport:
        errors.append(f"{kind} belongs on {spec.transport}, came on {transport}")
    if receiver is not None and receiver not in spec.receivers:
        errors.append(f"a {receiver} never receives {kind}")
    for name in spec.required:
        if name not in obj:
            errors.append(f"{kind} without {name}")
    for name in (*spec.required, *spec.optional):
        if name in obj:
            problem = _field_error(name, obj[name])
            if problem:
                errors.append(problem)
    known = {"message_type", *spec.required, *spec.optional}
    extra = sorted(k for k in obj if k not in known)
    if extra:
        warnings.append(f"{kind} with unknown fields: {', '.join(extra)[:200]}")
    return errors, warnings


def worker_of(message):
    """The ``(host, port)`` a worker names itself by in ``message``."""
    return (message["worker_host"], message["worker_port"])
