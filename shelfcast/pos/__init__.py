"""POS-side producers: CSV replay and a synthetic simulator, sent to ``pos.sales``."""
