"""The CARLA adapter driven through whole episodes on the test double of the server."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import carla
import numpy as np
import pytest

from sim.carla_backend.client import (
    CarlaConnection,
    CarlaConnectionError,
    CarlaError,
    CarlaServerRestarted,
    CarlaTimeoutError,
    CarlaVersionError,
)
from sim.carla_backend.world import CarlaSettings, CarlaWorld
from sim.errors import ScenarioError
from sim.messages import ActorKind, Control, DetectionClass
from sim.render import pinhole
from sim.scenario import (
    BUILTIN_MAPS,
    CameraSpec,
    ParkedVehicle,
    Scenario,
    TrafficSpec,
    load_scenario,
)
from tests.sim.carla.conftest import follow
from tests.sim.carla.fake_carla import DEPTH_M, FakeServer

CAMERA = CameraSpec(name="front", width=160, height=90, fov_deg=90.0, pitch_deg=5.0)


def _scenario(name: str, **update: object) -> Scenario:
    return load_scenario(name).model_copy(update=update)


def _ours(server: FakeServer) -> set[int]:
    """Ids of every actor the adapter spawned (the server's own lights and signs excluded)."""
    return {i for i in server.ever_spawned if i not in server.landmark_ids}


def _run(world: CarlaWorld, scenario: Scenario, steps: int, seed: int = 0, speed: float = 8.0):
    obs = world.reset(scenario, seed)
    seen = [obs]
    for _ in range(steps):
        if world.done:
            break
        obs = world.step(follow(obs, speed))
        seen.append(obs)
    return seen


def test_whole_episode_spawns_ticks_and_cleans_up(server: FakeServer, world: CarlaWorld) -> None:
    scenario = _scenario(
        "stop_signs", traffic=TrafficSpec(vehicles=3, pedestrians=2), sensors=[CAMERA]
    )
    obs = world.reset(scenario, seed=3)
    # settings: synchronous with the scenario's dt, a seeded synchronous Traffic Manager
    assert server.settings.synchronous_mode and server.settings.fixed_delta_seconds == 0.05
    assert not server.settings.no_rendering_mode  # a camera needs rendering
    tm = server.tms[8000]
    assert tm.synchronous and tm.seed == 3 and tm.osm_mode
    actors = list(server.actors.values())
    ego = [a for a in actors if a.attributes.get("role_name") == "hero"]
    assert len(ego) == 1 and ego[0].type_id == "vehicle.lincoln.mkz_2020"
    attached = sorted(a.type_id for a in actors if a.parent is ego[0])
    assert attached == sorted(
        [
            "sensor.other.collision",
            "sensor.other.lane_invasion",
            "sensor.camera.rgb",
            "sensor.camera.depth",
            "sensor.camera.semantic_segmentation",
            "sensor.camera.instance_segmentation",
        ]
    )
    traffic = [a for a in actors if a.attributes.get("role_name") == "background"]
    assert len(traffic) == 3 and all(a.autopilot for a in traffic)
    walkers = [a for a in actors if a.type_id.startswith("walker.")]
    controllers = [a for a in actors if a.type_id == "controller.ai.walker"]
    assert len(walkers) == 2 and len(controllers) == 2 and all(c.ai_started for c in controllers)
    # the first observation: the ego's rear axle at the route's start, facing along it
    assert (obs.t, obs.frame) == (0.0, 0)
    assert obs.ego.x == pytest.approx(world.route.xy[0, 0], abs=1e-3)
    assert obs.ego.y == pytest.approx(world.route.xy[0, 1], abs=1e-3)
    assert obs.ego.yaw == pytest.approx(world.route.yaw[0], abs=1e-4)
    assert obs.ego.speed == pytest.approx(8.0, abs=0.05)  # one tick of rolling resistance
    # ground truth: every actor at its bounding-box centre, mirrored into our frame
    gt = obs.ground_truth.actors
    assert sorted(gt.kind.tolist()) == [1, 1, 1, 2, 2]
    for i, actor_id in enumerate(gt.id.tolist()):
        a = server.actors[actor_id]
        c = a.get_transform().transform(carla.Location(a.bounding_box.location))
        assert (gt.x[i], gt.y[i]) == pytest.approx((c.x, -c.y), abs=1e-4)
    assert len(obs.ground_truth.lights) == len(world.map.lights)
    # ticks
    seen = [obs]
    for _ in range(40):
        seen.append(world.step(follow(seen[-1])))
    assert [o.frame for o in seen] == list(range(41))
    assert seen[-1].t == pytest.approx(40 * 0.05)
    assert world.monitor is not None and world.monitor.progress_m > 14.0  # 2 s at 8 m/s
    cam = seen[-1].sensors["front"]
    assert cam.rgb.shape == (90, 160, 3) and cam.rgb.dtype == np.uint8
    assert cam.depth is not None and np.allclose(cam.depth, DEPTH_M, atol=1e-3)
    np.testing.assert_allclose(cam.K, pinhole.intrinsics(160, 90, 90.0))
    np.testing.assert_allclose(cam.pose, pinhole.camera_pose(1.5, 0.0, 1.5, 0.0, 5.0, 0.0))
    result = world.result()
    assert result.steps == 40 and result.map == "town_grid"
    # cleanup: every actor the adapter spawned is gone, the settings are the ones found
    world.close()
    assert _ours(server) <= set(server.destroyed)
    assert not server.settings.synchronous_mode and server.settings.fixed_delta_seconds is None
    assert not tm.synchronous
    world.close()  # twice is fine


def test_control_reaches_the_car_with_the_right_signs(world: CarlaWorld) -> None:
    obs = world.reset(_scenario("stop_signs", traffic=TrafficSpec()), seed=0)
    yaw0, v0 = obs.ego.yaw, obs.ego.speed
    for _ in range(20):
        obs = world.step(Control(obs.t, obs.frame, 1.0, 0.1))  # speed up, steer left
    assert obs.ego.speed > v0 + 0.5
    assert obs.ego.yaw > yaw0 + 0.1  # left is counter-clockwise in our frame
    assert obs.ego.steer == pytest.approx(0.1, abs=1e-6)
    for _ in range(40):
        obs = world.step(Control(obs.t, obs.frame, -8.0, 0.0))
    assert obs.ego.speed == 0.0


def test_collision_with_a_parked_car_is_scored(server: FakeServer, world: CarlaWorld) -> None:
    scenario = _scenario("parked_car")
    _run(world, scenario, 400, speed=10.0)
    result = world.result().to_dict()
    parked = [a.id for a in server.actors.values() if a.attributes.get("role_name") == "scripted"]
    hits = [e for e in result["infractions"] if e["type"] == "collisions_vehicle"]
    assert len(hits) == 1 and hits[0]["other_id"] == parked[0]
    assert result["infraction_counts"]["collisions_vehicle"] == 1
    assert result["infraction_penalty"] == pytest.approx(0.6)


def test_running_a_red_light_is_scored(server: FakeServer, world: CarlaWorld) -> None:
    server.light_override = carla.TrafficLightState.Red
    _run(world, _scenario("red_lights", traffic=TrafficSpec()), 400)
    counts = world.result().to_dict()["infraction_counts"]
    assert counts["red_light"] >= 1
    assert all(int(s) == 0 for s in world.lights.state)  # RED everywhere, read from the server


def test_green_lights_are_not_run(server: FakeServer, world: CarlaWorld) -> None:
    server.light_override = carla.TrafficLightState.Green
    _run(world, _scenario("red_lights", traffic=TrafficSpec()), 400)
    assert world.result().to_dict()["infraction_counts"]["red_light"] == 0


def test_lane_invasions_are_reported_not_scored(world: CarlaWorld) -> None:
    obs = world.reset(_scenario("stop_signs", traffic=TrafficSpec()), seed=0)
    for _ in range(60):  # swerve left across the centre line
        obs = world.step(Control(obs.t, obs.frame, 0.0, 0.15 if obs.frame < 15 else 0.0))
    r = world.result().to_dict()
    assert any(e["type"] == "lane_invasion" for e in r["events"])
    assert not any(e["type"] == "lane_invasion" for e in r["infractions"])


def test_lead_vehicle_is_boxed_by_the_camera(server: FakeServer, world: CarlaWorld) -> None:
    obs = world.reset(_scenario("lead_vehicle_brakes", sensors=[CAMERA]), seed=0)
    lead = [a.id for a in server.actors.values() if a.attributes.get("role_name") == "scripted"]
    cam = obs.sensors["front"]
    assert cam.box_id is not None and cam.box_class is not None and cam.boxes is not None
    assert lead[0] in cam.box_id.tolist()
    k = cam.box_id.tolist().index(lead[0])
    assert cam.box_class[k] == DetectionClass.VEHICLE
    x0, _, x1, _ = cam.boxes[k]
    assert x0 < 80 < x1  # straight ahead: across the image centre column
    assert cam.box_visible_px is not None and cam.box_visible_px[k] > 0
    assert obs.ground_truth.actors.kind.tolist() == [int(ActorKind.VEHICLE)]


def test_lead_vehicle_brakes_when_the_ego_gets_there(server: FakeServer, world: CarlaWorld) -> None:
    seen = _run(world, _scenario("lead_vehicle_brakes"), 500, speed=11.0)
    lead = world.scripts[0]
    assert lead.phase in ("stopped", "done")  # type: ignore[attr-defined]
    speeds = [float(o.ground_truth.actors.speed[0]) for o in seen]
    assert max(speeds) > 10.0 and min(speeds[100:]) < 0.2


def test_same_seed_same_episode() -> None:
    hashes = []
    for _ in range(2):
        server = FakeServer()
        w = CarlaWorld(CarlaSettings(), server.factory)
        _run(w, _scenario("stop_signs", traffic=TrafficSpec(vehicles=3, pedestrians=2)), 30)
        hashes.append(w.result().trajectory_sha256)
        w.close()
    assert hashes[0] == hashes[1]


# ------------------------------------------------------------------------------------ maps
def test_map_is_generated_from_the_xodr_once(server: FakeServer, world: CarlaWorld) -> None:
    world.reset(_scenario("parked_car"), seed=0)
    assert server.loads == ["OpenDriveMap"]
    assert server.map.to_opendrive() == (BUILTIN_MAPS / "country_road.xodr").read_text()
    world.reset(_scenario("parked_car"), seed=1)  # the same map: kept
    assert server.loads == ["OpenDriveMap"]


def test_a_carla_town_is_loaded_by_name(
    server: FakeServer, world: CarlaWorld, tmp_path: Path
) -> None:
    shutil.copy(BUILTIN_MAPS / "town_grid.xodr", tmp_path / "Town03.xodr")
    sc = load_scenario("stop_signs").model_dump(mode="json")
    path = tmp_path / "on_town03.yaml"
    import yaml

    path.write_text(yaml.safe_dump(sc | {"map": "Town03.xodr", "traffic": {}}))
    world.reset(load_scenario(path), seed=0)
    assert server.loads == ["Carla/Maps/Town03"]


# ---------------------------------------------------------------------------------- faults
def test_no_server(server: FakeServer, world: CarlaWorld) -> None:
    server.down = True
    with pytest.raises(CarlaConnectionError) as err:
        world.reset(_scenario("stop_signs"), 0)
    msg = str(err.value)
    assert "\n" not in msg
    assert "no CARLA server answered at localhost:2000 within 0.5 s" in msg
    assert "CarlaUE4.sh -RenderOffScreen" in msg and "carlasim/carla:0.9.16" in msg
    assert server.ever_spawned == sorted(server.landmark_ids)  # nothing of ours


def test_wrong_version(server: FakeServer, world: CarlaWorld) -> None:
    server.version = "0.9.15"
    with pytest.raises(CarlaVersionError, match=r"is version 0\.9\.15 .* needs both at 0\.9\.16"):
        world.reset(_scenario("stop_signs"), 0)


def test_map_generation_timeout_names_its_own_timeout(server: FakeServer) -> None:
    server.load_hangs = True
    conn = CarlaConnection(timeout_s=0.5, load_timeout_s=90.0)
    w = CarlaWorld(CarlaSettings(connection=conn), server.factory)
    with pytest.raises(CarlaTimeoutError) as err:
        w.reset(_scenario("parked_car"), 0)
    msg = str(err.value)
    assert "did not answer within 90 s while generating a world from country_road.xodr" in msg
    assert "the episode did not start" in msg
    assert server.settings_log == []  # nothing was changed on the server
    w.close()


def test_timeout_mid_episode_keeps_the_result(server: FakeServer, world: CarlaWorld) -> None:
    obs = world.reset(_scenario("stop_signs", traffic=TrafficSpec(vehicles=2)), 0)
    server.hang_at_frame = server.frame + 6
    with pytest.raises(
        CarlaTimeoutError, match=r"did not answer within 0\.5 s while ticking frame 6"
    ):
        for _ in range(10):
            obs = world.step(follow(obs))
    assert world.done
    r = world.result().to_dict()
    assert r["steps"] == 5 and r["route_completion"] > 0
    assert r["events"][-1]["type"] == "simulation_error"
    t0 = time.perf_counter()
    world.close()  # a hung server: cleanup gives up after one more timeout, never hangs
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(CarlaError, match="already stopped"):
        world.step(follow(obs))


def test_server_restart_mid_episode(server: FakeServer, world: CarlaWorld) -> None:
    obs = world.reset(_scenario("stop_signs", traffic=TrafficSpec(vehicles=2)), 0)
    server.restart_at_frame = server.frame + 4
    with pytest.raises(CarlaServerRestarted, match="started a new episode while ticking frame 4"):
        for _ in range(10):
            obs = world.step(follow(obs))
    assert world.result().steps == 3
    destroyed = list(server.destroyed)
    log = list(server.settings_log)
    world.close()  # the old episode's actors went with it: nothing is sent to the new one
    assert server.destroyed == destroyed and server.settings_log == log


def test_ctrl_c_destroys_actors_and_restores_settings(
    server: FakeServer, world: CarlaWorld
) -> None:
    obs = world.reset(_scenario("stop_signs", traffic=TrafficSpec(vehicles=3, pedestrians=2)), 0)
    server.interrupt_at_frame = server.frame + 3
    with pytest.raises(KeyboardInterrupt):
        for _ in range(10):
            obs = world.step(follow(obs))
    assert _ours(server) <= set(server.destroyed)
    assert not server.settings.synchronous_mode
    assert world.result().steps == 2


def test_a_camera_with_a_sensor_tick_is_converted_when_due_and_held_between(
    server: FakeServer, world: CarlaWorld
) -> None:
    # the server sends every tick's images (its own sensor_tick stays 0); the adapter makes a
    # frame every 0.15 s of the 0.05 s ticks, frames 0, 3, 6, and hands it on between
    periodic = CAMERA.model_copy(update={"sensor_tick": 0.15})
    seen = _run(world, _scenario("stop_signs", traffic=TrafficSpec(), sensors=[periodic]), 7)
    frames = [o.sensors["front"] for o in seen]
    assert [f.frame for f in frames] == [0, 0, 0, 3, 3, 3, 6, 6]
    assert frames[1] is frames[0] and frames[5] is frames[3]
    assert [f.t for f in frames[::3]] == pytest.approx([0.0, 0.15, 0.3])


def test_silent_cameras_time_out(server: FakeServer, world: CarlaWorld) -> None:
    obs = world.reset(_scenario("stop_signs", traffic=TrafficSpec(), sensors=[CAMERA]), 0)
    server.cameras_silent = True
    with pytest.raises(CarlaTimeoutError, match="stopped sending images"):
        world.step(follow(obs))
    assert _ours(server) <= set(server.destroyed)


def test_failure_during_reset_cleans_up(server: FakeServer, world: CarlaWorld) -> None:
    bad = _scenario("parked_car", events=[ParkedVehicle(type="parked_vehicle", at_route_m=5e3)])
    with pytest.raises(ScenarioError, match="beyond the route's length"):
        world.reset(bad, 0)
    assert len(_ours(server)) >= 3  # the ego and its sensors were spawned before the failure
    assert _ours(server) <= set(server.destroyed)
    assert not server.settings.synchronous_mode
    with pytest.raises(CarlaError, match="no CARLA episode has started"):
        world.result()


def test_unknown_ego_blueprint(server: FakeServer) -> None:
    w = CarlaWorld(CarlaSettings(ego_blueprint="vehicle.nope"), server.factory)
    with pytest.raises(CarlaError, match=r"no vehicle blueprint 'vehicle\.nope'"):
        w.reset(_scenario("stop_signs"), 0)
    assert not server.settings.synchronous_mode
    assert math.isfinite(server.frame)
