"""``depth_from_video``: per-pixel depth and camera ego-motion from a monocular video by differentiable
inverse warping (SfMLearner, Zhou et al. CVPR 2017; monodepth2, Godard et al. ICCV 2019)."""
