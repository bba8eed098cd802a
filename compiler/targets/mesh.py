"""Chip-mesh geometry: links, their directions, and dimension-order paths between chips.

Links are numbered as SpiNNaker's route word: 0 E, 1 NE, 2 N, 3 W, 4 SW, 5 S (a 2-D mesh uses
E, N, W, S). Route and the placement simulator share it.
"""

from __future__ import annotations

from .target import Target

N_LINKS = 6
LINK_VECTORS = {0: (1, 0), 1: (1, 1), 2: (0, 1), 3: (-1, 0), 4: (-1, -1), 5: (0, -1)}


def opposite(link: int) -> int:
    return (link + 3) % N_LINKS


def path(target: Target, a: tuple[int, int], b: tuple[int, int]) -> list[int]:
    """Links from chip a to chip b: dimension order on a 2-D mesh, longest dimension first on
    SpiNNaker's triangular mesh (the NE/SW diagonal counts as one dimension)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    if target.mesh.topology == "triangular" and dx * dy > 0:
        sign = 1 if dx > 0 else -1
        diag = min(abs(dx), abs(dy))
        rest_x, rest_y = dx - sign * diag, dy - sign * diag
        legs = [(diag, 1 if sign > 0 else 4)]
        legs.append((abs(rest_x), 0 if rest_x > 0 else 3) if rest_x else (abs(rest_y), 2 if rest_y > 0 else 5))
        legs.sort(key=lambda leg: -leg[0])
        return [link for n, link in legs for _ in range(n)]
    return [0 if dx > 0 else 3] * abs(dx) + [2 if dy > 0 else 5] * abs(dy)


def step(chip: tuple[int, int], link: int) -> tuple[int, int]:
    vx, vy = LINK_VECTORS[link]
    return chip[0] + vx, chip[1] + vy
