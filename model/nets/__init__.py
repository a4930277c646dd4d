"""The networks and their maths, PyTorch only: the Transformer (with its hook points), the LSTM, the vanilla RNN, their configs, the word tokenizer, sampling."""
