"""Boxes and labels drawn over a camera frame, for people to look at."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from sim.messages import CameraFrame, DetectionClass, LightState

# BGR colour and short name of each class
STYLE = {
    DetectionClass.VEHICLE: ((255, 170, 40), "car"),
    DetectionClass.PEDESTRIAN: ((60, 220, 255), "ped"),
    DetectionClass.TRAFFIC_LIGHT: ((60, 255, 60), "light"),
    DetectionClass.SPEED_LIMIT_SIGN: ((255, 60, 255), "limit"),
    DetectionClass.STOP_SIGN: ((40, 40, 255), "stop"),
    DetectionClass.YIELD_SIGN: ((0, 200, 255), "yield"),
}


def draw_boxes(frame: CameraFrame, max_occlusion: float = 0.8) -> NDArray[np.uint8]:
    """A BGR copy of the frame with its boxes (dashed-looking thin ones when mostly hidden)."""
    img = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR).astype(np.uint8, copy=False)
    if frame.boxes is None or frame.box_class is None:
        return img
    n = len(frame.boxes)
    occ = frame.box_occlusion if frame.box_occlusion is not None else np.zeros(n)
    value = frame.box_value if frame.box_value is not None else np.zeros(n)
    state = frame.box_state if frame.box_state is not None else np.full(n, -1)
    for i in range(n):
        if occ[i] > max_occlusion:
            continue
        cls = DetectionClass(int(frame.box_class[i]))
        colour, name = STYLE[cls]
        x0, y0, x1, y1 = (round(float(v)) for v in frame.boxes[i])
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, 1, cv2.LINE_AA)
        if cls == DetectionClass.SPEED_LIMIT_SIGN:
            name = f"{name} {value[i]:g}"
        elif cls == DetectionClass.TRAFFIC_LIGHT and state[i] >= 0:
            name = f"{name} {LightState(int(state[i])).name.lower()}"
        cv2.putText(
            img, name, (x0, max(y0 - 3, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.33, colour, 1, cv2.LINE_AA
        )
    return img
