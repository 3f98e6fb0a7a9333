"""Fine-tuning (TRL) and the locally built tiny student."""
