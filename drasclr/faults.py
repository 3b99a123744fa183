"""Test-only fault injection: named points where a test can make a process die on purpose.

Production code marks each place a test may crash with one call, ``fault_point(name, key)``;
it does nothing unless the environment variable ``DRASCLR_FAULT`` holds a spec naming that
point and key. The points:

``preprocess.worker``
    a preprocessing worker (:mod:`drasclr.preprocess.run`) is about to process a subject;
    ``key`` = the subject id.
``preprocess.driver_commit``
    the preprocessing driver has just committed a block's manifest rows; ``key`` = the number
    of blocks committed so far in this run (``"1"``, ``"2"``, ...).

Spec format (``;`` separates several)::

    <point>:<key>:<action>[:<file>]

with ``<action>`` one of

``exit``
    the process exits (``os._exit(FAULT_EXIT_CODE)``) every time it reaches the point with
    that key;
``exit_once:<file>``
    the first process to reach it writes ``pid <pid>`` to ``<file>`` and exits; once ``<file>``
    exists the point passes (a worker that dies once and is replaced);
``exit_always:<file>``
    every process that reaches it appends ``pid <pid>`` to ``<file>`` (one line per death) and
    exits.

``<file>`` is the rest of the spec, so it may contain ``:``; points and keys may not. Examples
(``tests/test_preprocess.py``)::

    DRASCLR_FAULT=preprocess.worker:SYN00002:exit_once:/tmp/killed
    DRASCLR_FAULT=preprocess.worker:SYN00001:exit_always:/tmp/deaths.log
    DRASCLR_FAULT=preprocess.driver_commit:1:exit

Ray workers do not inherit the driver's environment, so the driver hands its spec
(:func:`current_spec`) to the actors it starts, and each actor calls :func:`install` once in its
process; an installed spec takes the place of the environment variable there. Elsewhere the
variable is looked up when a point is reached (a dictionary lookup; each spec is parsed once),
so a test may set it between runs in one process.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FAULT_ENV", "FAULT_EXIT_CODE", "POINTS", "current_spec", "fault_point", "install"]

#: The environment variable holding the fault spec.
FAULT_ENV = "DRASCLR_FAULT"

#: Exit status of a process killed by a fault point.
FAULT_EXIT_CODE = 18

#: Every fault point of the package (a spec naming another point is an error).
POINTS: tuple[str, ...] = ("preprocess.worker", "preprocess.driver_commit")

_ACTIONS = ("exit", "exit_once", "exit_always")

_installed: str | None = None


@dataclass(frozen=True)
class _Fault:
    point: str
    key: str
    action: str
    file: str = ""

    def fire(self) -> None:
        if self.action == "exit_once":
            marker = Path(self.file)
            if marker.exists():
                return
            marker.write_text(f"pid {os.getpid()}\n")
        elif self.action == "exit_always":
            with Path(self.file).open("a") as log:
                log.write(f"pid {os.getpid()}\n")
        os._exit(FAULT_EXIT_CODE)


@functools.lru_cache(maxsize=16)
def _parse(spec: str) -> tuple[_Fault, ...]:
    faults = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        fields = part.split(":", 3)
        if len(fields) < 3:
            raise ValueError(f"{FAULT_ENV}: expected <point>:<key>:<action>[:<file>], got {part!r}")
        point, key, action = fields[:3]
        file = fields[3] if len(fields) == 4 else ""
        if point not in POINTS:
            raise ValueError(f"{FAULT_ENV}: unknown fault point {point!r} in {part!r} "
                             f"(points: {', '.join(POINTS)})")
        if action not in _ACTIONS:
            raise ValueError(f"{FAULT_ENV}: unknown action {action!r} in {part!r} "
                             f"(actions: {', '.join(_ACTIONS)})")
        if (action != "exit") != bool(file):
            raise ValueError(f"{FAULT_ENV}: action {action!r} "
                             f"{'needs a' if action != 'exit' else 'takes no'} file in {part!r}")
        faults.append(_Fault(point, key, action, file))
    return tuple(faults)


def current_spec() -> str:
    """The spec in force in this process ("" when none): an installed one, else the variable.

    Raises:
        ValueError: the spec is malformed or names an unknown point or action.
    """
    spec = _installed if _installed is not None else os.environ.get(FAULT_ENV, "")
    _parse(spec)
    return spec


def install(spec: str) -> None:
    """Fix this process's spec (a Ray worker, given the driver's :func:`current_spec`)."""
    global _installed
    _parse(spec)
    _installed = spec


def fault_point(name: str, key: str) -> None:
    """A named fault point: no-op unless the spec in force names ``name`` with ``key``."""
    spec = current_spec()
    if not spec:
        return
    for fault in _parse(spec):
        if fault.point == name and fault.key == key:
            fault.fire()
