"""Rasterising the embedded world for the camera: geometry, ground, objects, textures, light."""
