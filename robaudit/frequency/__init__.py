"""Frequency analysis shared by the frequency audits: FFT radius grids and disc masks (:mod:`.radius`), and
radial power spectra of perturbations with their median radial frequency f0.5 (:mod:`.spectrum`)."""

#: the unit of every frequency robaudit reports (numpy's fftfreq convention)
UNITS = "cycles/pixel (axis Nyquist 0.5, corner 0.707)"
#: the axis Nyquist frequency in those units: a normalized frequency f (1 = Nyquist) is f * NYQUIST
NYQUIST = 0.5
