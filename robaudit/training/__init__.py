"""Training: make models more robust by training them behind input defenses and with regularizers.

``robaudit train`` (:mod:`robaudit.cli.train`) trains from scratch or fine-tunes any model robaudit loads,
behind fixed input defenses (blur, PCA, grayscale...), with standard augmentation, SGD or AdamW on a cosine
schedule with warm-up, optional label smoothing, bf16 autocast on CUDA, held-out accuracy after every
epoch, and composable regularizers (the neural-similarity loss of Li et al. 2019, adversarial training).
Every epoch leaves a safetensors checkpoint and an updated run card, so that ``--resume`` continues a killed
run exactly; the result is audited with ``--weights RUN/model.safetensors`` (the card supplies the defenses).

Modules, one job each: :mod:`.config` (options and the run's identity), :mod:`.model` (the trainable model
behind its defenses), :mod:`.data` (training and held-out data, epoch order), :mod:`.augment`, :mod:`.optim`
(optimizer, schedule), :mod:`.regularizer` (the contract and registry use), :mod:`.similarity` and
:mod:`.adversarial` (the built-in regularizers), :mod:`.evaluate` (held-out accuracy), :mod:`.checkpoint`,
:mod:`.card` (the run card; also read by audits), :mod:`.folder` (fresh, resumed or overwritten runs) and
:mod:`.loop` (the run itself). Importing this package imports nothing heavy; the modules do.
"""
