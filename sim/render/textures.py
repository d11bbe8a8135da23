"""Faces of signs and traffic-light heads: their outlines (metres) and textures (RGB images).

A sign's outline is the polygon the camera fills and labels; its texture is drawn so that the
outline's bounding square maps onto the whole image, and only pixels inside the outline are
ever copied, so the label and the picture agree exactly.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

from sim.messages import FloatArray, LightState, SignType

Image = NDArray[np.uint8]

SIGN_SIZE_M = {  # width of the face (the outline's bounding square), as OpenDRIVE's default 0.6 m
    SignType.SPEED_LIMIT: 0.6,
    SignType.STOP: 0.6,
    SignType.YIELD: 0.7,
}
LIGHT_HEAD_M = (0.35, 1.0, 0.3)  # width, height, depth of a traffic-light head (OpenDRIVE 0.35 × 1)
TEXTURE_PX = 128  # side of a sign texture

RED = (200, 20, 30)
WHITE = (245, 245, 245)
BLACK = (20, 20, 20)


def sign_outline(kind: SignType) -> FloatArray:
    """Outline ``(N, 2)`` of a sign face in its own plane: (right, up) metres from its centre.

    Circles are 24-gons with vertices at the left, right, top and bottom, so their width is
    exactly the diameter; the yield triangle points down, centred in its bounding box.
    """
    r = SIGN_SIZE_M[kind] / 2.0
    if kind == SignType.SPEED_LIMIT:
        a = np.arange(24) * (2.0 * math.pi / 24)
    elif kind == SignType.STOP:
        a = (np.arange(8) + 0.5) * (2.0 * math.pi / 8)  # flat top and sides
        r = r / math.cos(math.pi / 8)  # across flats = the face width
    else:
        h = 2.0 * r * math.sqrt(3.0) / 2.0  # equilateral, centred in its bounding box
        return np.array([[-r, h / 2.0], [r, h / 2.0], [0.0, -h / 2.0]])
    return np.stack([r * np.cos(a), r * np.sin(a)], -1)


def outline_extent(kind: SignType) -> tuple[float, float]:
    """Half-width and half-height (m) of the square the texture spans for a sign."""
    half = SIGN_SIZE_M[kind] / 2.0
    return half, half


@lru_cache(maxsize=64)
def sign_texture(kind: SignType, value: float) -> Image:
    """RGB texture (``TEXTURE_PX`` square) of a sign face; it spans :func:`outline_extent`."""
    n = TEXTURE_PX
    img = np.full((n, n, 3), 255, dtype=np.uint8)
    half = outline_extent(kind)[0]

    def px(pts: FloatArray) -> NDArray[np.int32]:  # metres (right, up) -> texture pixels, 1/16
        uv = np.stack([(pts[:, 0] / half + 1.0) * n / 2.0, (1.0 - pts[:, 1] / half) * n / 2.0], -1)
        return np.round(uv * 16.0).astype(np.int32)

    outline = sign_outline(kind)
    if kind == SignType.SPEED_LIMIT:
        img[:] = RED
        cv2.fillPoly(img, [px(outline * 0.80)], WHITE, cv2.LINE_AA, shift=4)
        text = str(round(value))
        scale = 1.9 if len(text) <= 2 else 1.45
        _centred_text(img, text, scale, BLACK, thickness=6)
    elif kind == SignType.STOP:
        img[:] = WHITE
        cv2.fillPoly(img, [px(outline * 0.92)], RED, cv2.LINE_AA, shift=4)
        _centred_text(img, "STOP", 1.25, WHITE, thickness=5)
    else:
        img[:] = RED
        # the white inner triangle of the same shape, shrunk towards the centroid
        cv2.fillPoly(img, [px(outline * 0.62)], WHITE, cv2.LINE_AA, shift=4)
    return img


def _centred_text(
    img: Image, text: str, scale: float, colour: tuple[int, int, int], thickness: int
) -> None:
    font = cv2.FONT_HERSHEY_DUPLEX
    (w, h), _ = cv2.getTextSize(text, font, scale, thickness)
    n = img.shape[0]
    org = ((n - w) // 2, (n + h) // 2)
    cv2.putText(img, text, org, font, scale, colour, thickness, cv2.LINE_AA)


@lru_cache(maxsize=8)
def light_texture(state: LightState) -> Image:
    """RGB texture of a traffic-light head's front (red, yellow, green lamps top to bottom).

    Lamps are emissive: the lit one keeps its colour at night.
    """
    w, h = 36, 100
    img = np.full((h, w, 3), 28, dtype=np.uint8)
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), (12, 12, 12), 2)
    lit = {
        LightState.RED: ((255, 40, 30), 0),
        LightState.YELLOW: ((255, 190, 0), 1),
        LightState.GREEN: ((40, 255, 110), 2),
    }
    dim = ((70, 20, 18), (70, 55, 10), (15, 60, 30))
    on = lit.get(state)
    for k in range(3):
        colour = on[0] if on is not None and on[1] == k else dim[k]
        centre = (w // 2, int(h * (k + 0.5) / 3.0))
        cv2.circle(img, centre, 13, colour, -1, cv2.LINE_AA)
        if on is not None and on[1] == k:
            cv2.circle(img, centre, 7, (255, 255, 235), -1, cv2.LINE_AA)  # hot centre
    return img
