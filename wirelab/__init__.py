"""wirelab: a Mininet-based emulated network testbed.

The core library: a context manager that owns a running network (``testbed``),
node classes (``nodes``), command execution with deadlines (``proc``), netlink
access inside node namespaces (``netns``), preflight checks and the experiment
framework.
"""
