"""Pinning: a bpffs-like directory where maps, programs and links are pinned by path.

The pin root is, in order: the ``root`` argument, ``$PYBPF_PIN_ROOT``, ``$XDG_RUNTIME_DIR/pybpf``,
``/run/user/<uid>/pybpf`` (when that runtime directory exists), else ``/tmp/pybpf-<uid>``. A
relative pin path is under the root; an absolute one is used as given. As on bpffs, pinning
over an existing path fails (``FileExistsError``) and :func:`unpin` removes a pin. Unlike bpffs,
a map is pinned at one path only (the pin file holds its data; a second :func:`pin_map` raises
NotSupportedError).

Every pin file starts with a header (magic ``PYBPFPIN``, version, the length of a JSON
description, the JSON: what is pinned; :mod:`~pybpf.hooks.pinning.store`). Maps are **shared
between processes**: their data moves into the pin file, mapped with ``mmap(MAP_SHARED)`` from
:data:`DATA_OFFSET` on, so the process that pinned the map (the *owner*: its programs write
there) and every process that opens the pin (:func:`open_pinned_map`, ``pybpf map dump
--pinned PATH``) see the same bytes, live, and the data survives the owner's exit.

What each map type shares (:mod:`~pybpf.hooks.pinning.maps`):

- **array, percpu_array** (and BPF_F_MMAPABLE arrays): the values; any process reads and writes
  them (:meth:`PinnedMap.update`, or by plain memory access through :meth:`PinnedMap.mmap`, with
  no call per access: user space needs no syscall per map access, for arrays).
- **hash, percpu_hash, lru_hash, lru_percpu_hash**: the slots (key, value) after one occupancy
  byte per slot; others read them by scanning (:meth:`PinnedMap.entries`). Updates and deletes
  from another process go **to the owner**, which applies them under its map lock (its index and
  the JIT's native index stay right: its programs see them at once;
  :mod:`~pybpf.hooks.pinning.updates`); once the owner has exited, they edit the file directly
  under ``flock``.
- **lpm_trie**: the values, and a table of each value slot's key that the owner keeps up to
  date; others read the prefixes and values, and update or delete through the owner (the trie's
  nodes live in the owner only: no update once it has exited).
- **queue, stack**: a circular array of values; any process pushes, pops and peeks
  (:meth:`PinnedMap.push`/``pop``/``peek``), every operation under ``flock`` of the pin file.
- **ringbuf**: the records and both positions; another process consumes (:meth:`PinnedMap.poll`)
  and the producer sees the room it frees (the kernel's word-sized, ordered position protocol;
  :mod:`pybpf.runtime.maps.ringbuf`).
- **perf_event_array**: one perf-style byte ring per CPU; another process reads the samples and
  lost counts (:meth:`PinnedMap.poll_perf`).

A reader may see a hash or LPM element while it is being inserted or updated (bytes are copied
in place), as user space may in the kernel without BPF_F_LOCK. Other map types (prog arrays,
maps of maps, devmaps, cpumaps, xskmaps, bloom filters) raise NotSupportedError: their slots hold
objects of one process, or (bloom filter) nothing another process could use without the hash
seed and bit layout being part of the format. A global data map (``.bss``/``.data``) cannot be
pinned: programs hold the address of its value, which moving the storage would break.

Programs are pinned with their object file's bytes, so another process loads them again
(:func:`open_pinned_program`); links are pinned as descriptions
(:mod:`~pybpf.hooks.pinning.programs` says what a pinned link means in user space).
"""

from __future__ import annotations

from pybpf.hooks.pinning.maps import (
    PINNABLE_MAP_TYPES,
    RINGBUF_POSITIONS_PAGE,
    PinnedMap,
    open_pinned_map,
    pin_map,
)
from pybpf.hooks.pinning.programs import open_pinned_program, pin_link, pin_program, pinned_links
from pybpf.hooks.pinning.store import (
    DATA_OFFSET,
    PIN_ROOT_ENV,
    PinError,
    PinInfo,
    list_pins,
    pin_path,
    pin_root,
    process_alive,
    read_pin,
    unpin,
)
from pybpf.hooks.pinning.updates import OwnerGoneError

__all__ = [
    "DATA_OFFSET",
    "PINNABLE_MAP_TYPES",
    "PIN_ROOT_ENV",
    "RINGBUF_POSITIONS_PAGE",
    "OwnerGoneError",
    "PinError",
    "PinInfo",
    "PinnedMap",
    "list_pins",
    "open_pinned_map",
    "open_pinned_program",
    "pin_link",
    "pin_map",
    "pin_path",
    "pin_program",
    "pin_root",
    "pinned_links",
    "process_alive",
    "read_pin",
    "unpin",
]
