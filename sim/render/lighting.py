"""Light from the scenario's weather: sun colour and strength, sky, face shading and fog.

A small model chosen to look plausible, not a physical one: the sun's altitude sets the
brightness and colour of lit surfaces (white at noon, warm at dusk, dim and blue at night),
clouds flatten the shading and grey the sky, and fog blends everything towards the horizon's
colour with ``1 - exp(-depth / visibility)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.messages import FloatArray
from sim.scenario import WeatherSpec

CLEAR_VISIBILITY_M = 3000.0  # haze of a clear day
FOG_VISIBILITY_M = 12.0  # e-folding distance at fog_density 100


def _mix(a: FloatArray, b: FloatArray, t: float) -> FloatArray:
    t = min(max(t, 0.0), 1.0)
    return a * (1.0 - t) + b * t


@dataclass(frozen=True)
class Lighting:
    """What the renderer needs from the weather.

    :param gain: (3,) multiplier of lit surface colours (RGB)
    :param ambient: share of light that reaches every face; the rest comes from the sun
    :param sun: (3,) unit vector towards the sun in the map frame
    :param zenith: (3,) sky colour straight up; ``horizon`` at the horizon (RGB 0-255)
    :param fog_rgb: (3,) colour that distance fades to
    :param extinction: 1 / visibility (1/m)
    """

    gain: FloatArray
    ambient: float
    sun: FloatArray
    zenith: FloatArray
    horizon: FloatArray
    fog_rgb: FloatArray
    extinction: float

    @classmethod
    def from_weather(cls, w: WeatherSpec) -> Lighting:
        alt = w.sun_altitude_angle
        cloud = w.cloudiness / 100.0
        fog = w.fog_density / 100.0
        # brightness: full above 35°, falling to dusk at 0° and night below -8°
        day = min(max((alt + 8.0) / 43.0, 0.0), 1.0)
        strength = 0.18 + 0.82 * day**0.8
        strength *= 1.0 - 0.3 * cloud
        warm = min(max(1.0 - abs(alt - 4.0) / 18.0, 0.0), 1.0) * (1.0 - cloud)  # dusk tint
        tint = _mix(np.array([1.0, 1.0, 1.0]), np.array([1.08, 0.9, 0.7]), warm)
        if alt < 0.0:
            tint = _mix(tint, np.array([0.75, 0.85, 1.15]), -alt / 8.0)
        gain = strength * tint
        zenith = _mix(np.array([40.0, 105.0, 200.0]), np.array([140.0, 146.0, 155.0]), cloud)
        horizon = _mix(np.array([175.0, 205.0, 235.0]), np.array([190.0, 192.0, 196.0]), cloud)
        horizon = _mix(horizon, np.array([250.0, 170.0, 110.0]), warm * 0.8)
        night = min(max(-alt / 8.0, 0.0), 1.0)
        zenith = _mix(zenith, np.array([6.0, 10.0, 28.0]), night)
        horizon = _mix(horizon, np.array([28.0, 32.0, 52.0]), night)
        zenith = zenith * (0.35 + 0.65 * day)
        horizon = horizon * (0.35 + 0.65 * day)
        fog_rgb = _mix(horizon, np.array([200.0, 202.0, 205.0]) * strength, fog)
        zenith = _mix(zenith, fog_rgb, fog)
        horizon = _mix(horizon, fog_rgb, fog)
        extinction = 1.0 / CLEAR_VISIBILITY_M + fog / FOG_VISIBILITY_M
        az = -math.radians(w.sun_azimuth_angle)  # CARLA's clockwise azimuth, in our frame
        ca = math.cos(math.radians(max(alt, 0.0)))
        sun = np.array(
            [ca * math.cos(az), ca * math.sin(az), math.sin(math.radians(max(alt, 0.0)))]
        )
        ambient = 0.55 + 0.35 * cloud if alt > 0 else 1.0
        return cls(gain, ambient, sun, zenith, horizon, fog_rgb, extinction)

    def shade(self, normals: FloatArray) -> FloatArray:
        """Brightness ``(N,)`` of faces with map-frame unit normals ``(N, 3)``."""
        lit = np.maximum(normals @ self.sun, 0.0)
        # a little extra for faces turned up, so roofs read as roofs even against the sun
        return self.ambient + (1.0 - self.ambient) * lit + 0.08 * normals[:, 2]

    def lut(self) -> NDArray[np.uint8]:
        """A ``(256, 1, 3)`` table for ``cv2.LUT`` that lights an RGB (or RGBA's first 3) image."""
        x = np.arange(256, dtype=np.float64)[:, None] * self.gain[None, :]
        return np.clip(np.round(x), 0, 255).astype(np.uint8).reshape(256, 1, 3)

    def sky(self, elevation: FloatArray) -> FloatArray:
        """Sky colour ``(..., 3)`` for ray elevations (rad): horizon to zenith."""
        t = np.clip(np.sin(np.maximum(elevation, 0.0)), 0.0, 1.0) ** 0.6
        return self.horizon * (1.0 - t[..., None]) + self.zenith * t[..., None]
