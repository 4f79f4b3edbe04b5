"""MapReduce over the network, wire-compatible with U. Michigan EECS 485 Project 4.

* :mod:`.protocol` -- the messages as data, :func:`~.protocol.check_message`;
* :mod:`.wire` -- framing (one JSON object per connection / datagram);
* :mod:`.receiver` -- a TCP/UDP receiver that drops garbage in bounded time and memory;
* :mod:`.scheduler` -- the manager's decisions, without sockets (fake-clock testable);
* :mod:`.tasks` -- what a map or reduce task does with files (partition, sort, merge);
* :mod:`.events` -- the JSON-lines event log every program writes;
* :mod:`.manager`, :mod:`.worker`, :mod:`.submit` -- the three commands;
* ``wordcount_map.py``, ``wordcount_reduce.py`` -- the bundled job.
"""
