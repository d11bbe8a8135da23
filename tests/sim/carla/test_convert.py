"""Conversions at the CARLA boundary, checked with the real ``carla`` types as the reference."""

from __future__ import annotations

import math

import carla
import numpy as np
import pytest

from sim.carla_backend import convert
from sim.carla_backend.client import (
    CarlaConnection,
    CarlaError,
    CarlaServerRestarted,
    CarlaTimeoutError,
    classify,
)
from sim.carla_backend.sensors import BoxTarget, corners_of, mount_transform, project_boxes
from sim.messages import ActorKind, Control, DetectionClass, LightState, VehicleParams, VehicleState
from sim.render import pinhole
from sim.scenario import CameraSpec

S4 = np.diag([1.0, -1.0, 1.0, 1.0])


def _poses(n: int = 50) -> list[carla.Transform]:
    rng = np.random.default_rng(7)
    return [
        carla.Transform(
            carla.Location(*(float(v) for v in rng.uniform(-300, 300, 3))),
            carla.Rotation(
                pitch=float(rng.uniform(-80, 80)),
                yaw=float(rng.uniform(-180, 180)),
                roll=float(rng.uniform(-80, 80)),
            ),
        )
        for _ in range(n)
    ]


def test_rotation_matrix_is_carlas_own() -> None:
    for tf in _poses():
        ours = convert.rotation_matrix_carla(tf.rotation)
        ref = np.array(tf.get_matrix())[:3, :3]
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_transform_to_ours_is_the_mirrored_carla_matrix() -> None:
    for tf in _poses():
        m = convert.transform_to_ours(tf)
        np.testing.assert_allclose(m, S4 @ np.array(tf.get_matrix()) @ S4, atol=1e-3)
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-5)
        assert np.linalg.det(m[:3, :3]) == pytest.approx(1.0, abs=1e-5)  # a proper rotation


def test_transform_round_trip() -> None:
    for tf in _poses():
        back = convert.transform_from_ours(convert.transform_to_ours(tf))
        np.testing.assert_allclose(
            np.array(back.get_matrix()), np.array(tf.get_matrix()), atol=1e-3
        )


def test_points_and_angles() -> None:
    loc = carla.Location(x=3.0, y=4.0, z=5.0)
    np.testing.assert_allclose(convert.location_to_ours(loc), [3.0, -4.0, 5.0])
    back = convert.location_from_ours(*convert.location_to_ours(loc))
    assert (back.x, back.y, back.z) == pytest.approx((3.0, 4.0, 5.0))
    # CARLA yaw 90° (clockwise from +x, towards +y_carla = south) is our -90° (south)
    tf = carla.Transform(carla.Location(1.0, 2.0, 0.0), carla.Rotation(yaw=90.0))
    assert convert.pose2d(tf) == pytest.approx((1.0, -2.0, -math.pi / 2))
    assert convert.yaw_from_ours(-math.pi / 2) == pytest.approx(90.0)
    # CARLA pitch up (+) is a negative rotation about our y (left) axis: the nose rises
    up = convert.transform_to_ours(carla.Transform(rotation=carla.Rotation(pitch=30.0)))
    assert up[2, 0] == pytest.approx(math.sin(math.radians(30.0)))


def test_known_actor_transform_gives_known_ego_frame_position() -> None:
    # the ego faces north in our frame: CARLA yaw -90°, at our (10, 20) = CARLA (10, -20)
    ego_tf = carla.Transform(carla.Location(10.0, -20.0, 0.0), carla.Rotation(yaw=-90.0))
    x, y, yaw = convert.pose2d(ego_tf)
    assert (x, y, yaw) == pytest.approx((10.0, 20.0, math.pi / 2))
    ego = VehicleState(0.0, 0, x, y, yaw, 0.0)
    ahead = carla.Transform(carla.Location(10.0, -35.0, 0.0))  # 15 m further north
    right = carla.Transform(carla.Location(14.0, -20.0, 0.0))  # 4 m east: the ego's right
    pts = np.array([convert.pose2d(t)[:2] for t in (ahead, right)])
    np.testing.assert_allclose(ego.to_ego(pts), [[15.0, 0.0], [0.0, -4.0]], atol=1e-9)


def test_pedals_at_the_limits() -> None:
    p = VehicleParams()
    lm = convert.LongitudinalMap.for_vehicle(p)
    assert lm.pedals(p.max_accel_mps2, 0.0) == (1.0, 0.0)  # full throttle (resistance on top)
    assert lm.pedals(100.0, 20.0) == (1.0, 0.0)
    assert lm.pedals(-p.max_decel_mps2, 0.0) == (0.0, 1.0)
    assert lm.pedals(-100.0, 20.0) == (0.0, 1.0)
    for v in (0.0, 10.0, 30.0):  # asking for the resistance alone is coasting
        assert lm.pedals(-lm.resistance_mps2(v), v) == pytest.approx((0.0, 0.0))
    for a in np.linspace(-7.0, 2.5, 20):  # inside the range the model inverts exactly
        throttle, brake = lm.pedals(float(a), 15.0)
        assert 0.0 <= throttle <= 1.0 and 0.0 <= brake <= 1.0 and throttle * brake == 0.0
        assert lm.accel(throttle, brake, 15.0) == pytest.approx(a)


def test_pedals_drag_from_physics_control() -> None:
    physics = carla.VehiclePhysicsControl()
    physics.mass = 2000.0
    physics.drag_coefficient = 0.5
    lm = convert.LongitudinalMap.for_vehicle(VehicleParams(), physics, frontal_area_m2=2.0)
    assert lm.drag_per_m == pytest.approx(0.5 * 1.2 * 0.5 * 2.0 / 2000.0)


def test_steer_at_the_limits_and_sign() -> None:
    lm = convert.LongitudinalMap()
    left = convert.control_to_carla(Control(0.0, 0, 1.0, math.radians(35.0)), 5.0, lm, 70.0)
    assert isinstance(left, carla.VehicleControl)
    assert left.steer == pytest.approx(-0.5)  # left is negative in CARLA
    assert left.throttle == pytest.approx((1.0 + lm.resistance_mps2(5.0)) / 3.0)
    assert left.brake == 0.0 and not left.reverse and not left.hand_brake
    full = convert.control_to_carla(Control(0.0, 0, -50.0, -2.0), 5.0, lm, 70.0)
    assert (full.steer, full.throttle, full.brake) == (1.0, 0.0, 1.0)
    assert convert.steer_from_carla(-0.5, 70.0) == pytest.approx(math.radians(35.0))


def test_image_decoding() -> None:
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.0, 1000.0, (6, 8))
    decoded = convert.depth_of(convert.depth_to_bgra(depth))
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, depth, atol=1000.0 / (256**3 - 1) + 1e-4)
    bgra = np.zeros((2, 3, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2] = 10, 20, 30  # B, G, R
    np.testing.assert_array_equal(convert.rgb_of(bgra)[0, 0], [30, 20, 10])
    np.testing.assert_array_equal(convert.semantic_of(bgra), np.full((2, 3), 30))
    np.testing.assert_array_equal(convert.instance_of(bgra), np.full((2, 3), 20 + 256 * 10))


def test_light_states_and_actor_kinds() -> None:
    tls = carla.TrafficLightState
    assert [convert.light_state(s) for s in (tls.Red, tls.Yellow, tls.Green, tls.Off)] == [
        LightState.RED,
        LightState.YELLOW,
        LightState.GREEN,
        LightState.OFF,
    ]
    assert convert.light_state(tls.Unknown) == LightState.UNKNOWN
    assert convert.actor_kind("vehicle.audi.a2") == ActorKind.VEHICLE
    assert convert.actor_kind("walker.pedestrian.0001") == ActorKind.PEDESTRIAN
    assert convert.actor_kind("static.prop.streetbarrier") == 0


def test_camera_mount_and_projection() -> None:
    spec = CameraSpec(x=1.5, y=0.2, z=1.4, pitch_deg=10.0, width=200, height=100, fov_deg=90.0)
    mount = mount_transform(spec, rear_axle_x_m=-1.4, ground_z_m=-0.05)
    assert (mount.location.x, mount.location.y, mount.location.z) == pytest.approx(
        (0.1, -0.2, 1.35), abs=1e-6
    )
    assert mount.rotation.pitch == pytest.approx(-10.0)  # our "looks down" is CARLA's nose-down
    # a 2 m cube 20 m straight ahead of a level camera lands in the image centre
    cam = carla.Transform(carla.Location(0.0, 0.0, 1.0))
    cube = carla.BoundingBox(carla.Location(0, 0, 0), carla.Vector3D(1.0, 1.0, 1.0))
    corners = corners_of(cube, carla.Transform(carla.Location(20.0, 0.0, 1.0)))
    K = pinhole.intrinsics(200, 100, 90.0)
    b = project_boxes(
        [BoxTarget(7, 7, int(DetectionClass.VEHICLE), corners)],
        np.array(cam.get_matrix()),
        K,
        200,
        100,
    )
    assert b.id.tolist() == [7] and b.cls.tolist() == [int(DetectionClass.VEHICLE)]
    x0, y0, x1, y1 = b.xyxy[0]
    assert (x0 + x1) / 2 == pytest.approx(100.0) and (y0 + y1) / 2 == pytest.approx(50.0)
    assert x1 - x0 == pytest.approx(2 * 100.0 * 1.0 / 19.0)  # nearest face at 19 m
    assert b.truncation[0] == pytest.approx(0.0)
    # behind the camera: no box
    behind = corners_of(cube, carla.Transform(carla.Location(-20.0, 0.0, 1.0)))
    none = project_boxes([BoxTarget(8, 8, 1, behind)], np.array(cam.get_matrix()), K, 200, 100)
    assert len(none.id) == 0


def test_server_errors_are_classified() -> None:
    conn = CarlaConnection(timeout_s=3.0)
    t = classify(
        RuntimeError("time-out of 3000ms while waiting for the simulator"), conn, "ticking"
    )
    assert isinstance(t, CarlaTimeoutError) and "did not answer within 3 s while ticking" in str(t)
    r = classify(RuntimeError("trying to access an expired episode; ..."), conn, "ticking")
    assert isinstance(r, CarlaServerRestarted) and "new episode" in str(r)
    other = classify(RuntimeError("Spawn failed because of collision"), conn, "spawning")
    assert type(other) is CarlaError and "Spawn failed because of collision" in str(other)
    for err in (t, r, other):
        assert "\n" not in str(err) and str(err).endswith(
            ("its result so far is kept", "raise --carla-timeout for a slow one)")
        )
    early = classify(RuntimeError("time-out of 90000ms"), conn, "loading", False, 90.0)
    assert "within 90 s while loading; the episode did not start" in str(early)
