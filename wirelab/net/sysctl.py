"""A sysctl of one node's network namespace, changed for a while and restored.

    with SysctlChange(tb, "h1", "net/ipv4/tcp_mtu_probing", "1") as change:
        ...                       # change.before, change.readback
    # restored here; at the Testbed's teardown at the latest (exception, signal)

Only namespaced keys (``net/...``) make sense: the node's namespace is entered
to open the file, so the change stays inside it. Routers' fixed settings live in
:attr:`wirelab.net.nodes.LinuxRouter.SYSCTLS` instead.
"""

import os

from wirelab.errors import ConfigError
from wirelab.net.netns import entered


def read_sysctl(node, key):
    """The value of ``/proc/sys/<key>`` in ``node``'s network namespace."""
    return _access(node, key)


def _access(node, key, value=None):
    if not key.startswith("net/") or ".." in key:
        raise ConfigError(f"sysctl {key!r}: only a namespaced net/... key")
    with entered(node):
        fd = os.open(f"/proc/sys/{key}", os.O_RDWR if value is not None else os.O_RDONLY)
    try:
        old = os.read(fd, 64).decode().strip()
        if value is not None:
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, str(value).encode())
        return old
    finally:
        os.close(fd)


class SysctlChange:
    kind = "sysctl"

    def __init__(self, tb, node, key, value):
        self.tb, self.node = tb, tb.resolve(node)
        self.key, self.value = key, str(value)
        self.before = self.readback = None
        self.live = False

    def apply(self):
        self.live = True
        self.tb.add_cleanup(f"restore {self.key} on {self.node.name}", self.remove)
        self.before = _access(self.node, self.key, self.value)
        self.readback = read_sysctl(self.node, self.key)
        if self.readback != self.value:
            self.remove()
            raise ConfigError(f"{self.node.name}: {self.key}={self.value} asked, the kernel holds {self.readback}")
        return self

    def remove(self):
        """Put the old value back. Idempotent: True if this call restored it."""
        if not self.live:
            return False
        self.live = False
        if self.before is not None:
            _access(self.node, self.key, self.before)
        return True

    def to_dict(self):
        return {"kind": self.kind, "node": self.node.name, "key": self.key, "value": self.value,
                "before": self.before, "readback": self.readback, "live": self.live}

    def __enter__(self):
        return self.apply()

    def __exit__(self, *exc):
        self.remove()
        return False
