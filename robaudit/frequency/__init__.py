"""Frequency analysis shared by the frequency audits: FFT radius grids and disc masks (:mod:`.radius`), and
radial power spectra of perturbations with their median radial frequency f0.5 (:mod:`.spectrum`)."""
