"""The 2-D normalizing-flow ladder (MADE, MAF, IAF, NICE, Real NVP, planar) on toy densities."""
