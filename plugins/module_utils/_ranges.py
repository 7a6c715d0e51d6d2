# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Range arithmetic on inclusive ``(start, end)`` byte ranges, and cutting what is missing into units (private).

Inclusive ends, as Service Fabric's ``ExpectedRanges``; every protocol's account of what is missing is
turned into such ranges by its adapter.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def normalize(ranges):
    """Sort and merge overlapping or touching inclusive ranges."""
    merged = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges):
        if end < start:
            continue
        if merged and start <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1][1] = end
        else:
            merged.append([start, end])
    return [tuple(pair) for pair in merged]


def total(ranges):
    """Number of bytes in a list of inclusive ranges."""
    return sum(e - s + 1 for s, e in normalize(ranges))


def complement(ranges, size):
    """The parts of [0, size-1] not covered by ``ranges``."""
    gaps = []
    pos = 0
    for start, end in normalize(ranges):
        start, end = max(start, 0), min(end, size - 1)
        if start > pos:
            gaps.append((pos, start - 1))
        pos = max(pos, end + 1)
    if pos <= size - 1:
        gaps.append((pos, size - 1))
    return gaps


def plan(missing, chunk_size, grid=None, size=None):
    """Chunks that cover exactly the ``missing`` bytes, none larger than ``chunk_size``.

    With ``grid`` (a fixed slice size, as ZStack requires) and the file's ``size``, every chunk is
    one whole slice of that grid, ``[i*grid, min((i+1)*grid, size) - 1]``; a missing range that
    starts inside a slice sends that whole slice. Without it, chunks start where the missing ranges
    start.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    chunks = []
    missing = normalize(missing)
    if grid:
        if size is None:
            raise ValueError("a grid plan needs the file size")
        indexes = []
        for start, end in missing:
            for index in range(start // grid, end // grid + 1):
                if not indexes or index > indexes[-1]:
                    indexes.append(index)
        return [(i * grid, min((i + 1) * grid, size) - 1) for i in indexes]
    for start, end in missing:
        pos = start
        while pos <= end:
            stop = min(end, pos + chunk_size - 1)
            chunks.append((pos, stop))
            pos = stop + 1
    return chunks
