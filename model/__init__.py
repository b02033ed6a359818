"""tt.model: the Transformer, its loss, training, decoding and checkpoints."""
