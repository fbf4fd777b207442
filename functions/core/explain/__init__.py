"""Explanations: Kernel SHAP attributions per instance (numpy only), background samples, players per input kind."""
