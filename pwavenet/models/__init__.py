"""The networks and what they compute: causal convolutions (``conv``), gated residual blocks
(``block``), the mel conditioning (``conditioning``), the single-step engine of generation and the
IAF inverse (``step``, on the arrays of ``arrays``), the output distributions (``distributions``)
and the teacher's output heads (``heads``), the WaveNet teacher, the IAF student and their
inference exports. Imports nothing from the training, data or evaluation layers."""
