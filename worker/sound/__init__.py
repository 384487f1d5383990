"""Audio work on stems: decode, measure, validate against the source, convert, waveforms, tags."""
