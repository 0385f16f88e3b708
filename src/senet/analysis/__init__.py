"""Analysis tools: complexity (params, MACs), and later latency, ablations and excitation statistics."""

from .profile import LayerCost, Profile, profile

__all__ = ["LayerCost", "Profile", "profile"]
