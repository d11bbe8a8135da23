"""Camera geometry against hand-computed answers: projection, box size, road depth, occlusion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.camera import Camera, camera_spec
from sim.map import RoadMap
from sim.messages import (
    ActorKind,
    ActorsGT,
    Control,
    DetectionClass,
    GroundTruth,
    LightGT,
    LightState,
    Observation,
    RouteAhead,
    SemanticClass,
    SignGT,
    SignType,
    VehicleState,
)
from sim.render.pinhole import camera_pose, intrinsics, project
from sim.scenario import BUILTIN_MAPS, CameraSpec, WeatherSpec
from sim.world import load_map

W, H = 640, 480
F = 320.0  # focal length of a 640-px-wide, 90° camera (px)


@pytest.fixture(scope="module")
def road_map() -> RoadMap:
    return load_map(str(BUILTIN_MAPS / "town_small.xodr"))


def _actors(rows: list[tuple[int, int, float, float, float, float, float, float]]) -> ActorsGT:
    """rows: id, kind, x, y, yaw, length, width, height."""
    a = np.array(rows, dtype=np.float64).reshape(-1, 8)
    return ActorsGT(
        id=a[:, 0].astype(np.int64),
        kind=a[:, 1].astype(np.int64),
        x=a[:, 2],
        y=a[:, 3],
        yaw=a[:, 4],
        speed=np.zeros(len(a)),
        length=a[:, 5],
        width=a[:, 6],
        height=a[:, 7],
    )


def _obs(
    actors: ActorsGT | None = None,
    signs: tuple[SignGT, ...] = (),
    lights: tuple[LightGT, ...] = (),
    x: float = -500.0,
    y: float = -500.0,
) -> Observation:
    """The ego at (x, y) heading east, far outside the map unless told (plain terrain)."""
    ego = VehicleState(0.0, 0, x, y, 0.0, 0.0)
    z = np.zeros(0)
    route = RouteAhead(z.reshape(0, 2), z, z, z, z.astype(np.int64), z.astype(np.int64), 1.0, 0, 0)
    gt = GroundTruth(actors if actors is not None else _actors([]), signs, lights)
    return Observation(0.0, 0, ego, route, (), gt)


def _camera(road_map, **fields: object) -> Camera:
    spec = camera_spec(**({"width": W, "height": H, "pitch_deg": 0.0} | fields))
    return Camera(spec, road_map, WeatherSpec())


def test_intrinsics_and_projection_of_a_known_point() -> None:
    K = intrinsics(W, H, 90.0)
    assert K[0, 0] == pytest.approx(F) and K[1, 1] == pytest.approx(F)
    assert (K[0, 2], K[1, 2]) == (320.0, 240.0)
    # level camera 1.5 m up at x = 1.5: the point is 10 m ahead, 2 m left, 1 m below the lens
    pose = camera_pose(1.5, 0.0, 1.5, 0.0, 0.0, 0.0)
    uv, z = project(K, pose, np.array([[11.5, 2.0, 0.5]]))
    assert z[0] == pytest.approx(10.0)
    assert uv[0] == pytest.approx([320.0 - F * 2.0 / 10.0, 240.0 + F * 1.0 / 10.0])
    # pitched 10° down: axis (cos p, 0, -sin p), image-down (-sin p, 0, -cos p), right (0, -1, 0)
    p = math.radians(10.0)
    pose = camera_pose(1.5, 0.0, 1.5, 0.0, 10.0, 0.0)
    uv, z = project(K, pose, np.array([[11.5, 2.0, 0.5]]))
    d = np.array([10.0, 2.0, -1.0])
    zc = d @ [math.cos(p), 0.0, -math.sin(p)]
    xc = d @ [0.0, -1.0, 0.0]
    yc = d @ [-math.sin(p), 0.0, -math.cos(p)]
    assert z[0] == pytest.approx(zc)
    assert uv[0] == pytest.approx([320.0 + F * xc / zc, 240.0 + F * yc / zc])


def test_sign_20_m_ahead_has_the_box_its_width_and_K_predict(road_map: RoadMap) -> None:
    cam = _camera(road_map)
    ego_x, ego_y = -500.0, -500.0
    # the face 20 m in front of the lens (the camera sits 1.5 m ahead of the rear axle),
    # 3 m to the right, lower edge 2 m up, looking back at the ego
    sign = SignGT(7, SignType.SPEED_LIMIT, 30.0, ego_x + 1.5 + 20.0, ego_y - 3.0, 2.0, math.pi)
    frame = cam.render(_obs(signs=(sign,), x=ego_x, y=ego_y))
    assert frame.boxes is not None and frame.box_class is not None
    assert list(frame.box_class) == [DetectionClass.SPEED_LIMIT_SIGN]
    assert frame.box_id is not None and frame.box_value is not None
    assert frame.box_id[0] == 7 and frame.box_value[0] == 30.0
    x0, y0, x1, y1 = frame.boxes[0]
    size = F * 0.6 / 20.0  # a 0.6 m face at 20 m
    assert x1 - x0 == pytest.approx(size, abs=1e-6)
    assert y1 - y0 == pytest.approx(size, abs=1e-6)
    assert (x0 + x1) / 2 == pytest.approx(320.0 + F * 3.0 / 20.0, abs=1e-6)
    assert (y0 + y1) / 2 == pytest.approx(240.0 - F * (2.3 - 1.5) / 20.0, abs=1e-6)
    # the face's pixels: about a disc of that size, all of them labelled with the sign
    assert frame.box_visible_px is not None and frame.box_occlusion is not None
    assert frame.box_visible_px[0] == pytest.approx(math.pi * (size / 2) ** 2, rel=0.15)
    assert frame.box_occlusion[0] == 0.0
    assert frame.instance is not None and frame.semantic is not None
    assert int((frame.instance == 7).sum()) == frame.box_visible_px[0]
    assert set(np.unique(frame.semantic[frame.instance == 7])) == {SemanticClass.TRAFFIC_SIGN}
    assert frame.depth is not None
    assert np.allclose(frame.depth[frame.instance == 7], 20.0, atol=1e-3)


def test_a_sign_seen_from_behind_and_a_light_get_what_they_show(road_map: RoadMap) -> None:
    cam = _camera(road_map)
    ego_x, ego_y = -500.0, -500.0
    back = SignGT(8, SignType.STOP, 0.0, ego_x + 16.5, ego_y + 3.0, 2.0, 0.0)  # looks away
    light = LightGT(9, 0, LightState.GREEN, ego_x + 21.5, ego_y - 3.0, 2.0, math.pi, 0, 0, 0)
    frame = cam.render(_obs(signs=(back,), lights=(light,), x=ego_x, y=ego_y))
    assert frame.box_class is not None and frame.box_state is not None
    assert list(frame.box_class) == [DetectionClass.TRAFFIC_LIGHT]  # no box for the sign's back
    assert frame.box_state[0] == LightState.GREEN
    assert frame.instance is not None and (frame.instance == 8).any()  # but it is drawn
    # the lit lamp is the bottom third of the head, and it is green
    assert frame.boxes is not None
    x0, y0, x1, y1 = frame.boxes[0]
    rgb = frame.rgb[math.ceil(y0) : math.floor(y1) + 1, math.ceil(x0) : math.floor(x1) + 1]
    rgb = rgb.astype(int)
    third = rgb.shape[0] // 3
    lower, upper = rgb[2 * third :], rgb[:third]
    assert lower[..., 1].max() > 200 and upper[..., 0].max() < 120


def test_road_depth_is_the_ground_plane_intersection(road_map: RoadMap) -> None:
    pitch = 10.0
    cam = _camera(road_map, pitch_deg=pitch, z=1.6)
    frame = cam.render(_obs())
    assert frame.depth is not None and frame.semantic is not None
    p = math.radians(pitch)
    for v in (250, 300, 400, 479):
        for u in (0, 320, 639):
            # depth z along the axis: the ray (u', v', 1)·z drops 1.6 m: z (sin p + v' cos p) = h
            vn = (v - 240.0) / F
            expected = 1.6 / (math.sin(p) + vn * math.cos(p))
            assert frame.depth[v, u] == pytest.approx(expected, rel=1e-5)
            assert frame.semantic[v, u] == SemanticClass.TERRAIN
    assert frame.depth[0, 320] == 1000.0 and frame.semantic[0, 320] == SemanticClass.SKY


def test_an_object_hidden_behind_a_vehicle_is_marked_occluded(road_map: RoadMap) -> None:
    cam = _camera(road_map)
    ex, ey = -500.0, -500.0
    van = (101, ActorKind.VEHICLE, ex + 12.0, ey, 0.0, 5.3, 2.1, 2.2)
    hidden = (102, ActorKind.PEDESTRIAN, ex + 25.0, ey, 0.0, 0.5, 0.6, 1.8)
    half = (103, ActorKind.PEDESTRIAN, ex + 25.0, ey - 3.2, 0.0, 0.5, 0.6, 1.8)  # at its edge
    frame = cam.render(_obs(_actors([van, hidden, half]), x=ex, y=ey))
    assert frame.box_id is not None and frame.box_occlusion is not None
    occ = dict(zip(frame.box_id.tolist(), frame.box_occlusion.tolist(), strict=True))
    assert occ[101] == 0.0
    assert occ[102] == 1.0  # behind the van: every one of its pixels shows the van
    assert 0.1 < occ[103] < 0.9
    assert frame.instance is not None
    assert not (frame.instance == 102).any()
    assert frame.box_visible_px is not None
    vis = dict(zip(frame.box_id.tolist(), frame.box_visible_px.tolist(), strict=True))
    assert vis[102] == 0 and vis[103] == int((frame.instance == 103).sum())


def test_a_box_leaving_the_image_is_clipped_and_truncated(road_map: RoadMap) -> None:
    cam = _camera(road_map)
    ex, ey = -500.0, -500.0
    # a car 10 m ahead of the lens with its centre on the image's left edge (45° to the left)
    car = (201, ActorKind.VEHICLE, ex + 11.5, ey + 10.0, 0.0, 4.5, 1.9, 1.5)
    frame = cam.render(_obs(_actors([car]), x=ex, y=ey))
    assert frame.boxes is not None and frame.box_truncation is not None
    assert frame.boxes[0][0] == -0.5  # clipped at the image's left edge
    assert 0.3 < frame.box_truncation[0] < 0.7


def test_a_car_alongside_the_lens_is_boxed_where_it_shows(road_map: RoadMap) -> None:
    cam = _camera(road_map)
    ex, ey = -500.0, -500.0
    # a car 4 m to the left whose body runs from 1.25 m behind the lens to 3.25 m ahead of it:
    # its faces cross the camera plane and project far outside the image, where their extents
    # span the image's lower half (the old box: rows 240 to 480; the car shows in 299 to 366)
    car = (202, ActorKind.VEHICLE, ex + 2.5, ey + 4.0, 0.0, 4.5, 1.9, 1.5)
    frame = cam.render(_obs(_actors([car]), x=ex, y=ey))
    assert frame.boxes is not None and frame.instance is not None
    assert frame.box_truncation is not None and frame.box_truncation[0] > 0.9
    rows = np.flatnonzero((frame.instance == 202).any(axis=1))
    cols = np.flatnonzero((frame.instance == 202).any(axis=0))
    assert rows.size and cols.size and cols[0] == 0  # it shows at the image's left edge
    shown = (cols[0] - 0.5, rows[0] - 0.5, cols[-1] + 0.5, rows[-1] + 0.5)  # its pixels' extent
    assert frame.boxes[0] == pytest.approx(shown, abs=1.0)


def test_the_world_renders_cameras_only_when_the_scenario_has_them() -> None:
    from sim.scenario import load_scenario
    from sim.world import EmbeddedWorld

    base = load_scenario("town_small_tour")
    world = EmbeddedWorld()
    assert world.reset(base, 0).sensors == {}
    cams = [CameraSpec(name="front", width=160, height=120), CameraSpec(name="left", yaw_deg=60)]
    sc = base.model_copy(update={"sensors": cams})
    obs = world.reset(sc, 0)
    assert set(obs.sensors) == {"front", "left"}
    front = obs.sensors["front"]
    assert front.rgb.shape == (120, 160, 3) and front.rgb.dtype == np.uint8
    assert front.depth is not None and front.depth.shape == (120, 160)
    assert front.depth.dtype == np.float32
    assert front.frame == obs.frame and front.t == obs.t


def test_a_camera_takes_a_frame_every_sensor_tick_and_holds_it_between() -> None:
    from sim.scenario import load_scenario
    from sim.world import EmbeddedWorld

    # CARLA's rule: a frame once sensor_tick has passed since the last. On 0.05 s ticks, 0.1 s
    # takes frames 0, 2, 4, ...; 0.12 s takes 0, 3, 6 (0.1 s after frame 0 is too early)
    spec = CameraSpec(sensor_tick=0.12)
    assert [f for f in range(8) if spec.captures(f * 0.05, 0.0)] == [3, 4, 5, 6, 7]
    assert CameraSpec().captures(0.05, 0.0) and spec.captures(0.0, None)
    cams = [
        CameraSpec(name="every", width=160, height=120),
        CameraSpec(name="held", width=160, height=120, sensor_tick=0.1),
    ]
    sc = load_scenario("town_loop").model_copy(update={"sensors": cams})
    world = EmbeddedWorld()
    seen = [world.reset(sc, 0)]
    for _ in range(5):
        seen.append(world.step(Control(seen[-1].t, seen[-1].frame, accel=2.0, steer=0.0)))
    assert [o.sensors["every"].frame for o in seen] == [0, 1, 2, 3, 4, 5]
    assert [o.sensors["held"].frame for o in seen] == [0, 0, 2, 2, 4, 4]
    for o in seen:
        held = o.sensors["held"]
        assert held is seen[held.frame].sensors["held"]  # the very frame taken then
        taken = seen[held.frame].sensors["every"]  # the same camera, rendered at that tick
        np.testing.assert_array_equal(held.rgb, taken.rgb)
        assert held.t == taken.t
    assert not np.array_equal(seen[2].sensors["held"].rgb, seen[0].sensors["held"].rgb)
    with pytest.raises(ValueError, match="sensor_tick"):
        CameraSpec(sensor_tick=-0.1)


def test_weather_darkens_the_night_and_fogs_the_distance(road_map: RoadMap) -> None:
    spec = camera_spec(width=160, height=120)
    obs = _obs(x=100.0, y=103.25)
    day = Camera(spec, road_map, WeatherSpec(sun_altitude_angle=60)).render(obs).rgb
    night = Camera(spec, road_map, WeatherSpec(sun_altitude_angle=-20)).render(obs).rgb
    fog = Camera(spec, road_map, WeatherSpec(fog_density=80)).render(obs).rgb
    assert night.mean() < 0.5 * day.mean()
    assert fog[70:].std() < day[70:].std()  # fog washes the ground's contrast out


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"width": 0}, "camera field 'width': Input should be greater than 0"),
        ({"pitch_deg": -60.0}, "looks at nothing"),
        ({"fov_deg": 180.0}, "camera field 'fov_deg'"),
    ],
)
def test_bad_camera_settings_say_what_is_wrong(fields: dict[str, object], needle: str) -> None:
    from sim.camera import CameraError

    with pytest.raises(CameraError, match=needle) as err:
        camera_spec(**fields)
    assert "\n" not in str(err.value)


def test_frames_are_deterministic_and_noise_comes_from_the_seed(road_map: RoadMap) -> None:
    spec = camera_spec(width=160, height=120, noise_std=4.0)
    car = (301, ActorKind.VEHICLE, 120.0, 103.25, 0.0, 4.5, 1.9, 1.5)
    obs = _obs(_actors([car]), x=100.0, y=103.25)

    def frame(seed: int) -> np.ndarray:
        return Camera(spec, road_map, WeatherSpec(), np.random.default_rng(seed)).render(obs).rgb

    assert np.array_equal(frame(1), frame(1))
    assert not np.array_equal(frame(1), frame(2))
