"""A script whose function `handle` pybpf probes: `pybpf trace ... --func __main__:handle`."""

import sys


def handle(n: int, name: str) -> int:
    return n * 2


calls = int(sys.argv[1]) if len(sys.argv) > 1 else 5
print("sum:", sum(handle(i, f"request-{i}") for i in range(calls)))
