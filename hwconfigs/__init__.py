# Bundled hardware descriptions; installed as package data (pimsim.bundled.hwconfigs).
