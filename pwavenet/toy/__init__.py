"""The 2-D normalizing-flow ladder (MADE, MAF, IAF, NICE, Real NVP, planar) on toy densities.

The flows (:mod:`~pwavenet.toy.base` holds their shared contract) and which direction costs one
pass:

- :mod:`~pwavenet.toy.autoregressive`: MAF's density is one pass and its sampling ``D``; IAF's
  sampling is one pass and its density ``D``;
- :mod:`~pwavenet.toy.coupling` (NICE, Real NVP): one pass both ways;
- :mod:`~pwavenet.toy.planar`: one pass forward, a scalar root-find inverse.

:mod:`~pwavenet.toy.toy2d` fits them to the densities of :mod:`~pwavenet.toy.targets` (fitting in
:mod:`~pwavenet.toy.fitting`, figures in :mod:`~pwavenet.toy.figures`).
"""
