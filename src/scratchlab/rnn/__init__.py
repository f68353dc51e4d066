"""Recurrent networks from tensor primitives, with torch.nn's API (no torch.nn.RNN/LSTM/GRU inside)."""

from scratchlab.rnn.adder import BinaryAdderRNN
from scratchlab.rnn.attention import AttentionHead, attend
from scratchlab.rnn.cells import GRUCell, LSTMCell, RNNCell
from scratchlab.rnn.layers import GRU, LSTM, RNN

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "BinaryAdderRNN", "AttentionHead", "attend"]
