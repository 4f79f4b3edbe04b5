"""Experiments: the driver (declared cases, setup -> run -> verify), claims,
statistics, the suite that runs every experiment and the report."""
