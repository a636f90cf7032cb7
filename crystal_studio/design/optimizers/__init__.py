"""Design methods: SMOACS and the baselines every run is compared with."""
