"""Single-view 3D reconstruction: fit or learn a deformed template sphere from images (issue 6)."""
