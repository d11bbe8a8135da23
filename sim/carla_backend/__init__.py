"""The CARLA 0.9.16 backend (docs/carla.md): the only package besides :mod:`sim.map` that talks
to CARLA. :class:`~sim.carla_backend.world.CarlaWorld` is the entry point."""
