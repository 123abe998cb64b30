"""Causal features, labels, windows, the LSTM builder, training, the artifact and KerasIndicator."""
