"""tt.data: from files on disk to batches of token ids (corpus → clean → tokenizer → batches)."""
